"""labkit.allocator: on Linux, memory freed by one batch is reused by the next instead of being
faulted in afresh from the kernel."""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="mallopt settings are glibc's")

# The cpu profile's UNet predicts six batches of 16 photos, after one to warm up; the page faults the
# process takes meanwhile, as the kernel counts them.
FAULTS_OF_SIX_BATCHES = """
import json, resource
import torch
from labkit import allocator
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
print(json.dumps({"faults": faults, "applied": allocator.applied}))
"""


def faults_of_six_batches(environment: dict) -> dict:
    inherited = {name: value for name, value in os.environ.items()
                 if not name.startswith("MALLOC_") and name not in ("LABKIT_MALLOC", "GLIBC_TUNABLES", "LD_PRELOAD")}
    result = subprocess.run([sys.executable, "-c", FAULTS_OF_SIX_BATCHES], env={**inherited, **environment},
                            capture_output=True, text=True, check=True, timeout=300)
    return json.loads(result.stdout)


def test_after_import_labkit_batches_take_a_tenth_of_the_page_faults_of_glibcs_defaults():
    tuned = faults_of_six_batches({})
    default = faults_of_six_batches({"LABKIT_MALLOC": "default"})  # the opt-out: what glibc alone does
    assert tuned["applied"] is True and default["applied"] is False
    assert tuned["faults"] * 10 < default["faults"], (tuned, default)


def test_a_users_own_malloc_environment_variables_are_left_in_charge():
    assert faults_of_six_batches({"MALLOC_ARENA_MAX": "2"})["applied"] is False


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
    for name in ("LABKIT_MALLOC", "GLIBC_TUNABLES", "LD_PRELOAD"):
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
