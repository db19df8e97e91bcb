"""nbgrader settings for the Pet Segmentation Lab: copy this file into your nbgrader course folder.

See docs/course.md ("With nbgrader") for the steps. nbgrader's kernels inherit this process's
environment, so the settings the notebooks read are set here, before any notebook runs.
"""

import os
import tempfile

c = get_config()  # noqa: F821 (nbgrader provides it)

# The lab's cells take up to about 3 minutes each in the smoke profile on 2 cores (03's training
# cell); nbgrader's default is 30 s per cell.
c.Execute.timeout = 600
# The kernel with labkit and torch installed: `.venv/bin/python -m ipykernel install --user --name labkit`.
c.Execute.kernel_name = "labkit"

os.environ.setdefault("LABKIT_PROFILE", "smoke")  # seconds per model, not minutes
os.environ.setdefault("LABKIT_HEADLESS", "1")  # sliders as pictures: no widget for the executor to wait on
os.environ.setdefault("LABKIT_HOME", tempfile.mkdtemp(prefix="labkit-nbgrader-"))  # data, checkpoints, figures
os.environ.setdefault("MPLBACKEND", "Agg")  # no figures stored in the graded copies
