"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from cluster.policy.profile import load_profile
from cluster.testing.fakekube import FakeKube
from docker_fixtures import dockerd  # noqa: F401  (one real Docker engine per test run, for -m docker)


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Every test keeps the tool's state in its own directory: never the
    user's ~/.local/state, never another test's."""
    monkeypatch.setenv("DASHI_STATE_DIR", str(tmp_path / "dashi-state"))


@pytest.fixture
def dashi():
    """The dashi stand-ins deployed on a fake cluster, its call record cleared."""
    kube = FakeKube()
    profile = load_profile("dashi")
    for obj in profile.namespace_objects + profile.workload_objects:
        kube.apply(obj)
    kube.calls.clear()
    return kube, profile
