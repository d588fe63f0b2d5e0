"""Shared test fixtures.

The real datasets are never part of the project. Tests that need them look in
``$SCRATCHVAE_SHARED_DATA`` or, by default, in ``../shared/data`` beside the
checkout (where CI puts them), and skip with a reason when they are absent.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the generated tests with fixed examples (the same ones every run, chosen from each
# test's name), so that a red run can be reproduced with CI=true; a run without CI draws new
# examples each time, and keeps exploring.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCRATCHVAE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _shared(name):
    path = SHARED_DATA / name
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real {name} data not found at {path} "
                    "(set SCRATCHVAE_SHARED_DATA to a directory holding mnist/ and fashion-mnist/)")
    return path


@pytest.fixture
def shared_mnist_dir():
    """Directory holding the real MNIST test split (skips when absent)."""
    return _shared("mnist")


@pytest.fixture
def shared_fashion_dir():
    """Directory holding the full real Fashion-MNIST (skips when absent)."""
    return _shared("fashion-mnist")


@pytest.fixture
def small_disk(tmp_path):
    """A 320 KiB tmpfs (needs root and mount); skipped with the reason otherwise."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)
