"""Where the bench writes what it measured, named by every setting that changes the numbers, and
labelled with the machine it was measured on."""

import json
import os
import subprocess
from pathlib import Path

import torch

from labkit import allocator, paths
from labkit.device import timing_label


def machine(device: torch.device) -> dict:
    """The device that was measured, in words, with the torch version, the date, how malloc was set up
    and which code ran (`code_version`)."""
    label = timing_label(device)
    return {"device": label["device"], "torch": torch.__version__, "date": label["date"], "malloc": allocator.description(),
            "code": code_version()}


def code_version(checkout: Path = Path(__file__).resolve().parents[2]) -> dict | None:
    """The git commit labkit ran from, and whether its files differed from that commit: runs of one
    recipe on two days have trained to different weights, so a comparison is fair only between runs
    of the same code. None outside a git checkout (labkit installed from a wheel, or no git)."""
    # GIT_DIR and its kin (set inside a git hook, say) would point git elsewhere than `checkout`.
    elsewhere = {"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY"}
    environment = {key: value for key, value in os.environ.items() if key not in elsewhere}

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), "--no-optional-locks", *arguments], capture_output=True,
                              text=True, errors="replace", check=True, timeout=30, env=environment).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != checkout.resolve():
            return None  # labkit installed inside some other repository (a virtual environment in a clone, say)
        return {"commit": git("rev-parse", "HEAD"), "labkit_changed": bool(git("status", "--porcelain", "--", "labkit"))}
    except (OSError, subprocess.SubprocessError):
        return None


def report_path(name: str, device: torch.device) -> Path:
    """Where `save_report` writes the report `name` measured on `device`."""
    return paths.reports_dir() / "bench" / f"{name}_on_{device.type}.json"


def save_report(name: str, report: dict, device: torch.device) -> None:
    """reports/bench/<name>_on_<device type>.json, labelled by the device that was measured; the
    name carries the settings, so runs don't overwrite each other. Written atomically, so a run
    stopped mid-write keeps the previous report."""
    path = report_path(name, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2))
    os.replace(temporary, path)
    print(f"written: {path}", flush=True)


def marked_for_malloc(name: str) -> str:
    """A timing report's name, marked `_default-malloc` when this process could have run with
    `labkit.allocator`'s settings (Linux with glibc) but did not, so the two measurements never
    overwrite each other."""
    return f"{name}_default-malloc" if allocator.supported() and not allocator.in_effect() else name


def safe_file_name(name: str) -> str:
    return "".join(character if character.isalnum() or character in "._-" else "_" for character in name)
