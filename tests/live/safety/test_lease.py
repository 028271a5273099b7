"""The cluster-side lease: one run at a time per cluster, across machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from cluster.errors import KubeError, LockError
from cluster.live.safety import lease as lease_mod
from cluster.live.safety.lease import (
    LEASE_API,
    ClusterLease,
    Hold,
    lease_holder,
    micro_time,
    parse_time,
    process_gone,
    this_process,
)
from cluster.live.record.identity import ClusterState, identify
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from support.rollout_world import RolloutWorld


class Clock:
    """Wall time a test can move."""

    def __init__(self, t: float = 1_767_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def live_lease(kube) -> dict:
    return kube.get(LEASE_API, "Lease", "dashi-cluster", "kube-system")


def other_machine(kube, clock, *, host="ci-runner-7", renewed_ago=5.0, pid=4242):
    """A Lease as a run on another machine leaves it while it works."""
    holder = {"id": f"ci@{host} pid {pid} #abc123", "user": "ci", "host": host, "pid": pid, "start": "1",
              "boot": "other-boot", "pidns": "pid:[1]", "command": "network-policies-up (dashi)",
              "since": "2026-01-01T09:00:00Z"}
    kube.create({"apiVersion": LEASE_API, "kind": "Lease",
                 "metadata": {"name": "dashi-cluster", "namespace": "kube-system",
                              "annotations": {"dashi.io/holder": json.dumps(holder)}},
                 "spec": {"holderIdentity": holder["id"], "leaseDurationSeconds": 60,
                          "acquireTime": micro_time(clock() - 100), "renewTime": micro_time(clock() - renewed_ago),
                          "leaseTransitions": 0}})
    return holder


def steal(kube, who: str) -> None:
    """Someone else writes the lease over (after it ran out, say)."""
    live = live_lease(kube)
    live["spec"]["holderIdentity"] = who
    kube.update(live)


def test_micro_time_is_what_the_api_server_accepts():
    t = 1_767_000_000.123456
    assert micro_time(t) == "2025-12-29T09:20:00.123456Z"
    assert abs(parse_time(micro_time(t)) - t) < 1e-6
    assert parse_time("2025-12-29T09:20:00Z") == 1_767_000_000.0 and parse_time(None) is None


def test_acquire_creates_a_lease_that_names_its_holder_and_release_clears_it():
    kube, clock = FakeKube(), Clock()
    lease = ClusterLease(kube, "network-policies-up (dashi)", now=clock)
    assert lease.acquire() == "new"
    live = live_lease(kube)
    spec = live["spec"]
    assert spec["holderIdentity"] == lease.me["id"] and spec["leaseDurationSeconds"] == 60
    assert spec["acquireTime"] == spec["renewTime"] == micro_time(clock())
    assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dashi-cluster"
    holder = json.loads(live["metadata"]["annotations"]["dashi.io/holder"])
    assert (holder["pid"], holder["command"]) == (os.getpid(), "network-policies-up (dashi)")
    lease.release()
    assert "holderIdentity" not in live_lease(kube)["spec"]
    again = ClusterLease(kube, "rollback (dashi)", now=clock)
    assert again.acquire() == "free"
    assert live_lease(kube)["spec"]["leaseTransitions"] == 1


def test_a_lease_held_elsewhere_refuses_naming_the_holder_and_since_when():
    kube, clock = FakeKube(), Clock()
    other_machine(kube, clock)
    with pytest.raises(LockError) as err:
        ClusterLease(kube, "rollback (dashi)", now=clock).acquire()
    assert str(err.value).startswith(
        "another run is changing this cluster: ci@ci-runner-7 pid 4242 (`network-policies-up (dashi)`) since "
        "2026-01-01T09:00:00Z (lease kube-system/dashi-cluster; renewed 5 s ago")
    assert lease_holder(kube, now=clock).startswith("ci@ci-runner-7 pid 4242")


def watcher(kube, wall, mono, **kw) -> tuple[ClusterLease, list[str]]:
    """A lease of this machine with a wall clock and a monotonic one the test moves."""
    said: list[str] = []
    return ClusterLease(kube, "rollback (dashi)", now=wall, clock=mono, sleep=mono.sleep, say=said.append,
                        **kw), said


def test_a_lease_nobody_renews_is_taken_over_once_unchanged_for_a_whole_duration_measured_here():
    """client-go's leader election: the Lease is taken over once its
    resourceVersion has stayed unchanged for a whole duration on this
    machine's monotonic clock, not when its renewTime looks old."""
    kube, wall, mono = FakeKube(), Clock(), FakeClock()
    other_machine(kube, wall, renewed_ago=61)  # a killed run on another machine: nobody renews it
    lease, said = watcher(kube, wall, mono)
    assert lease.acquire().startswith("expired: ci@ci-runner-7 pid 4242")
    assert sum(mono.slept) == 60 and max(mono.slept) <= lease_mod.WATCH_EVERY_S
    assert said == ["The cluster lease kube-system/dashi-cluster is held by ci@ci-runner-7 pid 4242 "
                    "(`network-policies-up (dashi)`) since 2026-01-01T09:00:00Z, last renewed 61 s ago by this "
                    "machine's clock: taking it over if it stays unchanged for 60 s as measured here (60 s to go)"]
    assert live_lease(kube)["spec"]["holderIdentity"] == lease.me["id"]
    assert live_lease(kube)["spec"]["leaseTransitions"] == 1


