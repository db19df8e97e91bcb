"""The versions the project states, checked against each other and against what labkit uses."""

import re
import tomllib
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def declared(requirement_prefix: str, text_lines: list[str]) -> str:
    return next(line.strip().strip('",') for line in text_lines if line.strip().strip('"').startswith(requirement_prefix))


def test_environment_yml_states_the_same_torch_bounds_as_pyproject():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = [line.strip().lstrip("- ").strip('"') for line in (REPO / "environment.yml").read_text().splitlines()]
    for package in ("torch>", "torchvision>"):
        assert declared(package, dependencies) == declared(package, conda)


def test_the_torch_floor_has_the_device_generic_grad_scaler_labkit_builds():
    """labkit builds `torch.amp.GradScaler(device_type)`, which torch 2.3 introduced; the floor must
    not promise an older torch. (Run the suite under the floor itself to prove the rest.)"""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = re.search(r"torch>=(\d+)\.(\d+)", " ".join(dependencies))
    assert (int(floor[1]), int(floor[2])) >= (2, 3)
    assert not torch.amp.GradScaler("cpu", enabled=False).is_enabled()
