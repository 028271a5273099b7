"""A rollout you can trust after it was cut off: snapshots labelled by what
they hold, one notion of "verified", and an API server that goes away.

Each test reproduces a way the rollout used to lose what the user asked for.
"""

from __future__ import annotations

import pytest
import yaml
from support import cases
from support.rollout_world import STEPS, RolloutWorld

from cluster.errors import KubeUnreachable, VerificationFailed
from cluster.live.record.steprecord import current_state


def snapshot_labels(world) -> dict[str, list | None]:
    index = yaml.safe_load((world.pdir / "snapshots" / "index.yaml").read_text())
    return {s["id"]: s["applied"] for s in index["snapshots"]}


# -- snapshots are labelled with what they hold -------------------------------------


def test_a_snapshot_of_a_half_applied_step_is_never_taken_for_the_baseline(world):
    """Cut off while applying default-deny, then a rollback to the baseline cut
    off too: the rollback's own snapshot holds half of default-deny. Labelled
    with the step record ("no steps"), the next rollback to the baseline
    restored it and re-created the policies the user asked to remove."""
    world.kube.fail("create", "NetworkPolicy", after=1, exc=KeyboardInterrupt)  # 2nd of 3 default-deny objects
    with pytest.raises(KeyboardInterrupt):
        world.rollout().up()
    assert len(world.ours()) == 1
    world.kube.fail("delete", "NetworkPolicy", exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        world.rollout().rollback(to="baseline")
    labels = snapshot_labels(world)
    assert labels["0001-before-default-deny"] == []
    assert labels["0002-before-rollback"] is None  # one default-deny of three: no step prefix
    world.rollout().rollback(to="baseline")
    assert world.ours() == {}
    assert "from snapshot 0001-before-default-deny" in world.out
    assert world.record()["steps"] == [] and world.record()["in_progress"] is None


def test_an_interrupted_rollback_to_a_baseline_never_snapshotted_is_finished(world):
    """No snapshot of the baseline on record (the index was pruned): the
    baseline used to be a synthetic 'baseline' that was never written, so a
    rollback cut off while restoring it left a record naming a snapshot
    that did not exist, and every later run failed with "no snapshot
    'baseline'"."""
    world.rollout().up()
    index = world.pdir / "snapshots" / "index.yaml"
    data = yaml.safe_load(index.read_text())
    data["snapshots"] = [s for s in data["snapshots"] if s["applied"]]
    index.write_text(yaml.safe_dump(data))
    world.kube.fail("delete", "NetworkPolicy", after=2, exc=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        world.rollout().rollback(to="baseline")
    progress = world.record()["in_progress"]
    assert progress["phase"] == "restoring"
    assert (world.pdir / "snapshots" / f"{progress['snapshot']}.yaml").exists()
    world.rollout().up(until="default-deny")  # the next command finishes the restore, then goes on
    assert "cut off while restoring" in world.out
    assert world.ours() == world.through(1)
    world.rollout().rollback(to="baseline")
    assert world.ours() == {}


def test_a_rollback_cut_off_after_its_restore_is_verified_by_the_next_one(world):
    world.rollout().up()
    world.kube.fail("exec", exc=KeyboardInterrupt)  # the restore is done, its verification is cut off
    with pytest.raises(KeyboardInterrupt):
        world.rollout().rollback(to="default-deny")
    assert world.ours() == world.through(1)
    assert world.record()["steps"][0]["verified_at"] == ""  # restored, not verified
    world.rollout().rollback(to="default-deny")
    assert world.ours() == world.through(1)
    assert world.record()["steps"][0]["verified_at"]


# -- one notion of "verified" ------------------------------------------------------------


def test_after_a_rollback_whose_verification_failed_nothing_counts_as_verified(world):
    world.rollout().up()
    world.kube.enforce = False  # the CNI stops enforcing (k3d issue 1513: after a stop/start)
    with pytest.raises(VerificationFailed, match="the restored steps stay unverified"):
        world.rollout().rollback(to="allow-dns")
    assert world.ours() == world.through(2)
    rec = current_state(world.cluster().dir)["environments"]
    assert rec.applied == STEPS[:2] and rec.verified == [] and not rec.fully_verified
    # network-policies-up reads "verified" the same way: it re-verifies instead
    # of saying "Nothing to do: ... is verified", and refuses while it differs.
    world.kube.calls.clear()
    with pytest.raises(VerificationFailed, match="default-deny, allow-dns stay unverified and nothing was changed"):
        world.rollout().up(until="allow-dns")
    assert "Nothing to do" not in world.out
    assert world.kube.writes("NetworkPolicy") == []
    world.kube.enforce = True  # fixed
    world.rollout().up(until="allow-dns")
    assert "are in place but not verified since they were restored" in world.out
    assert "Nothing to do: after allow-dns (2/3) is verified on this cluster." in world.out
    assert current_state(world.cluster().dir)["environments"].verified == STEPS[:2]


# -- the API server going away ----------------------------------------------------------


def test_the_api_server_stopping_mid_verification_is_an_interruption_not_a_failure(world):
    world.rollout().up(until="default-deny")

    def api_goes_away(call):
        world.kube.stop_api()
        return KubeUnreachable("exec in develop/frontend: the exec stream dropped: connection reset")

    world.kube.fail("exec", after=10, exc=api_goes_away)
    with pytest.raises(KubeUnreachable) as err:
        world.rollout().up()
    world.kube.start_api()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.endswith("The API server stopped answering while verifying step allow-dns; nothing more was "
                        "changed. Run `inv network-policies-up` again once it answers: it resolves what was cut off")
    assert "verification FAILED" not in world.out and not (world.pdir / "evidence").exists()
    assert world.record()["in_progress"]["phase"] == "verifying"
    assert [e for e in world.history() if e[0] == "step-failed"] == []
    world.kube.calls.clear()
    world.rollout().up()
    assert "cut off while verifying step allow-dns; its policies are all in place. Resuming" in world.out
    assert world.ours() == world.through(3)
    assert [c.name for c in world.kube.writes("NetworkPolicy")] == \
        [o["metadata"]["name"] for o in world.profile.steps[2].objects]  # allow-dns was not applied again


def test_exec_streams_that_never_open_are_an_interruption_and_the_lease_is_released(world):
    """The API server answers but its exec streams hang (each abandoned at
    the seam's bound): the verification cannot say anything, the run ends in
    one line, nothing is rolled back, and the lease is released so the next
    run need not wait."""
    from cluster.live.safety.lease import LEASE_API

    world.rollout().up(until="default-deny")
    world.kube.fail("exec", times=None, exc=lambda call: KubeUnreachable(
        f"exec in {call.namespace}/{call.name}: cannot reach the API server of k3d-dashi (https://0.0.0.0:6550): "
        "the exec stream did not open within 10s"))
    with pytest.raises(KubeUnreachable) as err:
        world.rollout().up()
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cannot probe: not one of ")
    assert "the exec stream did not open within 10s" in msg and "while verifying step allow-dns" in msg
    assert world.record()["in_progress"]["phase"] == "verifying"
    assert not (world.pdir / "evidence").exists() and "restoring" not in world.out
    lease = world.kube.get(LEASE_API, "Lease", "dashi-cluster", "kube-system")
    assert "holderIdentity" not in lease["spec"]
    world.kube._failures.clear()
    world.rollout().up()
    assert "cut off while verifying step allow-dns; its policies are all in place. Resuming" in world.out
    assert world.ours() == world.through(3)


def test_the_api_server_stopping_mid_apply_is_resolved_by_the_next_run(world):
    world.rollout().up(until="default-deny")

    def api_goes_away(call):
        world.kube.stop_api()
        return KubeUnreachable("apply NetworkPolicy/allow-dns: cannot reach the API server: connection refused")

    world.kube.fail("create", "NetworkPolicy", after=1, exc=api_goes_away)
    with pytest.raises(KubeUnreachable, match="while applying step allow-dns; nothing more was changed"):
        world.rollout().up()
    world.kube.start_api()
    world.rollout().up()
    assert "cut off while applying step allow-dns. Rolling back: restoring snapshot 0002-before-allow-dns" in world.out
    assert world.ours() == world.through(3)
    assert world.record()["in_progress"] is None and [s["name"] for s in world.record()["steps"]] == STEPS


# -- cut off anywhere ------------------------------------------------------------------------


class Killed(BaseException):
    """The process ends here (as kill -9 would, but finally blocks still run:
    the lock and lease are the only difference, tested in test_lease)."""


SEED = 20260101


def _cut_after(kube, n: int) -> None:
    """The n-th call to the cluster from now on never returns."""
    real, count = kube._record, [0]

    def record(call):
        count[0] += 1
        if count[0] == n:
            kube._record = real
            raise Killed(f"cut off at call {n}: {call}")
        return real(call)

    kube._record = record


@pytest.mark.parametrize("command", ["up", "rollback"])
def test_cut_off_at_any_call_the_same_command_again_ends_exact(tmp_path, command):
    """The in-process counterpart of the end-to-end kill -9 test: a run cut
    off after a random number of calls (seeded, stratified over the whole
    run: snapshot, apply, verify, restore), then the same command again."""
    import random

    from support.rollout_world import NP

    rng = random.Random(SEED)
    w = RolloutWorld(tmp_path)
    w.kube.apply({"apiVersion": NP, "kind": "NetworkPolicy", "metadata": {"name": "team-rule", "namespace": "develop"},
                  "spec": {"podSelector": {"matchLabels": {"app": "nothing"}}, "policyTypes": ["Ingress"]}})
    foreign = w.kube.get(NP, "NetworkPolicy", "team-rule", "develop")

    def run(until_or_to, cut: int | None):
        if cut is not None:
            _cut_after(w.kube, cut)
        if command == "up":
            w.rollout().up(until=until_or_to)
        else:
            w.rollout().rollback(to=until_or_to)

    # How many calls an uninterrupted run makes, to spread the cuts over it.
    arg, k = ("allow-dns", 2) if command == "up" else ("default-deny", 1)
    if command == "rollback":
        w.rollout().up(until="allow-dns")
    before = len(w.kube.calls)
    run(arg, None)
    total = len(w.kube.calls) - before
    buckets = 8 if cases.ALL else 4
    for b in range(buckets):
        # reset to where the command starts from
        if command == "up":
            w.rollout().rollback(to="baseline")
        else:
            w.rollout().rollback(to="allow-dns")
        cut = rng.randint(1 + b * total // buckets, (b + 1) * total // buckets)
        try:
            run(arg, cut)
        except Killed:
            pass
        run(arg, None)
        where = f"seed {SEED}, {command} cut at call {cut} of {total}"
        assert w.ours() == w.through(k), where
        assert w.kube.get(NP, "NetworkPolicy", "team-rule", "develop") == foreign, where
        rec = w.record()
        assert rec["in_progress"] is None and all(s["verified_at"] for s in rec["steps"]), where
