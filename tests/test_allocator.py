"""labkit.allocator: on Linux, memory freed by one batch is reused by the next instead of being
faulted in afresh from the kernel, in the processes that turn it on, and in no other."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="mallopt settings and tunables are glibc's")

REPO = Path(__file__).resolve().parents[1]
MALLOC_VARIABLES = ("LABKIT_MALLOC", "GLIBC_TUNABLES", "LD_PRELOAD")

# The cpu profile's UNet predicts six batches of 16 photos, after one to warm up; the page faults the
# process takes meanwhile, as the kernel counts them.
FAULTS_OF_SIX_BATCHES = """
import json, resource
import torch
from labkit.evaluate import predict_logits
from labkit.models.unet import UNet

torch.manual_seed(0)
model = UNet(base_width=16)
photos = torch.randint(0, 256, (7 * 16, 3, 128, 128), dtype=torch.uint8)
predict_logits(model, photos[:16])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for start in range(16, len(photos), 16):
    predict_logits(model, photos[start:start + 16])
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""
# Every labkit module imported, then the six batches: what `import labkit` alone does to malloc.
AFTER_IMPORTING_LABKIT = """
import importlib, os, pkgutil

def environment():  # torch's compiler sets TORCHINDUCTOR_CACHE_DIR when a module imports it: torch's doing
    return {name: value for name, value in os.environ.items() if not name.startswith("TORCHINDUCTOR_")}

environment_at_start = environment()
import labkit
for module in pkgutil.walk_packages(labkit.__path__, "labkit."):
    if module.name != "labkit.__main__":  # runs the command line
        importlib.import_module(module.name)
from labkit import allocator
""" + FAULTS_OF_SIX_BATCHES + """
print(json.dumps({"faults": faults, "applied": allocator.applied, "environment_changed": environment() != environment_at_start}))
"""
AFTER_TURNING_IT_ON = """
from labkit import allocator
allocator.reuse_freed_memory()
""" + FAULTS_OF_SIX_BATCHES + """
print(json.dumps({"faults": faults, "applied": allocator.applied}))
"""
# `python -m labkit train` as its __main__ runs it (cli.main), with the page faults of each epoch counted.
FAULTS_PER_EPOCH_OF_LABKIT_TRAIN = """
import json, resource, sys
from labkit import allocator, cli, train

faults, run_epoch = [], train.run_epoch

def counted(*args, **kwargs):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    record = run_epoch(*args, **kwargs)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return record

train.run_epoch = counted
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "faults": faults, "reused": allocator.in_effect()}))
"""


def clean_environment(**settings: str) -> dict:
    """This process's environment without any malloc tuning, plus `settings`, for a new process."""
    inherited = {name: value for name, value in os.environ.items()
                 if not name.startswith("MALLOC_") and name not in MALLOC_VARIABLES}
    return {**inherited, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **settings}


def run_python(code: str, environment: dict, *arguments: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *arguments], env=environment, capture_output=True, text=True,
                            check=True, timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_reusing_freed_memory_takes_a_tenth_of_the_page_faults_of_glibcs_defaults():
    tuned = run_python(AFTER_TURNING_IT_ON, clean_environment())
    default = run_python(AFTER_TURNING_IT_ON, clean_environment(LABKIT_MALLOC="default"))  # the opt-out
    assert tuned["applied"] is True and default["applied"] is False
    assert tuned["faults"] * 10 < default["faults"], (tuned, default)


def test_importing_labkit_leaves_malloc_and_the_environment_as_they_were():
    imported = run_python(AFTER_IMPORTING_LABKIT, clean_environment())
    default = run_python(AFTER_TURNING_IT_ON, clean_environment(LABKIT_MALLOC="default"))
    assert imported["applied"] is False and imported["environment_changed"] is False
    # glibc's page faults, not the tenth of them that labkit's settings leave; page faults of the same
    # run vary by up to about 2x on a loaded machine (196,265 against 417,100 seen in CI), so the bar
    # is a quarter, still far above a tenth.
    assert imported["faults"] * 4 > default["faults"], (imported, default)


