"""The step-wise policy rollout: apply, verify live, keep the way back ready.

``network_policies_up`` takes a profile's namespaces from open networking to
its final policy set one step at a time. For each step:

1. snapshot the NetworkPolicies of the profile's namespaces before touching
   anything (labelled with the steps its content amounts to);
2. server-side apply the step's policies with our field manager, each
   labelled ``app.kubernetes.io/managed-by=dashi-cluster`` and annotated
   ``dashi.io/step=<step>``;
3. probe the live matrix from the stand-in pods and compare it with the
   engine's prediction for the policies now in place (the CNI enforces
   them), and that prediction with the step-intended matrix (the step does
   what it is meant to); disagreeing probes are re-polled for a bounded time,
   since CNIs apply policies asynchronously;
4. on any difference: restore the snapshot, verify the restore, and stop
   non-zero with the evidence (edge, predicted vs observed, the probe's error
   kind, the engine's explanation naming the policies).

Every command that changes the cluster first names it, prints the plan (our
policies to create, update and delete), asks for confirmation where the
cluster is not a local k3d one, and then holds this machine's lock and the
cluster's lease (``cluster.live.safety.lease``) until it ends.

A re-run resumes after the last verified step. ``rollback`` restores a
snapshot exactly (creates, updates and deletes our policies to match it;
never touches anyone else's) and verifies the matrix. ``smoke`` probes the
whole matrix now and reports it. State lives on disk (see
``cluster.live.record.identity``), per cluster identity.

A probe that is refused is read by the CNI's deny behaviour (see
``cluster.live.observe.probe``). On a cluster this machine has never measured (no
``inv prepare`` from here), a command that changes policies runs the
enforcement canary first, after the locks are taken, and keeps what it
measured: without it a refusal could not be read, and a CNI that rejects
(kube-router) answers some denied probes with a refusal and others, past
the kernel's ICMP rate limit, with silence.

A run that is cut off (Ctrl-C, a crash, kill -9, the API server going away)
leaves ``in_progress`` in the step record; the next run says what it finds
and resolves it: a step cut off while being verified is verified again; one
cut off while being applied, or a restore cut off, is rolled back to (or
finished restoring) the snapshot taken before it. Steps that were restored
are not verified until the matrix is probed again, and every command reads
"verified" the same way (``StepRecord.verified``).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from rich.console import Console

from cluster.errors import DashiError, GuardError, KubeError, KubeUnreachable, SnapshotError, VerificationFailed
from cluster.live.observe.cni import cni_label, detect_cni
from cluster.live.observe.discovery import discover
from cluster.live.observe.report import MatrixReport, render, to_json, to_markdown
from cluster.live.observe.settings import ProbeSettings
from cluster.live.observe.verify import verify_live
from cluster.live.record.drift import drift, infer_applied, state_label
from cluster.live.record.files import atomic_write, now_iso, whoami
from cluster.live.record.history import History
from cluster.live.record.identity import ClusterState
from cluster.live.record.policies import clean_policy, is_ours, live_policies, mark_ours
from cluster.live.record.snapshots import Snapshot, SnapshotInfo, SnapshotStore
from cluster.live.record.steprecord import RecordStore, StepEntry, StepRecord
from cluster.live.rollout.restore import Plan, RestoreResult, plan_changes, restore
from cluster.live.safety import guard
from cluster.live.safety.lease import Hold, lease_holder
from cluster.live.safety.lock import ClusterLock
from cluster.live.setup import canary
from cluster.policy.manifests import obj_ref
from cluster.policy.profile import BASELINE, Profile
from cluster.seams.kube import Kube
from cluster.ui import make_console


def _kinds(objs) -> str:
    """How the apply line names a step's objects: NetworkPolicies, or policies when kinds are mixed."""
    if all(o["kind"] == "NetworkPolicy" for o in objs):
        return "NetworkPolicies"
    return "policy" if len(objs) == 1 else "policies"


