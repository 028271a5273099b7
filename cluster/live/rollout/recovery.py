"""What a run that was cut off left behind, resolved by the next one.

A run cut off (Ctrl-C, a crash, kill -9, the API server going away) leaves
its in-progress note in the step record. The next run says what it found
and resolves it: a step cut off while being verified, whose policies are all
in place, is verified again; anything else (a step cut off while being
applied, a restore cut off) is rolled back to, or finishes restoring, the
snapshot taken before it. Steps that were restored and never verified since
are verified before anything else changes.
"""

from __future__ import annotations

from cluster import invoked
from cluster.errors import DashiError, KubeUnreachable, SnapshotError, VerificationFailed
from cluster.live.record.drift import drift, state_label
from cluster.live.record.files import now_iso
from cluster.live.record.policies import is_ours, live_policies
from cluster.live.record.steprecord import Phase, StepRecord
from cluster.live.rollout.session import RolloutSession
from cluster.policy.profile import BASELINE


def unreachable(r: RolloutSession, e: KubeUnreachable, command: str) -> KubeUnreachable:
    """The one line for an API server that went away in the middle."""
    try:
        ip = r.record().in_progress
    except DashiError:
        ip = None
    where = (f" while {ip.phase}" + (f" step {ip.step}" if ip.step else "")) if ip else ""
    return KubeUnreachable(f"{e}. The API server stopped answering{where}; nothing more was changed. "
                           f"Run `{invoked.command(command)}` again once it answers: it resolves what was cut off")


def resolve_interrupted(r: RolloutSession, record: StepRecord) -> StepRecord:
    """Finish what a cut-off run left: say what was found and what is done."""
    ip = record.in_progress
    if not ip:
        return record
    k = len(record.steps)
    steps = r.profile.steps
    if ip.phase is Phase.VERIFYING and ip.step and k < len(steps) and steps[k].name == ip.step:
        ours = [p for p in live_policies(r.kube, r.profile.profile_namespaces) if is_ours(p)]
        if not drift(r.profile, k + 1, ours):
            r.say(f"A previous run ({ip.who}) was cut off while verifying step {ip.step}; its policies are "
                  "all in place. Resuming: verifying it again.")
            r.verify_step(record, k, ip.snapshot)
            r.event("resolved", step=ip.step, snapshot=ip.snapshot, ok=True,
                    message="resumed an interrupted verification")
            return r.record()
    if not ip.snapshot:
        raise SnapshotError(f"a previous run ({ip.who}) was cut off in phase {ip.phase.value!r} without a snapshot "
                            f"to return to; inspect the cluster and `{invoked.command('rollback --to baseline')}`")
    what = f"while {ip.phase} step {ip.step}" if ip.step else f"while {ip.phase}"
    r.say(f"A previous run ({ip.who}) was cut off {what}. Rolling back: restoring snapshot {ip.snapshot} "
          "taken before it.")
    snap = r.snapshots.load(ip.snapshot)
    r.restore_snapshot(record, snap, f"resolve a run cut off {what}")
    report = r.verify(len(snap.info.applied))
    r.finish_restore(record, report)
    r.event("resolved", step=ip.step, snapshot=ip.snapshot, ok=report.ok, summary=report.summary(),
            message=f"rolled back a run cut off {what}")
    if not report.ok:
        raise VerificationFailed(f"after restoring {ip.snapshot} the live matrix still differs "
                                 "(evidence above); the cluster is not in a verified state")
    return r.record()


def reverify(r: RolloutSession, record: StepRecord, k: int) -> None:
    """Applied steps that are not verified (restored, and their verification
    failed or was cut off) are verified before anything else happens."""
    pending = [s.name for s in record.steps if not s.verified_at]
    r.say(f"Steps {', '.join(pending)} are in place but not verified since they were restored: "
          "verifying the live matrix first.")
    report = r.verify(k)
    r.verified(record, report)
    r.event("verified", step=record.applied[-1] if record.applied else BASELINE, ok=report.ok,
            summary=report.summary(), message="verified restored steps")
    if not report.ok:
        r.save_evidence(report, f"{now_iso().replace(':', '')}-restored-unverified")
        raise VerificationFailed(f"the live matrix {state_label(r.profile, k)} differs (evidence above); "
                                 f"{', '.join(pending)} stay unverified and nothing was changed. Find the "
                                 f"cause, or roll back: {invoked.command('rollback --to <step>|baseline')}")
