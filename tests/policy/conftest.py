"""The policy layer's tests: profiles read from the shipped manifests, or
from a copy a test may edit."""

import shutil
from pathlib import Path

import pytest

from cluster.policy.profile import MANIFESTS_DIR


@pytest.fixture
def copy_dashi(tmp_path) -> Path:
    """A copy of the shipped dashi profile, for a test to break."""
    dst = tmp_path / "dashi"
    shutil.copytree(MANIFESTS_DIR / "dashi", dst)
    return dst
