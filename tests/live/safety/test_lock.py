"""One run at a time per cluster; a dead holder never leaves a stale lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from cluster.errors import LockError
from cluster.live.safety.lock import ClusterLock


def test_acquire_writes_the_holder_and_release_clears_it(tmp_path):
    lock = ClusterLock(tmp_path, "inv network-policies-up")
    with lock:
        holder = lock.holder()
        assert holder["pid"] == os.getpid() and holder["command"] == "inv network-policies-up"
        assert set(holder) == {"pid", "user", "host", "command", "since"}
        assert ClusterLock(tmp_path).is_held()
    assert lock.holder() is None
    assert not ClusterLock(tmp_path).is_held()


def test_a_second_run_is_refused_with_who_holds_it(tmp_path):
    with ClusterLock(tmp_path, "inv rollback"):
        with pytest.raises(LockError) as err:
            ClusterLock(tmp_path, "inv network-policies-up").acquire()
    msg = str(err.value)
    assert f"pid {os.getpid()}" in msg and "`inv rollback`" in msg and str(tmp_path / "lock") in msg


def test_the_lock_is_free_again_after_release(tmp_path):
    with ClusterLock(tmp_path):
        pass
    with ClusterLock(tmp_path) as again:
        assert again.holder()["pid"] == os.getpid()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    script = ("import sys, time; from pathlib import Path; from cluster.live.safety.lock import ClusterLock; "
              "l = ClusterLock(Path(sys.argv[1]), 'child'); l.acquire(); print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match="child"):
            ClusterLock(tmp_path).acquire()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        with ClusterLock(tmp_path, "next") as lock:  # the kernel dropped the dead holder's lock
            assert lock.holder()["command"] == "next"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_holder_tolerates_garbage(tmp_path):
    (tmp_path / "lock").write_text("not json")
    assert ClusterLock(tmp_path).holder() is None
    (tmp_path / "lock").write_text(json.dumps([1]))
    assert ClusterLock(tmp_path).holder() is None


def test_double_acquire_in_one_object_is_an_error(tmp_path):
    lock = ClusterLock(tmp_path)
    lock.acquire()
    try:
        with pytest.raises(LockError, match="already held by this process"):
            lock.acquire()
    finally:
        lock.release()
