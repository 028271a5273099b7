"""``smoke``: probe the whole matrix now and report it, changing nothing.
The live policies of ours say which step prefix is in place; the report
compares the live matrix with the engine and, when the policies are a step
prefix, with the intended matrix after it."""

from __future__ import annotations

from cluster.invoked import command
from cluster.live.observe.report import MatrixReport, render
from cluster.live.observe.verify import verify_live
from cluster.live.record.drift import drift, infer_applied, state_label
from cluster.live.record.policies import is_ours, live_policies
from cluster.live.rollout.session import RolloutSession
from cluster.live.safety.lease import lease_holder
from cluster.live.safety.lock import ClusterLock
from cluster.policy.profile import BASELINE


def smoke(r: RolloutSession) -> MatrixReport:
    profile = r.profile
    r.say(f"Cluster: {r.context} ({r.server}) - probe profile {profile.name}'s matrix (read-only)")
    if r.cluster.note:
        r.say(r.cluster.note)
    holder = lease_holder(r.kube)
    if holder or ClusterLock(r.cluster.dir).is_held():
        r.say(f"note: another run is changing this cluster right now{': ' + holder if holder else ''}; "
              "what this sees may be mid-step")
    record = r.record()
    if record.in_progress:
        r.say(f"note: a run was cut off while {record.in_progress.phase} step "
              f"{record.in_progress.step}; run {command('network-policies-up')} or {command('rollback')} to resolve it")
    ours = [p for p in live_policies(r.kube, profile.profile_namespaces) if is_ours(p)]
    k = infer_applied(profile, ours)
    report = verify_live(r.kube, profile, k, r.settings, context=r.context)
    if k is None:
        nearest = min(range(len(profile.steps) + 1), key=lambda n: len(drift(profile, n, ours)))
        report.notes.append(f"the live policies of ours match no step prefix of the profile; closest is "
                            f"{state_label(profile, nearest)}: {'; '.join(drift(profile, nearest, ours))}. "
                            "Intent not checked")
        report.intent_checked = False
    elif k != len(record.steps):
        report.notes.append(f"the step record says {len(record.steps)} steps; the live policies are "
                            f"those of {k}")
    render(report, r.out, matrices=True)
    r.event("smoke", step=(profile.steps[k - 1].name if k else BASELINE) if k is not None else None,
            ok=report.ok, summary=report.summary())
    return report
