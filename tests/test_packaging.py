"""The versions the project states, checked against each other and against what labkit uses."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DEPENDENCIES, OPTIONAL = PROJECT["dependencies"], PROJECT["optional-dependencies"]


def declared(requirement_prefix: str, text_lines: list[str]) -> str:
    return next(line.strip().strip('",') for line in text_lines if line.strip().strip('"').startswith(requirement_prefix))


def test_environment_yml_states_the_same_torch_bounds_as_pyproject():
    conda = [line.strip().lstrip("- ").strip('"') for line in (REPO / "environment.yml").read_text().splitlines()]
    for package in ("torch>", "torchvision>"):
        assert declared(package, DEPENDENCIES) == declared(package, conda)


def test_the_torch_floor_has_the_device_generic_grad_scaler_labkit_builds():
    """labkit builds `torch.amp.GradScaler(device_type)`, which torch 2.3 introduced; the floor must
    not promise an older torch. (Run the suite under the floor itself to prove the rest.)"""
    floor = re.search(r"torch>=(\d+)\.(\d+)", " ".join(DEPENDENCIES))
    assert (int(floor[1]), int(floor[2])) >= (2, 3)
    assert not torch.amp.GradScaler("cpu", enabled=False).is_enabled()


def test_torch_and_torchvision_are_capped_below_a_minor_release_so_bug_fixes_install():
    for package in ("torch>", "torchvision>"):
        cap = re.search(r",<(=?)([\d.]+)", declared(package, DEPENDENCIES))
        assert cap[1] == "" and cap[2].count(".") == 1, f"{declared(package, DEPENDENCIES)}: cap it as <MAJOR.MINOR"


def third_party_imports(at_module_level: bool) -> set[str]:
    """The top-level names of the modules labkit imports that are neither its own nor Python's:
    those imported when a module loads, or those imported only inside a function."""
    names = set()
    for path in (REPO / "labkit").rglob("*.py"):
        tree = ast.parse(path.read_text())
        in_functions = {id(node) for function in ast.walk(tree)
                        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                        for node in ast.walk(function)}
        for node in ast.walk(tree):
            if (id(node) in in_functions) == at_module_level:
                continue
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"labkit"}


def undeclared(names: set[str], requirements: list[str]) -> dict:
    distributions = importlib.metadata.packages_distributions()
    stated = {re.split(r"[<>=!~\[; ]", requirement)[0].lower().replace("_", "-") for requirement in requirements}
    return {name: distributions.get(name) for name in names
            if not {distribution.lower().replace("_", "-") for distribution in distributions.get(name, [name])} & stated}


def test_every_package_labkit_imports_as_it_loads_is_a_dependency():
    missing = undeclared(third_party_imports(at_module_level=True), DEPENDENCIES)
    assert not missing, f"imported by labkit but not in pyproject's dependencies: {missing}"


def test_a_package_labkit_imports_only_inside_a_function_is_a_dependency_or_an_extra():
    """An extra (segmentation_models_pytorch for `bench library`) may be missing: only the function
    that needs it imports it, and says which extra to install."""
    extras = [requirement for group in OPTIONAL.values() for requirement in group]
    missing = undeclared(third_party_imports(at_module_level=False), DEPENDENCIES + extras)
    assert not missing, f"imported by labkit but in neither pyproject's dependencies nor an extra: {missing}"