def test_a_lease_renewed_or_released_while_watched_is_refused():
    """Its holder runs (its clock is behind ours, so its renewTime looks
    old): the lease changes within the watch and the watcher is refused."""
    for change, message in [("renew", "another run is changing this cluster: ci@ci-runner-7 pid 4242"),
                            ("release", r"the run that held this cluster \(ci@ci-runner-7 pid 4242")]:
        kube, wall, mono = FakeKube(), Clock(), FakeClock()
        other_machine(kube, wall, renewed_ago=120)
        lease, _ = watcher(kube, wall, mono)

        def sleep(seconds, change=change):
            mono.sleep(seconds)
            if sum(mono.slept) >= 15:  # the holder's renewal (or its end)
                live = live_lease(kube)
                if change == "renew":
                    live["spec"]["renewTime"] = micro_time(wall() - 120 + sum(mono.slept))
                else:
                    live["spec"].pop("holderIdentity")
                kube.update(live)

        lease.sleep = sleep
        with pytest.raises(LockError, match=message):
            lease.acquire()
        assert 15 <= sum(mono.slept) < 20
        assert live_lease(kube)["spec"].get("holderIdentity") in (None, "ci@ci-runner-7 pid 4242 #abc123")


def test_two_machines_whose_clocks_differ_by_more_than_the_lease_never_both_hold_it(tmp_path):
    """Clock skew: the holder's renewTime is compared with no one's wall
    clock. A machine 120 s fast watches a live lease and is refused at the
    holder's next renewal; a machine 120 s slow sees it fresh and is refused
    at once."""
    kube, mono = FakeKube(), FakeClock()
    holder_wall = Clock()
    holder = ClusterLease(kube, "network-policies-up (dashi)", now=holder_wall, clock=mono, sleep=mono.sleep)
    holder.acquire()
    fast, _ = watcher(kube, Clock(holder_wall() + 120), mono)

    def sleep(seconds):
        mono.sleep(seconds)
        holder_wall.t += seconds
        if sum(mono.slept) % holder.renew_every_s < seconds:
            holder.renew()

    fast.sleep = sleep
    with pytest.raises(LockError, match="another run is changing this cluster: "):
        fast.acquire()
    assert sum(mono.slept) <= holder.renew_every_s + lease_mod.WATCH_EVERY_S
    slow, _ = watcher(kube, Clock(holder_wall() - 120), mono)
    with pytest.raises(LockError, match="unchanged for 0 s as seen from here, it is taken over once unchanged for 60 s"):
        slow.acquire()
    assert live_lease(kube)["spec"]["holderIdentity"] == holder.me["id"]
    holder.check()


