"""``network-policies-up``: apply a profile's steps in order, each one
checked against policies that are not ours, snapshotted first, created and
verified live; a step whose verification fails is rolled back to its
snapshot and the run stops with the evidence. A re-run resumes after the
last verified step."""

from __future__ import annotations

from cluster.errors import DashiError, KubeError, KubeUnreachable, SnapshotError
from cluster.invoked import command
from cluster.live.observe.discovery import discover
from cluster.live.record.drift import drift, state_label
from cluster.live.record.policies import clean_policy, is_ours, live_policies, mark_ours, policy_key
from cluster.live.record.steprecord import Phase, StepRecord
from cluster.live.rollout.recovery import resolve_interrupted, reverify, unreachable
from cluster.live.rollout.restore import clashes, write_policy
from cluster.live.rollout.session import RolloutSession
from cluster.policy.manifests import obj_ref
from cluster.policy.profile import BASELINE


def _kinds(objs) -> str:
    """How the apply line names a step's objects: NetworkPolicies, or policies when kinds are mixed."""
    if all(o["kind"] == "NetworkPolicy" for o in objs):
        return "NetworkPolicies"
    return "policy" if len(objs) == 1 else "policies"


def policies_through(r: RolloutSession, k: int) -> list[dict]:
    """Our policies as the first k steps make them (label and step annotation included)."""
    return [clean_policy(mark_ours(obj, step.name)) for step in r.profile.steps[:k] for obj in step.objects]


def up(r: RolloutSession, until: str | None = None) -> StepRecord:
    profile = r.profile
    n = len(profile.steps)
    if until == BASELINE:
        raise DashiError(f"--until baseline applies nothing; to remove the policies use {command('rollback --to baseline')}")
    target = n if until is None else profile.step_index(until)
    if profile.cluster_policy_steps and profile.cni == "k3s":
        raise DashiError(f"profile {profile.name} needs ClusterNetworkPolicy ({', '.join(profile.cluster_policy_steps)}),"
                         " which k3s's policy controller (kube-router) does not enforce: nothing was changed")
    try:
        with r.begin(f"apply profile {profile.name}'s policy steps",
                     lambda: policies_through(r, target), refuse_blocked=True):
            return _up(r, target, until)
    except KubeUnreachable as e:
        raise unreachable(r, e, "network-policies-up") from e


def _up(r: RolloutSession, target: int, until: str | None) -> StepRecord:
    profile = r.profile
    n = len(profile.steps)
    record = r.record()
    if record.in_progress or not record.fully_verified or len(record.steps) < target \
            or profile.cluster_policy_steps:
        r.measure_deny_behaviour()  # before anything is verified
    record = resolve_interrupted(r, record)
    k = r.check_record(record)
    ours = [p for p in live_policies(r.kube, profile.profile_namespaces) if is_ours(p)]
    diff = drift(profile, k, ours)
    if diff:
        raise DashiError(f"the live policies of ours differ from the {k} recorded step(s): "
                         f"{'; '.join(diff)}. Nothing was changed; restore a known state first "
                         f"({command('rollback --to baseline')}, or --to a step)")
    if k > target:
        raise DashiError(f"{k} steps are already applied, past --until {until}; to go back use "
                         f"{command(f'rollback --to {until}')}")
    # Fail before the first change if the stand-ins are not there to probe from.
    discover(r.kube, profile)
    if not record.fully_verified:
        reverify(r, record, k)
    if k == target:
        r.say(f"Nothing to do: {state_label(profile, k)} is verified on this cluster.")
        return record
    r.say(f"Profile {profile.name}: {k} of {n} steps verified here; applying "
          f"{', '.join(s.name for s in profile.steps[k:target])}")
    try:
        for i in range(k, target):
            if r.watch is not None:  # --observe: refuse a step that cuts observed traffic
                r.watch.before(r, i)
            _run_step(r, record, i)
            if r.watch is not None:
                r.watch.after(r, i, r.record().steps[-1].snapshot)
    except KeyboardInterrupt:
        ip = r.record().in_progress
        if ip:
            r.say(f"Interrupted during step {ip.step} ({ip.phase}). The next "
                  f"`{command('network-policies-up')}` or `{command('rollback')}` finds it and resolves it.",
                  style="bold yellow")
        raise
    r.say(f"Done: {state_label(profile, target)}, every step verified live.")
    return r.record()


def _run_step(r: RolloutSession, record: StepRecord, i: int) -> None:
    step = r.profile.steps[i]
    n = len(r.profile.steps)
    variant = f", the {step.cni} form" if step.cni else ""
    r.say(f"[{i + 1}/{n}] {step.name} ({step.origin}, {step.path.name}{variant})")
    # The names this step writes, checked again now: another team or a
    # GitOps controller may have made a policy of one of them since the
    # plan was shown. The same read is the step's snapshot.
    live = live_policies(r.kube, r.profile.profile_namespaces)
    objects = [mark_ours(obj, step.name) for obj in step.objects]
    r.refuse_clashes(clashes(live, objects), step.name)
    info = r.snapshot(step.name, live)
    if info.applied != record.applied:
        raise SnapshotError(f"snapshot {info.id} holds {info.label}, but {len(record.applied)} step(s) are "
                            "recorded: the policies changed under this run; nothing was applied")
    r.mark(record, Phase.APPLYING, step=step.name, snapshot=info.id)
    have = {policy_key(p): p for p in live}
    try:
        for obj in objects:
            write_policy(r.kube, obj, have.get(policy_key(obj)))
        applied_at = r.settings.clock()
    except KubeUnreachable:
        raise  # nothing to restore through: the next run restores the snapshot
    except KubeError as e:
        r.say(f"  apply failed: {e}", style="bold red")
        snap = r.snapshots.load(info.id)
        try:
            r.restore_snapshot(record, snap, f"apply of step {step.name} failed")
        except KubeError as e2:
            raise KubeError(f"applying step {step.name} failed ({e}) and restoring snapshot {info.id} "
                            f"failed too ({e2}); the next run finishes the restore") from e2
        r.event("step-failed", step=step.name, snapshot=info.id, ok=False, message=f"apply failed: {e}")
        restored = r.verify_restore(record, i, "the restore is verified live")
        raise KubeError(f"applying step {step.name} failed ({e}); restored snapshot {info.id}: {restored}") from e
    r.say(f"  applied {len(step.objects)} {_kinds(step.objects)}: "
          f"{', '.join(obj_ref(o, kind=o['kind'] != 'NetworkPolicy') for o in step.objects)}")
    r.verify_step(record, i, info.id, applied_at)
