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
                 if not name.startswith("MALLOC_") and name != "LABKIT_MALLOC"}
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