def test_a_fresh_looking_lease_nobody_renews_is_taken_over_by_a_later_run_of_this_machine(tmp_path):
    """A holder whose clock is ahead of ours, killed: its renewTime looks
    fresh for longer than a lease. This machine keeps what it saw and when
    (monotonic): a run a minute after the first look takes it over."""
    kube, wall, mono = FakeKube(), Clock(), FakeClock()
    other_machine(kube, Clock(wall() + 300), renewed_ago=0)
    seen = tmp_path / "lease-seen.json"
    first, _ = watcher(kube, wall, mono, seen=seen)
    with pytest.raises(LockError, match="its renew time is 300 s ahead of this machine's clock; unchanged for 0 s as "
                                        "seen from here"):
        first.acquire()
    mono.now += 59
    with pytest.raises(LockError, match="unchanged for 59 s as seen from here"):
        watcher(kube, wall, mono, seen=seen)[0].acquire()
    mono.now += 1
    later, _ = watcher(kube, wall, mono, seen=seen)
    assert later.acquire().startswith("expired: ci@ci-runner-7 pid 4242")
    assert oct(seen.stat().st_mode & 0o777) == "0o600"


def test_a_lease_of_a_process_of_this_machine_that_ended_is_taken_over_at_once():
    """kill -9 leaves nobody to release the lease; on the same machine the
    next run can see that its holder is gone and need not wait a minute."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(child.stdout)
    me = this_process("x")
    assert process_gone({**me, "pid": dead, "start": "123"})
    lease_mod._HELD_HERE.add(me["id"])
    try:
        assert not process_gone(me)  # this process runs and holds it
    finally:
        lease_mod._HELD_HERE.discard(me["id"])
    assert process_gone(me)  # this process, but it gave that lease up
    assert not process_gone({**me, "pid": dead, "host": "elsewhere"})  # another machine: cannot tell
    assert not process_gone({**me, "pid": dead, "pidns": "pid:[999]"})  # another container: cannot tell
    kube, clock = FakeKube(), Clock()
    holder = {**me, "pid": dead, "id": f"{me['user']}@{me['host']} pid {dead} #dead00"}
    kube.create({"apiVersion": LEASE_API, "kind": "Lease",
                 "metadata": {"name": "dashi-cluster", "namespace": "kube-system",
                              "annotations": {"dashi.io/holder": json.dumps(holder)}},
                 "spec": {"holderIdentity": holder["id"], "leaseDurationSeconds": 60,
                          "renewTime": micro_time(clock() - 1)}})
    assert ClusterLease(kube, "up", now=clock).acquire().startswith(f"gone: {me['user']}@{me['host']} pid {dead}")


def test_losing_a_race_for_the_lease_refuses_naming_the_winner():
    kube, clock = FakeKube(), Clock()
    lease = ClusterLease(kube, "up", now=clock)
    real_create = kube.create

    def faster(obj):  # another machine creates it between our read and our create
        kube.create = real_create
        other_machine(kube, clock)
        return real_create(obj)

    kube.create = faster
    with pytest.raises(LockError, match="ci@ci-runner-7 pid 4242"):
        lease.acquire()


def test_renewal_moves_renew_time_and_a_stolen_lease_is_noticed():
    kube, clock = FakeKube(), Clock()
    lease = ClusterLease(kube, "up", now=clock)
    lease.acquire()
    clock.t += 15
    lease.renew()
    assert live_lease(kube)["spec"]["renewTime"] == micro_time(clock())
    lease.check()
    steal(kube, "someone else")
    with pytest.raises(LockError, match="was taken over"):
        lease.renew()


def test_a_lease_not_renewed_within_its_deadline_stops_the_run():
    """The holder stops at two thirds of the lease on its monotonic clock,
    well before another machine may take it over (a whole duration)."""
    kube, wall, mono = FakeKube(), Clock(), FakeClock()
    lease = ClusterLease(kube, "up", now=wall, clock=mono)
    lease.acquire()
    wall.t -= 3600  # the wall clock jumps (NTP): nothing to do with the lease
    mono.now += 40
    lease.check()
    mono.now += 1
    with pytest.raises(LockError, match="could not be renewed for 41 s .* stopping before changing anything more"):
        lease.check()


def test_the_holder_reads_its_lease_again_before_each_batch_of_writes(tmp_path):
    """Taken over between two renewals: noticed before the next write, not at
    the next renewal 15 s later."""
    w = RolloutWorld(tmp_path)
    w.before_first_probe(lambda: steal(w.kube, "ci@elsewhere pid 1 #x"))  # while step 1 is verified
    with pytest.raises(LockError, match="^the cluster lease kube-system/dashi-cluster was taken over by ci@elsewhere "
                                        "pid 1 #x since .* while this run held it; stopping before changing anything"):
        w.rollout().up()
    assert w.ours() == w.through(1)  # verified step 1, then nothing more
    assert w.kube.writes("NetworkPolicy") == [c for c in w.kube.writes("NetworkPolicy") if c.verb == "create"][:3]
    assert live_lease(w.kube)["spec"]["holderIdentity"] == "ci@elsewhere pid 1 #x"  # not ours to clear


def test_a_release_against_an_api_server_that_says_nothing_ends_within_its_bound(monkeypatch):
    monkeypatch.setattr(lease_mod, "RELEASE_WAIT_S", 0.2)
    kube = FakeKube()
    lease = ClusterLease(kube, "up")
    lease.acquire()
    hung = threading.Event()
    real_get = kube.get
    kube.get = lambda *a, **kw: hung.wait() and real_get(*a, **kw)  # accepted, never answered
    t0 = time.monotonic()
    assert lease.release() is False
    assert time.monotonic() - t0 < 2
    hung.set()


def test_the_background_thread_renews_while_the_command_runs():
    kube = FakeKube()
    lease = ClusterLease(kube, "up", renew_every_s=0.02)
    lease.acquire()
    first = live_lease(kube)["spec"]["renewTime"]
    lease.start_renewing()
    try:
        deadline = time.monotonic() + 5
        while live_lease(kube)["spec"]["renewTime"] == first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert live_lease(kube)["spec"]["renewTime"] > first
    finally:
        lease.release()
    assert "holderIdentity" not in live_lease(kube)["spec"]


def test_the_thread_marks_the_lease_lost_and_check_stops_the_run():
    kube = FakeKube()
    lease = ClusterLease(kube, "up", renew_every_s=0.02)
    lease.acquire()
    steal(kube, "ci@elsewhere pid 1 #x")
    lease.start_renewing()
    deadline = time.monotonic() + 5
    while lease.lost is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(LockError, match="was taken over .* stopping before changing anything more"):
        lease.check()
    lease.release()
    assert live_lease(kube)["spec"]["holderIdentity"] == "ci@elsewhere pid 1 #x"  # not ours to clear


def test_without_permission_on_leases_the_error_says_what_to_grant():
    kube = FakeKube()

    def forbidden(call):
        e = KubeError('leases.coordination.k8s.io is forbidden: User "dev" cannot create resource "leases"')
        e.status = 403
        return e

    kube.fail("create", "Lease", exc=forbidden)
    with pytest.raises(KubeError, match="needs get, create and update on leases.coordination.k8s.io in kube-system"):
        ClusterLease(kube, "up").acquire()


def test_release_leaves_the_lease_to_expire_when_the_api_server_is_away():
    kube = FakeKube()
    lease = ClusterLease(kube, "up")
    lease.acquire()
    kube.stop_api()
    lease.release()  # no exception: it runs out by itself
    kube.start_api()
    assert ClusterLease(kube, "next").acquire().startswith("gone")  # this process gave it up


# -- two machines, one cluster ------------------------------------------------------------


def test_two_state_directories_against_one_cluster_exactly_one_proceeds(tmp_path):
    """Two machines share nothing but the cluster: their local locks are
    different files, so only the Lease keeps them apart."""
    w = RolloutWorld(tmp_path)
    machine_a = ClusterState(identify(w.kube), tmp_path / "machine-a")
    with Hold(w.kube, machine_a.dir, "network-policies-up (environments)"):
        with pytest.raises(LockError, match=r"another run is changing this cluster: \S+ pid \d+ "
                                            r"\(`network-policies-up \(environments\)`\) since \d{4}-"):
            w.rollout().up()  # machine B: its own state directory (w.root)
        assert w.kube.writes("NetworkPolicy") == []
    w.rollout().up(until="default-deny")  # once A is done, B proceeds
    assert w.ours() == w.through(1)
    assert "holderIdentity" not in live_lease(w.kube)["spec"]  # and B released it