class Rollout:
    """One command's worth of work on one cluster for one profile."""

    def __init__(self, kube: Kube, profile: Profile, *, out: Console | None = None,
                 settings: ProbeSettings | None = None, root: Path | None = None,
                 explicit_context: str | None = None, yes: bool = False,
                 confirm: guard.Confirm | None = None, lease: dict | None = None):
        self.kube = kube
        # A step may have a form for the CNI this cluster runs (the kube-api
        # step on Cilium is a CiliumNetworkPolicy): the rollout applies,
        # predicts, snapshots and compares with that form.
        # The CNI also says which of its departures from the API's wording
        # the engine predicts (cluster.policy.engine.DATAPLANES).
        self.profile = profile.for_cni(detect_cni(kube))
        self.out = out or make_console()
        self.context = kube.context()
        self.server = kube.server()
        self.cluster = ClusterState.open(kube, root)
        # Probes are read with the deny behaviour the canary measured on this
        # cluster: under a CNI that drops, a refusal means the packet got in.
        self.settings = replace(settings or ProbeSettings.from_env(), deny_behaviour=self.cluster.deny_behaviour)
        self.dir = self.cluster.profile_dir(profile.name)
        self.snapshots = SnapshotStore(self.dir / "snapshots")
        self.records = RecordStore(self.dir)
        self.history = History.at(self.dir)
        self.explicit_context = explicit_context
        self.yes = yes
        self.confirm = confirm
        self.lease_options = lease or {}
        self.hold: Hold | None = None

    # -- output -----------------------------------------------------------

    def say(self, text: str = "", **kw) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True, **kw)

    def _event(self, event: str, **kw) -> None:
        self.history.append(event, context=self.context, profile=self.profile.name, **kw)

    # -- the way in: banner, plan, confirmation, lock and lease ------------

    def _plan(self, desired: Callable[[], list[dict]]) -> Plan:
        return plan_changes(live_policies(self.kube, self.profile.profile_namespaces), desired())

    def _begin(self, action: str, desired: Callable[[], list[dict]], *, refuse_blocked: bool) -> Hold:
        """Banner (it names the cluster), the plan, the guard, then the locks.

        The plan is computed again once the locks are held: if another run
        changed the cluster in between, a confirmed plan is void."""
        self.say(guard.banner(self.context, self.server, action))
        if self.cluster.note:
            self.say(self.cluster.note)
        where = ", ".join(self.profile.profile_namespaces)
        shown = self._plan(desired)
        for line in shown.lines(where):
            self.say(line)
        if self.settings.deny_behaviour == "unknown":
            self.say("first: the enforcement canary (namespace dashi-canary-<random>, two agnhost pods, deleted "
                     "after) measures whether this cluster's CNI drops or rejects a denied packet, before anything is "
                     "verified; it was never "
                     "measured from this machine, and the probes are read by it")
        if refuse_blocked and shown.blocked:
            raise DashiError(f"{', '.join(shown.blocked)}: a NetworkPolicy that is not ours already has the name; "
                             "nothing was changed. Rename one of them (ours are in the profile's policy files)")
        guard.check(self.context, self.server, self.explicit_context, yes=self.yes, confirm=self.confirm,
                    action=action)
        hold = Hold(self.kube, self.cluster.dir, f"{action} ({self.profile.name})", **self.lease_options)
        hold.acquire()
        try:
            if hold.found.startswith(("expired", "gone")):
                why = "ran out" if hold.found.startswith("expired") else "belongs to a process that has ended"
                self.say(f"note: the cluster lease of {hold.found.split(': ', 1)[-1]} {why}; taken over")
            again = self._plan(desired)
            if again != shown:
                if guard.needs_confirmation(self.context, self.server):
                    raise GuardError("the cluster's policies changed after the plan was shown (another run?); "
                                     "nothing was changed. Run the command again to see the new plan")
                self.say("The policies changed while the locks were taken; the plan now:")
                for line in again.lines(where):
                    self.say(line)
        except BaseException:
            hold.release()
            raise
        self.hold = hold
        return hold

    def _measure_deny_behaviour(self) -> None:
        """Run the canary when this machine never measured the cluster's deny
        behaviour; keep what it found. Raises NotEnforced on a CNI that lets
        a denied packet through: no rollout is verifiable there."""
        if self.settings.deny_behaviour != "unknown":
            return
        cni = self.profile.cni  # what __init__ detected
        self.say("Measuring this cluster's deny behaviour (the enforcement canary)...")
        result = canary.measure(self.kube, self.cluster, cni, sleep=self.settings.sleep, clock=self.settings.clock)
        line = canary.verdict(result, cni_label(cni))  # raises loudly when not enforced
        self.settings = replace(self.settings, deny_behaviour=self.cluster.deny_behaviour)
        self.say(f"  {line}")

    def _unreachable(self, e: KubeUnreachable, command: str) -> KubeUnreachable:
        """The one line for an API server that went away in the middle."""
        try:
            ip = self._record().in_progress
        except DashiError:
            ip = None
        where = (f" while {ip.get('phase')}" + (f" step {ip['step']}" if ip.get("step") else "")) if ip else ""
        return KubeUnreachable(f"{e}. The API server stopped answering{where}; nothing more was changed. "
                               f"Run `inv {command}` again once it answers: it resolves what was cut off")

    # -- shared pieces --------------------------------------------------------

    def _record(self) -> StepRecord:
        return self.records.load(self.profile.name, self.context)

    def _snapshot(self, taken_before: str) -> SnapshotInfo:
        info = self.snapshots.save(profile=self.profile, context=self.context, server=self.server,
                                   taken_before=taken_before,
                                   live_policies=live_policies(self.kube, self.profile.profile_namespaces))
        self.say(f"  snapshot {info.id}: {info.policies} of ours ({info.label}), {info.foreign} not ours "
                 f"({self.snapshots.dir / info.file})")
        return info

    def _mark(self, record: StepRecord, **progress) -> None:
        """Record what is about to change, after making sure the lease is still ours."""
        if self.hold is not None:
            self.hold.check()
        user, host = whoami()
        record.in_progress = {**progress, "started": now_iso(), "pid": os.getpid(), "user": user, "host": host}
        self.records.save(record)

    def _restore_snapshot(self, record: StepRecord, snap: Snapshot, why: str) -> RestoreResult:
        """Restore a loaded snapshot, recording the restore as in progress so a
        cut-off restore is finished by the next run. The restored steps are
        unverified until the matrix is probed again, and the restore stays in
        progress until that probe has run (``_finish_restore``): a run cut
        off in between is finished, verification included, by the next one."""
        if snap.info.applied is None:
            raise SnapshotError(f"snapshot {snap.info.id} holds {snap.info.label}; refusing to restore it")
        self._mark(record, phase="restoring", snapshot=snap.info.id, step=record.in_progress.get("step")
                   if record.in_progress else None, why=why)
        res = restore(self.kube, snap.policies, snap.namespaces)
        self.say(f"  restored snapshot {snap.info.id}: {res.line()}")
        for note in res.notes:
            self.say(f"  note: {note}")
        keep = {s.name: s for s in record.steps}
        user, host = whoami()
        record.steps = [replace(keep[n], verified_at="") if n in keep else
                        StepEntry(n, snap.info.id, now_iso(), "", user, host, {"restored_from": snap.info.id})
                        for n in snap.info.applied]
        record.in_progress = {**record.in_progress, "restored": now_iso()}
        self.records.save(record)
        self._event("restored", snapshot=snap.info.id, ok=True, message=f"{why}: {res.line()}")
        return res

    def _verified(self, record: StepRecord, report: MatrixReport) -> None:
        """Record a passing verification of the applied steps."""
        if report.ok:
            record.mark_verified(now_iso())
            self.records.save(record)

    def _finish_restore(self, record: StepRecord, report: MatrixReport) -> None:
        """The restore's verification has run: record its verdict, end the restore."""
        if report.ok:
            record.mark_verified(now_iso())
        record.in_progress = None
        self.records.save(record)

    def _save_evidence(self, report: MatrixReport, name: str) -> Path:
        """Keep the full evidence of a failed verification beside the snapshots
        (the terminal shows only the first differences)."""
        base = self.dir / "evidence"
        atomic_write(base / f"{name}.json", (json.dumps(to_json(report), indent=2) + "\n").encode())
        atomic_write(base / f"{name}.md", to_markdown(report).encode())
        self.say(f"  evidence: {base / name}.md (and .json)")
        return base / f"{name}.md"

    def _verify(self, k: int | None, *, matrices: bool = True, since: float | None = None) -> MatrixReport:
        report = verify_live(self.kube, self.profile, k, self.settings, context=self.context, since=since)
        if any("error" in r.problems for r in report.rows):
            # Probes that could not run say nothing about the policies when
            # the API server itself is gone: that is an interruption, not a
            # failed verification (this read raises KubeUnreachable then).
            self.kube.get("v1", "Namespace", "kube-system")
        render(report, self.out, matrices=matrices)
        return report

    def _verify_restore(self, record: StepRecord, k: int, verified: str) -> str:
        """Probe the matrix after a restore to k steps; record, say and return the verdict."""
        after = self._verify(k, matrices=False)
        self._finish_restore(record, after)
        restored = verified if after.ok else "the restored state ALSO differs: " + after.summary_line()
        self.say(f"  {restored}")
        return restored

    def _check_record(self, record: StepRecord) -> int:
        k = len(record.steps)
        names = [s.name for s in self.profile.steps[:k]]
        if record.applied != names:
            raise DashiError(f"the step record says {', '.join(record.applied) or 'nothing'} applied, but profile "
                             f"{self.profile.name} now begins {', '.join(names) or '(no steps)'}: the profile "
                             "changed under a running rollout. Roll back first: inv rollback --to baseline")
        return k

    # -- interrupted runs ---------------------------------------------------

    def _resolve_interrupted(self, record: StepRecord) -> StepRecord:
        """Finish what a cut-off run left: say what was found and what is done."""
        ip = record.in_progress
        if not ip:
            return record
        phase, step, snap_id = ip.get("phase"), ip.get("step"), ip.get("snapshot")
        who = f"pid {ip.get('pid')} {ip.get('user')}@{ip.get('host')} at {ip.get('started')}"
        k = len(record.steps)
        if phase == "verifying" and step and k < len(self.profile.steps) and self.profile.steps[k].name == step:
            ours = [p for p in live_policies(self.kube, self.profile.profile_namespaces) if is_ours(p)]
            if not drift(self.profile, k + 1, ours):
                self.say(f"A previous run ({who}) was cut off while verifying step {step}; its policies are "
                         "all in place. Resuming: verifying it again.")
                self._verify_step(record, k, snap_id)
                self._event("resolved", step=step, snapshot=snap_id, ok=True,
                            message="resumed an interrupted verification")
                return self._record()
        if not snap_id:
            raise SnapshotError(f"a previous run ({who}) was cut off in phase {phase!r} without a snapshot "
                                "to return to; inspect the cluster and `inv rollback --to baseline`")
        what = f"while {phase} step {step}" if step else f"while {phase}"
        self.say(f"A previous run ({who}) was cut off {what}. Rolling back: restoring snapshot {snap_id} "
                 "taken before it.")
        snap = self.snapshots.load(snap_id)
        self._restore_snapshot(record, snap, f"resolve a run cut off {what}")
        report = self._verify(len(snap.info.applied))
        self._finish_restore(record, report)
        self._event("resolved", step=step, snapshot=snap_id, ok=report.ok, summary=report.summary(),
                    message=f"rolled back a run cut off {what}")
        if not report.ok:
            raise VerificationFailed(f"after restoring {snap_id} the live matrix still differs "
                                     "(evidence above); the cluster is not in a verified state")
        return self._record()

    def _reverify(self, record: StepRecord, k: int) -> None:
        """Applied steps that are not verified (restored, and their verification
        failed or was cut off) are verified before anything else happens."""
        pending = [s.name for s in record.steps if not s.verified_at]
        self.say(f"Steps {', '.join(pending)} are in place but not verified since they were restored: "
                 "verifying the live matrix first.")
        report = self._verify(k)
        self._verified(record, report)
        self._event("verified", step=record.applied[-1] if record.applied else BASELINE, ok=report.ok,
                    summary=report.summary(), message="verified restored steps")
        if not report.ok:
            self._save_evidence(report, f"{now_iso().replace(':', '')}-restored-unverified")
            raise VerificationFailed(f"the live matrix {state_label(self.profile, k)} differs (evidence above); "
                                     f"{', '.join(pending)} stay unverified and nothing was changed. Find the "
                                     "cause, or roll back: inv rollback --to <step>|baseline")

    # -- network-policies-up ----------------------------------------------

    def _verify_step(self, record: StepRecord, k: int, snap_id: str, applied_at: float | None = None) -> MatrixReport:
        """Verify step k+1 (0-based index k) in place; record it or restore."""
        step = self.profile.steps[k]
        n = len(self.profile.steps)
        self._mark(record, phase="verifying", step=step.name, snapshot=snap_id)
        report = self._verify(k + 1, since=applied_at)
        if report.ok:
            user, host = whoami()
            record.steps.append(StepEntry(step.name, snap_id, record.in_progress["started"], now_iso(),
                                          user, host, report.summary()))
            record.in_progress = None
            self.records.save(record)
            self._event("step-verified", step=step.name, snapshot=snap_id, ok=True, summary=report.summary())
            enforced = (f" (time to enforce: the live matrix matched {report.matched_seconds:.1f} s after the apply)"
                        if report.matched_seconds is not None and applied_at is not None else "")
            self.say(f"[{k + 1}/{n}] {step.name}: verified{enforced}")
            return report
        self.say(f"[{k + 1}/{n}] {step.name}: verification FAILED; restoring snapshot {snap_id}", style="bold red")
        self._save_evidence(report, f"{snap_id}-{step.name}-failed")
        self._event("step-failed", step=step.name, snapshot=snap_id, ok=False, summary=report.summary(),
                    message="; ".join(f"{r.edge} {'/'.join(r.problems)}" for r in report.problem_rows[:20]))
        snap = self.snapshots.load(snap_id)
        try:
            self._restore_snapshot(record, snap, f"step {step.name} failed verification")
        except KubeError as e:
            raise KubeError(f"step {step.name} failed verification (evidence above) and restoring snapshot "
                            f"{snap_id} failed ({e}); the next run finishes the restore") from e
        restored = self._verify_restore(record, k, "the restore is verified: the live matrix matches the engine again")
        kinds = sorted({p for r in report.problem_rows for p in r.problems})
        raise VerificationFailed(
            f"step {step.name} rolled back to snapshot {snap_id}: {len(report.problem_rows)} edge(s) "
            f"differ ({', '.join(kinds)}); evidence above; {restored}")

    def _policies_through(self, k: int) -> list[dict]:
        """Our policies as the first k steps make them (label and step annotation included)."""
        return [clean_policy(mark_ours(obj, step.name)) for step in self.profile.steps[:k] for obj in step.objects]

    def up(self, until: str | None = None) -> StepRecord:
        profile = self.profile
        n = len(profile.steps)
        if until == BASELINE:
            raise DashiError("--until baseline applies nothing; to remove the policies use inv rollback --to baseline")
        target = n if until is None else profile.step_index(until)
        try:
            with self._begin(f"apply profile {profile.name}'s policy steps",
                             lambda: self._policies_through(target), refuse_blocked=True):
                return self._up(target, until)
        except KubeUnreachable as e:
            raise self._unreachable(e, "network-policies-up") from e

    def _up(self, target: int, until: str | None) -> StepRecord:
        profile = self.profile
        n = len(profile.steps)
        record = self._record()
        if record.in_progress or not record.fully_verified or len(record.steps) < target:
            self._measure_deny_behaviour()  # before anything is verified
        record = self._resolve_interrupted(record)
        k = self._check_record(record)
        ours = [p for p in live_policies(self.kube, profile.profile_namespaces) if is_ours(p)]
        diff = drift(profile, k, ours)
        if diff:
            raise DashiError(f"the live policies of ours differ from the {k} recorded step(s): "
                             f"{'; '.join(diff)}. Nothing was changed; restore a known state first "
                             "(inv rollback --to baseline, or --to a step)")
        if k > target:
            raise DashiError(f"{k} steps are already applied, past --until {until}; to go back use "
                             f"inv rollback --to {until}")
        # Fail before the first change if the stand-ins are not there to probe from.
        discover(self.kube, profile)
        if not record.fully_verified:
            self._reverify(record, k)
        if k == target:
            self.say(f"Nothing to do: {state_label(profile, k)} is verified on this cluster.")
            return record
        self.say(f"Profile {profile.name}: {k} of {n} steps verified here; applying "
                 f"{', '.join(s.name for s in profile.steps[k:target])}")
        try:
            for i in range(k, target):
                self._run_step(record, i)
        except KeyboardInterrupt:
            ip = self._record().in_progress
            if ip:
                self.say(f"Interrupted during step {ip.get('step')} ({ip.get('phase')}). The next "
                         "`inv network-policies-up` or `inv rollback` finds it and resolves it.",
                         style="bold yellow")
            raise
        self.say(f"Done: {state_label(profile, target)}, every step verified live.")
        return self._record()

    def _run_step(self, record: StepRecord, i: int) -> None:
        step = self.profile.steps[i]
        n = len(self.profile.steps)
        variant = f", the {step.cni} form" if step.cni else ""
        self.say(f"[{i + 1}/{n}] {step.name} ({step.origin}, {step.path.name}{variant})")
        info = self._snapshot(step.name)
        if info.applied != record.applied:
            raise SnapshotError(f"snapshot {info.id} holds {info.label}, but {len(record.applied)} step(s) are "
                                "recorded: the policies changed under this run; nothing was applied")
        self._mark(record, phase="applying", step=step.name, snapshot=info.id)
        try:
            for obj in step.objects:
                self.kube.apply(mark_ours(obj, step.name))
            applied_at = self.settings.clock()
        except KubeUnreachable:
            raise  # nothing to restore through: the next run restores the snapshot
        except KubeError as e:
            self.say(f"  apply failed: {e}", style="bold red")
            snap = self.snapshots.load(info.id)
            try:
                self._restore_snapshot(record, snap, f"apply of step {step.name} failed")
            except KubeError as e2:
                raise KubeError(f"applying step {step.name} failed ({e}) and restoring snapshot {info.id} "
                                f"failed too ({e2}); the next run finishes the restore") from e2
            self._event("step-failed", step=step.name, snapshot=info.id, ok=False, message=f"apply failed: {e}")
            restored = self._verify_restore(record, i, "the restore is verified live")
            raise KubeError(f"applying step {step.name} failed ({e}); restored snapshot {info.id}: {restored}") from e
        self.say(f"  applied {len(step.objects)} {_kinds(step.objects)}: "
                 f"{', '.join(obj_ref(o, kind=o['kind'] != 'NetworkPolicy') for o in step.objects)}")
        self._verify_step(record, i, info.id, applied_at)

    # -- rollback -----------------------------------------------------------

    def _choose(self, record: StepRecord, to: str | None) -> tuple[Snapshot | None, int]:
        """The snapshot a rollback restores and the steps it holds; (None, 0)
        when the baseline must be written first (none is on record)."""
        profile = self.profile
        ip = record.in_progress
        if ip and to is None:
            snap_id = ip.get("snapshot")
            if not snap_id:
                raise SnapshotError("a cut-off run left no snapshot to return to; use --to baseline")
            snap = self.snapshots.load(snap_id)
            if snap.info.applied is None:
                raise SnapshotError(f"snapshot {snap_id} holds {snap.info.label}; use --to a step or baseline")
            return snap, len(snap.info.applied)
        k_now = len(record.steps)
        if to is None:
            if k_now == 0:
                raise DashiError(f"no step of profile {profile.name} is recorded on {self.context}: "
                                 "nothing to roll back (--to baseline removes any policies of ours)")
            k = k_now - 1
        else:
            k = profile.step_index(to)
        snap = self.snapshots.latest_holding(profile, k)
        if snap is not None:
            return snap, k
        if k == 0:
            return None, 0
        if k > k_now:
            raise DashiError(f"{to} is not applied yet ({k_now} steps are) and no snapshot holds it; "
                             f"use inv network-policies-up --until {to}")
        known = ", ".join(f"{i.id} ({i.label})" for i in self.snapshots.index()) or "none"
        raise SnapshotError(f"no snapshot holds the state after {profile.steps[k - 1].name} (snapshots: {known})")

    def rollback(self, to: str | None = None) -> StepRecord:
        chosen: list[tuple[Snapshot | None, int]] = []

        def desired() -> list[dict]:
            chosen[:] = [self._choose(self._record(), to)]
            snap = chosen[0][0]
            return [] if snap is None else snap.policies

        try:
            with self._begin(f"roll back profile {self.profile.name}'s policies", desired, refuse_blocked=False):
                return self._rollback(*chosen[0])
        except KubeUnreachable as e:
            raise self._unreachable(e, "rollback") from e

    def _rollback(self, snap: Snapshot | None, target: int) -> StepRecord:
        profile = self.profile
        self._measure_deny_behaviour()  # before anything is verified
        record = self._record()
        ip = record.in_progress
        if ip:
            self.say(f"A previous run was cut off while {ip.get('phase')} step {ip.get('step')}: "
                     + ("rolling that back." if snap is not None and ip.get("snapshot") == snap.info.id
                        else f"the rollback to {state_label(profile, target)} replaces whatever it left."))
        if snap is None:
            # The baseline is a real snapshot: written before it is restored,
            # so a rollback cut off from here on names a file that exists.
            foreign = [p for p in live_policies(self.kube, profile.profile_namespaces) if not is_ours(p)]
            info = self.snapshots.save(profile=profile, context=self.context, server=self.server,
                                       taken_before=BASELINE, live_policies=foreign)
            self.say(f"No snapshot of the baseline on record: wrote {info.id} (no policies of ours) "
                     f"({self.snapshots.dir / info.file})")
            snap = self.snapshots.load(info.id)
        self.say(f"Rolling back to {state_label(profile, target)} from snapshot {snap.info.id}: "
                 f"{len(snap.policies)} policies of ours will exist; others' are not touched.")
        # The rollback is a change too: keep the way back to what is live now.
        self._snapshot("rollback")
        self._restore_snapshot(record, snap, f"rollback to {state_label(profile, target)}")
        report = self._verify(target)
        self._finish_restore(record, report)
        self._event("rollback", step=(profile.steps[target - 1].name if target else BASELINE),
                    snapshot=snap.info.id, ok=report.ok, summary=report.summary())
        if not report.ok:
            self._save_evidence(report, f"{snap.info.id}-rollback-failed")
            raise VerificationFailed(f"rolled back to snapshot {snap.info.id}, but the live matrix differs "
                                     "(evidence above); the restored steps stay unverified")
        self.say(f"Rolled back: {state_label(profile, target)}, verified live.")
        return self._record()

    # -- smoke --------------------------------------------------------------

    def smoke(self) -> MatrixReport:
        profile = self.profile
        self.say(f"Cluster: {self.context} ({self.server}) - probe profile {profile.name}'s matrix (read-only)")
        if self.cluster.note:
            self.say(self.cluster.note)
        holder = lease_holder(self.kube)
        if holder or ClusterLock(self.cluster.dir).is_held():
            self.say(f"note: another run is changing this cluster right now{': ' + holder if holder else ''}; "
                     "what this sees may be mid-step")
        record = self._record()
        if record.in_progress:
            self.say(f"note: a run was cut off while {record.in_progress.get('phase')} step "
                     f"{record.in_progress.get('step')}; run inv network-policies-up or inv rollback to resolve it")
        ours = [p for p in live_policies(self.kube, profile.profile_namespaces) if is_ours(p)]
        k = infer_applied(profile, ours)
        report = verify_live(self.kube, profile, k, self.settings, context=self.context)
        if k is None:
            nearest = min(range(len(profile.steps) + 1), key=lambda n: len(drift(profile, n, ours)))
            report.notes.append(f"the live policies of ours match no step prefix of the profile; closest is "
                                f"{state_label(profile, nearest)}: {'; '.join(drift(profile, nearest, ours))}. "
                                "Intent not checked")
            report.intent_checked = False
        elif k != len(record.steps):
            report.notes.append(f"the step record says {len(record.steps)} steps; the live policies are "
                                f"those of {k}")
        render(report, self.out, matrices=True)
        self._event("smoke", step=(profile.steps[k - 1].name if k else BASELINE) if k is not None else None,
                    ok=report.ok, summary=report.summary())
        return report