def test_labkit_train_trains_with_freed_memory_reused(synthetic_root, tmp_path):
    command = ["train", "--profile", "cpu", "--data-path", str(synthetic_root), "--output", str(tmp_path),
               "--epochs", "3", "--image-size", "96"]
    tuned = run_python(FAULTS_PER_EPOCH_OF_LABKIT_TRAIN, clean_environment(), *command, "--run-name", "tuned")
    default = run_python(FAULTS_PER_EPOCH_OF_LABKIT_TRAIN, clean_environment(LABKIT_MALLOC="default"), *command,
                         "--run-name", "default")
    assert tuned["code"] == default["code"] == 0
    assert tuned["reused"] is True and default["reused"] is False
    # glibc raises its own thresholds as training frees large blocks, so by the last epoch both may
    # fault little (CI saw [79955, 3456, 0] against [120644, 32161, 0]); over the run the tuned one
    # faults clearly less, where a command line that did not turn reuse on would fault as much.
    assert sum(tuned["faults"]) * 1.25 < sum(default["faults"]), (tuned, default)


def test_the_workbooks_kernels_start_with_freed_memory_reused(synthetic_root, tmp_path, monkeypatch):
    import nbformat

    from labkit import workbook

    def faults_in_a_kernel(**settings: str) -> int:
        home = tmp_path / "_".join(settings) if settings else tmp_path / "tuned"
        notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
        notebook.cells = [nbformat.v4.new_code_cell(FAULTS_OF_SIX_BATCHES + "\nprint(faults)")]
        (home / "notebooks").mkdir(parents=True)
        nbformat.write(notebook, home / "notebooks" / "00_faults.ipynb")
        with monkeypatch.context() as context:
            for name, value in clean_environment(LABKIT_HOME=str(home), LABKIT_DATA=str(synthetic_root),
                                                 **settings).items():
                context.setenv(name, value)
            for name in MALLOC_VARIABLES:
                if name not in settings:
                    context.delenv(name, raising=False)
            [executed] = workbook.run_notebooks(profile="smoke", timeout=300)
        return int(nbformat.read(executed, as_version=4).cells[0].outputs[0]["text"])

    # Five runs here: 1 to 13,569 faults against 236,941 to 433,164; one CI run saw 20,480 against
    # 175,783 (8.6 times). Kernels with glibc's defaults differ by up to 2.5 times among themselves,
    # so a kernel that missed the setting stays below the bar of 5.
    assert faults_in_a_kernel() * 5 < faults_in_a_kernel(LABKIT_MALLOC="default")


def test_children_get_labkits_tunables_beside_the_users_other_tunables():
    from labkit import allocator

    environment = allocator.environment_for_children({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"})
    entries = environment["GLIBC_TUNABLES"].split(":")
    assert entries[0] == "glibc.cpu.hwcaps=-AVX512F" and set(entries[1:]) == allocator.labkits_tunables()
    assert allocator.environment_for_children(environment) == environment  # given once, not twice
    assert not allocator.user_tunes_malloc(environment)  # inherited from labkit, not the user's


def test_children_of_a_user_who_tunes_malloc_get_the_users_settings_only():
    from labkit import allocator

    for own in ({"LABKIT_MALLOC": "default"}, {"MALLOC_ARENA_MAX": "2"},
                {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}):
        assert allocator.environment_for_children(own) == own


def test_a_users_own_malloc_environment_variables_are_left_in_charge():
    assert run_python(AFTER_TURNING_IT_ON, clean_environment(MALLOC_ARENA_MAX="2"))["applied"] is False


@pytest.mark.parametrize("variable, value", [
    ("LABKIT_MALLOC", "Default"),
    ("MALLOC_ARENA_MAX", "2"),
    ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000"),
    ("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
])
def test_the_environment_that_configures_malloc_itself_is_recognised(monkeypatch, variable, value):
    from labkit import allocator

    for name in [name for name in os.environ if name.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    for name in MALLOC_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not allocator.user_tunes_malloc()
    monkeypatch.setenv(variable, value)
    assert allocator.user_tunes_malloc()


def test_one_refused_setting_still_tries_the_others_and_counts_as_not_applied(monkeypatch):
    from labkit import allocator

    calls = []

    def mallopt(option, value):  # refuses the first setting it is given
        calls.append(option)
        return 0 if len(calls) == 1 else 1

    libc = type("FakeLibc", (), {})()
    libc.mallopt = mallopt
    monkeypatch.setattr(allocator, "applied", allocator.applied)  # restored after the test
    monkeypatch.setattr(allocator, "user_tunes_malloc", lambda: False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert allocator.reuse_freed_memory() is False and allocator.applied is False
    assert calls == list(allocator.SETTINGS)
