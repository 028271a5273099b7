"""Where the state lives (one fixed place, never the working directory) and
whose it is (the cluster's identity, not its context name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import StateError
from cluster.live.record.identity import ClusterState, identify
from cluster.live.record.files import state_root
from cluster.testing.fakecluster.kube import FakeKube
from support.rollout_world import RolloutWorld


def test_the_state_root_is_fixed_not_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("DASHI_STATE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert state_root() == tmp_path / "home" / ".local" / "state" / "dashi-cluster"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_root() == tmp_path / "xdg" / "dashi-cluster"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # the spec says: ignore a relative one
    assert state_root() == tmp_path / "home" / ".local" / "state" / "dashi-cluster"
    monkeypatch.setenv("DASHI_STATE_DIR", str(tmp_path / "override"))
    assert state_root() == tmp_path / "override"
    assert state_root().is_absolute()


def test_two_working_directories_share_one_record(tmp_path, monkeypatch):
    """Two shells in two directories of a clone used to keep two records
    (./.dashi/state), each free to roll out on its own."""
    monkeypatch.delenv("DASHI_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    w = RolloutWorld(tmp_path)
    w.root = None  # the default root, as a user has it
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    w.rollout().up(until="default-deny")
    monkeypatch.chdir(tmp_path / "b")
    w.kube.calls.clear()
    w.rollout().up(until="allow-dns")
    assert "1 of 3 steps verified here; applying allow-dns" in w.out
    assert not (tmp_path / "a" / ".dashi").exists() and not (tmp_path / "b" / ".dashi").exists()
    assert (tmp_path / "xdg" / "dashi-cluster" / "clusters" / identify(w.kube).uid / "environments"
            / "state.yaml").exists()


def test_state_is_keyed_by_the_kube_system_uid():
    kube = FakeKube()
    ident = identify(kube)
    assert ident.uid == kube.get("v1", "Namespace", "kube-system")["metadata"]["uid"]
    assert (ident.context, ident.server) == ("k3d-dashi", "https://0.0.0.0:6550")
    kube._objects.pop(("v1", "Namespace", None, "kube-system"))
    with pytest.raises(StateError, match="its kube-system namespace does not exist"):
        identify(kube)


def test_a_cluster_recreated_under_the_same_name_starts_a_fresh_record_and_says_so(tmp_path):
    first = RolloutWorld(tmp_path)
    first.rollout().up(until="allow-dns")
    old_dir = first.cluster().dir
    # k3d cluster delete + create: same context name, a new cluster.
    second = RolloutWorld(tmp_path)
    assert second.kube.context() == first.kube.context()
    second.rollout().up(until="default-deny")
    out = second.out
    assert "Context k3d-dashi now reaches a different cluster (kube-system uid" in out
    assert "the cluster was re-created. Starting a fresh record for it; the old cluster's record stays in " \
           f"{old_dir}" in out
    assert "0 of 3 steps verified here; applying default-deny" in out
    assert second.ours() == second.through(1)
    assert [s["name"] for s in second.record()["steps"]] == ["default-deny"]
    assert (old_dir / "environments" / "state.yaml").exists()  # the old record is kept, not reused
    second.rollout().up(until="default-deny")
    assert "now reaches a different cluster" not in second.out  # said once


def test_the_deny_behaviour_is_kept_with_the_cluster(tmp_path):
    state = ClusterState.open(FakeKube(), tmp_path)
    assert state.deny_behaviour == "unknown"
    state.save_cni(name="cilium", deny_behaviour="drop", evidence="deny: blocked")
    assert ClusterState(state.identity, tmp_path).deny_behaviour == "drop"
    with pytest.raises(StateError, match="must be one of drop, reject"):
        state.save_cni(name="x", deny_behaviour="maybe")
    Path(state.path).write_text("[unclosed")
    with pytest.raises(StateError, match="cluster record .* is unreadable"):
        ClusterState(state.identity, tmp_path).deny_behaviour


def test_prepare_keeps_what_its_canary_measured(tmp_path):
    from cluster.live.setup import prepare
    from support.local_world import LocalWorld, recording_console, seed_calico

    for reject, expected in ((False, "drop"), (True, "reject")):
        w = LocalWorld(tools=())
        w.kube.reject = reject
        seed_calico(w.kube)
        console, _ = recording_console()
        prepare.prepare("k3d-dashi", profile="environments", console=console, kube_factory=w.kube_factory,
                        runner=w.runner, sleep=w.clock.sleep, clock=w.clock)
        state = ClusterState.open(w.kube)
        assert state.deny_behaviour == expected
        assert state.cni["name"] == "calico" and "deny: blocked" in state.cni["evidence"]


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in sorted(root.rglob("*"))}


def test_the_record_is_private_to_its_user(tmp_path):
    """It names clusters, contexts, who changed what, and every policy: 0700
    directories, 0600 files, the history and the lock included, whatever
    the umask; a record an earlier version left readable is tightened."""
    import os

    old = os.umask(0)  # the record must not rely on the caller's umask
    try:
        w = RolloutWorld(tmp_path)
        w.rollout().up(until="allow-dns")
        w.rollout().rollback(to="default-deny")
        modes = _modes(w.root)
        assert {p: m for p, m in modes.items() if (w.root / p).is_dir() and m != "0o700"} == {}
        assert {m for p, m in modes.items() if (w.root / p).is_file()} == {"0o600"}
        assert {"history.jsonl", "lock", "state.yaml", "cluster.yaml", "contexts.yaml", "index.yaml"} <= \
            {Path(p).name for p in modes}
        # As an earlier version left them: world-readable.
        for p in (w.pdir / "history.jsonl", w.cluster().dir / "lock"):
            p.chmod(0o644)
        w.pdir.chmod(0o755)
        w.rollout().up(until="allow-dns")
        assert (oct((w.pdir / "history.jsonl").stat().st_mode & 0o777), oct((w.cluster().dir / "lock").stat().st_mode
                                                                              & 0o777)) == ("0o600", "0o600")
        assert oct(w.pdir.stat().st_mode & 0o777) == "0o700"
    finally:
        os.umask(old)
