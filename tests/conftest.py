"""Fixtures shared by the unit tests."""

from __future__ import annotations

import gc
import os
import tempfile

import pytest

from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.kube import FakeKube
from support import docker_fixtures
from support.docker_fixtures import dockerd  # noqa: F401  (one real Docker engine per test process, for -m docker)

# The engine's truth-table helpers (tests/support/engine_builders.py) assert as a test
# module does: pytest rewrites their asserts to show the values compared.
pytest.register_assert_rewrite("support.engine_builders")

# Where the tests' temporary directories go when TMPDIR does not say: a
# memory file system of at least this much room. The tool fsyncs every state
# and snapshot file it writes (twice: the file, then its directory); on a
# disk that is about two seconds of the unit suite, on tmpfs nothing.
MEMORY_TMP = "/dev/shm"
MEMORY_TMP_MIN_FREE = 2 << 30


def pytest_configure(config):
    if os.environ.get("TMPDIR") or config.option.basetemp or not os.path.isdir(MEMORY_TMP):
        return
    try:
        st = os.statvfs(MEMORY_TMP)
    except OSError:
        return
    if st.f_bavail * st.f_frsize >= MEMORY_TMP_MIN_FREE and os.access(MEMORY_TMP, os.W_OK | os.X_OK):
        tempfile.tempdir = MEMORY_TMP  # pytest's tmp_path_factory asks tempfile.gettempdir()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield  # the test's own fixtures first (they remove what they put in the engine)
    docker_fixtures.stop_after(item)


@pytest.hookimpl(tryfirst=True)  # before -m selects
def pytest_collection_modifyitems(items):
    """A test that needs a Docker engine is an integration test."""
    for item in items:
        if item.get_closest_marker("docker") and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session):
    docker_fixtures.stop()


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


def pytest_collection_finish(session):
    """Python's collector, tuned for a test process: what collection built
    (modules, test items, parametrized cases) is moved out of its reach,
    and the youngest generation is collected every 50,000 allocations
    instead of every 700. The tests make many short-lived objects and few
    cycles; the unit run takes about 5 % less time (A/B, 3 runs each)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
