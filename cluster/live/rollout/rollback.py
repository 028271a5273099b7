"""``rollback``: restore an earlier snapshot exactly (our policies created,
updated and deleted until they match it; nobody else's touched), then verify
the live matrix. One step back by default; ``--to STEP`` is the state right
after STEP, ``--to baseline`` no policies of ours. A rollback takes a
snapshot first, so it can be undone."""

from __future__ import annotations

from cluster.errors import DashiError, KubeUnreachable, SnapshotError, VerificationFailed
from cluster.invoked import command
from cluster.live.record.drift import state_label
from cluster.live.record.policies import is_ours, live_policies
from cluster.live.record.snapshots import Snapshot
from cluster.live.record.steprecord import StepRecord
from cluster.live.rollout.recovery import unreachable
from cluster.live.rollout.session import RolloutSession
from cluster.policy.profile import BASELINE


def choose(r: RolloutSession, record: StepRecord, to: str | None) -> tuple[Snapshot | None, int]:
    """The snapshot a rollback restores and the steps it holds; (None, 0)
    when the baseline must be written first (none is on record)."""
    profile = r.profile
    ip = record.in_progress
    if ip and to is None:
        if not ip.snapshot:
            raise SnapshotError("a cut-off run left no snapshot to return to; use --to baseline")
        snap = r.snapshots.load(ip.snapshot)
        if snap.info.applied is None:
            raise SnapshotError(f"snapshot {ip.snapshot} holds {snap.info.label}; use --to a step or baseline")
        return snap, len(snap.info.applied)
    k_now = len(record.steps)
    if to is None:
        if k_now == 0:
            raise DashiError(f"no step of profile {profile.name} is recorded on {r.context}: "
                             "nothing to roll back (--to baseline removes any policies of ours)")
        k = k_now - 1
    else:
        k = profile.step_index(to)
    snap = r.snapshots.latest_holding(profile, k)
    if snap is not None:
        return snap, k
    if k == 0:
        return None, 0
    if k > k_now:
        raise DashiError(f"{to} is not applied yet ({k_now} steps are) and no snapshot holds it; "
                         f"use {command(f'network-policies-up --until {to}')}")
    known = ", ".join(f"{i.id} ({i.label})" for i in r.snapshots.index()) or "none"
    raise SnapshotError(f"no snapshot holds the state after {profile.steps[k - 1].name} (snapshots: {known})")


def rollback(r: RolloutSession, to: str | None = None) -> StepRecord:
    chosen: list[tuple[Snapshot | None, int]] = []

    def desired() -> list[dict]:
        chosen[:] = [choose(r, r.record(), to)]
        snap = chosen[0][0]
        return [] if snap is None else snap.policies

    try:
        with r.begin(f"roll back profile {r.profile.name}'s policies", desired, refuse_blocked=False):
            return _rollback(r, *chosen[0])
    except KubeUnreachable as e:
        raise unreachable(r, e, "rollback") from e


def _rollback(r: RolloutSession, snap: Snapshot | None, target: int) -> StepRecord:
    profile = r.profile
    r.measure_deny_behaviour()  # before anything is verified
    record = r.record()
    ip = record.in_progress
    if ip:
        r.say(f"A previous run was cut off while {ip.phase} step {ip.step}: "
              + ("rolling that back." if snap is not None and ip.snapshot == snap.info.id
                 else f"the rollback to {state_label(profile, target)} replaces whatever it left."))
    if snap is None:
        # The baseline is a real snapshot: written before it is restored,
        # so a rollback cut off from here on names a file that exists.
        foreign = [p for p in live_policies(r.kube, profile.profile_namespaces) if not is_ours(p)]
        info = r.snapshots.save(profile=profile, context=r.context, server=r.server,
                                taken_before=BASELINE, live_policies=foreign)
        r.say(f"No snapshot of the baseline on record: wrote {info.id} (no policies of ours) "
              f"({r.snapshots.dir / info.file})")
        snap = r.snapshots.load(info.id)
    r.say(f"Rolling back to {state_label(profile, target)} from snapshot {snap.info.id}: "
          f"{len(snap.policies)} policies of ours will exist; others' are not touched.")
    # The rollback is a change too: keep the way back to what is live now.
    r.snapshot("rollback")
    r.restore_snapshot(record, snap, f"rollback to {state_label(profile, target)}")
    report = r.verify(target)
    r.finish_restore(record, report)
    r.event("rollback", step=(profile.steps[target - 1].name if target else BASELINE),
            snapshot=snap.info.id, ok=report.ok, summary=report.summary())
    if not report.ok:
        r.save_evidence(report, f"{snap.info.id}-rollback-failed")
        raise VerificationFailed(f"rolled back to snapshot {snap.info.id}, but the live matrix differs "
                                 "(evidence above); the restored steps stay unverified")
    r.say(f"Rolled back: {state_label(profile, target)}, verified live.")
    return r.record()
