"""What every rollout command shares: one command's session on one cluster
for one profile.

The session names the cluster, prints the plan, passes the guard and holds
the locks (``begin``); it keeps the record of steps (``record``, ``mark``),
takes and restores snapshots, probes the live matrix and keeps the evidence
of a failed verification. The commands (``up``, ``rollback``, ``smoke``)
and the recovery of a cut-off run are built on it, one module each.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from rich.console import Console

from cluster.errors import DashiError, GuardError, KubeError, SnapshotError, VerificationFailed
from cluster.invoked import command
from cluster.live.observe.cni import cni_label, detect_cni
from cluster.live.observe.htmlpages import Verification, run_html, verifications_json
from cluster.live.observe.report import MatrixReport, render, to_json, to_markdown
from cluster.live.observe.settings import ProbeSettings
from cluster.live.observe.verify import verify_live
from cluster.live.record.drift import state_label
from cluster.live.record.files import atomic_write, now_iso, whoami
from cluster.live.record.history import History
from cluster.live.record.identity import ClusterState
from cluster.live.record.policies import live_policies
from cluster.live.record.snapshots import Snapshot, SnapshotInfo, SnapshotStore
from cluster.live.record.steprecord import InProgress, Phase, RecordStore, StepEntry, StepRecord
from cluster.live.rollout.restore import Plan, RestoreResult, plan_changes, restore
from cluster.live.safety import guard
from cluster.live.safety.lease import Hold
from cluster.live.setup import canary
from cluster.policy.profile import Profile
from cluster.seams.kube import Kube
from cluster.ui import make_console


class RolloutSession:
    """One command's worth of work on one cluster for one profile."""

    def __init__(self, kube: Kube, profile: Profile, *, out: Console | None = None,
                 settings: ProbeSettings | None = None, root: Path | None = None,
                 explicit_context: str | None = None, yes: bool = False,
                 confirm: guard.Confirm | None = None, lease: dict | None = None):
        settings = settings or ProbeSettings.from_env()  # a bad setting fails before the cluster is asked
        self.kube = kube
        # A step may have a form for the CNI this cluster runs (the kube-api
        # step on Cilium is a CiliumNetworkPolicy): the rollout applies,
        # predicts, snapshots and compares with that form.
        # The CNI also says which of its departures from the API's wording
        # the engine predicts (cluster.policy.engine.evaluate.DATAPLANES).
        self.profile = profile.for_cni(detect_cni(kube))
        self.out = out or make_console()
        self.context = kube.context()
        self.server = kube.server()
        self.proxy = kube.proxy()  # a proxied cluster is never local (guard)
        self.cluster = ClusterState.open(kube, root)
        # Probes are read with the deny behaviour the canary measured on this
        # cluster: under a CNI that drops, a refusal means the packet got in.
        self.settings = replace(settings, deny_behaviour=self.cluster.deny_behaviour)
        self.dir = self.cluster.profile_dir(profile.name)
        self.snapshots = SnapshotStore(self.dir / "snapshots")
        self.records = RecordStore(self.dir)
        self.history = History.at(self.dir)
        self.explicit_context = explicit_context
        self.yes = yes
        self.confirm = confirm
        self.lease_options = lease or {}
        self.hold: Hold | None = None
        # Every live matrix this command probed, in order: its --html page
        # and the evidence of a failed verification show them all.
        self.verifications: list[Verification] = []
        # network-policies-up --observe: hooks around each step
        # (cluster.live.rollout.watch.Watch), and what they add to the
        # evidence of a failed verification (the CNI's drop verdicts).
        self.watch = None
        self.evidence_extras: list[Callable[[MatrixReport], dict]] = []

    # -- output -----------------------------------------------------------

    def say(self, text: str = "", **kw) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True, **kw)

    def event(self, event: str, **kw) -> None:
        self.history.append(event, context=self.context, profile=self.profile.name, **kw)

    # -- the way in: banner, plan, confirmation, lock and lease ------------

    def plan(self, desired: Callable[[], list[dict]]) -> Plan:
        return plan_changes(live_policies(self.kube, self.profile.profile_namespaces), desired())

    def begin(self, action: str, desired: Callable[[], list[dict]], *, refuse_blocked: bool) -> Hold:
        """Banner (it names the cluster), the plan, the guard, then the locks.

        The plan is computed again once the locks are held: if another run
        changed the cluster in between, a confirmed plan is void."""
        self.say(guard.banner(self.context, self.server, action, self.proxy))
        if self.cluster.note:
            self.say(self.cluster.note)
        where = ", ".join(self.profile.profile_namespaces)
        shown = self.plan(desired)
        for line in shown.lines(where):
            self.say(line)
        if self.settings.deny_behaviour == "unknown":
            self.say("first: the enforcement canary (namespace dashi-canary-<random>, two agnhost pods, deleted "
                     "after) measures whether this cluster's CNI drops or rejects a denied packet, before anything is "
                     "verified; it was never "
                     "measured from this machine, and the probes are read by it")
        if refuse_blocked:
            self.refuse_clashes(shown.held())
        guard.check(self.context, self.server, self.explicit_context, yes=self.yes, confirm=self.confirm,
                    action=action, proxy=self.proxy)
        hold = Hold(self.kube, self.cluster.dir, f"{action} ({self.profile.name})",
                    **{"say": self.say, **self.lease_options})
        hold.acquire()
        try:
            if hold.found.startswith(("expired", "gone")):
                why = ("was not renewed for a whole lease duration as measured here" if hold.found.startswith("expired")
                       else "belongs to a process that has ended")
                self.say(f"note: the cluster lease of {hold.found.split(': ', 1)[-1]} {why}; taken over")
            again = self.plan(desired)
            if refuse_blocked:
                self.refuse_clashes(again.held())
            if again != shown:
                if guard.needs_confirmation(self.context, self.server, self.proxy):
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

    @staticmethod
    def refuse_clashes(held: list[str], step: str | None = None) -> None:
        """Stop before any change when a policy of ours would take the name of
        one that is not ours (``held``: ``ns/name (who holds it)``)."""
        if held:
            where = f"step {step}: " if step else ""
            raise DashiError(f"{where}{', '.join(held)}: a policy that is not ours already has the name; nothing "
                             f"{'of this step ' if step else ''}was changed. Rename one of them (ours are in the "
                             "profile's policy files)")

    def measure_deny_behaviour(self) -> None:
        """Run the canary when this machine never measured the cluster's deny
        behaviour (or, for a profile with ClusterNetworkPolicies, never saw
        that kind enforced); keep what it found. Raises NotEnforced on a CNI
        that lets a denied packet through: no rollout is verifiable there."""
        cluster_policy = bool(self.profile.cluster_policy_steps)
        proven = canary.proves_cluster_policies(self.cluster.cni.get("evidence", ""))
        if self.settings.deny_behaviour != "unknown" and (proven or not cluster_policy):
            return
        cni = self.profile.cni  # what __init__ detected
        self.say("Measuring this cluster's deny behaviour (the enforcement canary)...")
        result = canary.measure(self.kube, self.cluster, cni, sleep=self.settings.sleep, clock=self.settings.clock,
                                cluster_policy=cluster_policy)
        line = canary.verdict(result, cni_label(cni))  # raises loudly when not enforced
        self.settings = replace(self.settings, deny_behaviour=self.cluster.deny_behaviour)
        self.say(f"  {line}")

    # -- the record -----------------------------------------------------------

    def record(self) -> StepRecord:
        return self.records.load(self.profile.name, self.context)

    def mark(self, record: StepRecord, phase: Phase, *, step: str | None, snapshot: str | None,
             why: str = "") -> None:
        """Record what is about to change, after making sure the lease is still ours."""
        if self.hold is not None:
            self.hold.check()
        record.in_progress = InProgress.begin(phase, step=step, snapshot=snapshot, why=why)
        self.records.save(record)

    def check_record(self, record: StepRecord) -> int:
        k = len(record.steps)
        names = [s.name for s in self.profile.steps[:k]]
        if record.applied != names:
            raise DashiError(f"the step record says {', '.join(record.applied) or 'nothing'} applied, but profile "
                             f"{self.profile.name} now begins {', '.join(names) or '(no steps)'}: the profile "
                             f"changed under a running rollout. Roll back first: {command('rollback --to baseline')}")
        return k

    # -- snapshots and restores ---------------------------------------------

    def snapshot(self, taken_before: str, live: list[dict] | None = None) -> SnapshotInfo:
        """Snapshot the live policies (``live``: as just read)."""
        if live is None:
            live = live_policies(self.kube, self.profile.profile_namespaces)
        info = self.snapshots.save(profile=self.profile, context=self.context, server=self.server,
                                   taken_before=taken_before, live_policies=live)
        self.say(f"  snapshot {info.id}: {info.policies} of ours ({info.label}), {info.foreign} not ours "
                 f"({self.snapshots.dir / info.file})")
        return info

    def restore_snapshot(self, record: StepRecord, snap: Snapshot, why: str) -> RestoreResult:
        """Restore a loaded snapshot, recording the restore as in progress so a
        cut-off restore is finished by the next run. The restored steps are
        unverified until the matrix is probed again, and the restore stays in
        progress until that probe has run (``finish_restore``): a run cut
        off in between is finished, verification included, by the next one."""
        if snap.info.applied is None:
            raise SnapshotError(f"snapshot {snap.info.id} holds {snap.info.label}; refusing to restore it")
        self.mark(record, Phase.RESTORING, snapshot=snap.info.id,
                  step=record.in_progress.step if record.in_progress else None, why=why)
        res = restore(self.kube, snap.policies, snap.namespaces)
        self.say(f"  restored snapshot {snap.info.id}: {res.line()}")
        for note in res.notes:
            self.say(f"  note: {note}")
        keep = {s.name: s for s in record.steps}
        user, host = whoami()
        record.steps = [replace(keep[n], verified_at="") if n in keep else
                        StepEntry(n, snap.info.id, now_iso(), "", user, host, {"restored_from": snap.info.id})
                        for n in snap.info.applied]
        record.in_progress = replace(record.in_progress, restored=now_iso())
        self.records.save(record)
        self.event("restored", snapshot=snap.info.id, ok=True, message=f"{why}: {res.line()}")
        return res

    def verified(self, record: StepRecord, report: MatrixReport) -> None:
        """Record a passing verification of the applied steps."""
        if report.ok:
            record.mark_verified(now_iso())
            self.records.save(record)

    def finish_restore(self, record: StepRecord, report: MatrixReport) -> None:
        """The restore's verification has run: record its verdict, end the restore."""
        if report.ok:
            record.mark_verified(now_iso())
        record.in_progress = None
        self.records.save(record)

    # -- verification -------------------------------------------------------

    def save_evidence(self, report: MatrixReport, name: str) -> Path:
        """Keep the full evidence of a failed verification beside the snapshots
        (the terminal shows only the first differences)."""
        base = self.dir / "evidence"
        extras: dict = {}
        for extra in self.evidence_extras:
            extras.update(extra(report))
        atomic_write(base / f"{name}.json", (json.dumps({**to_json(report), **extras}, indent=2) + "\n").encode())
        atomic_write(base / f"{name}.md", (to_markdown(report, f"{name}.html") + "".join(
            f"\n## {key}\n\n" + "".join(f"    {line}\n" for line in value.get("summary", ()))
            for key, value in extras.items())).encode())
        # The page shows this command's verifications up to the failed one
        # (its last), each the same dict as a .json of the evidence.
        page = run_html({"profile": self.profile.name, "context": self.context, "ok": False,
                         "message": f"the live matrix {report.state} differs from the engine or the intent in "
                                    f"{len(report.problem_rows)} edge(s): "
                                    f"{', '.join(sorted({p for r in report.problem_rows for p in r.problems}))}",
                         "verifications": verifications_json(self.verifications)}, evidence=True)
        atomic_write(base / f"{name}.html", page.encode())
        self.say(f"  evidence: {base / name}.md (and .json, .html)")
        return base / f"{name}.md"

    def verify(self, k: int | None, *, matrices: bool = True, since: float | None = None,
               purpose: str | None = None) -> MatrixReport:
        report = verify_live(self.kube, self.profile, k, self.settings, context=self.context, since=since)
        self.verifications.append(Verification(purpose or f"the live matrix {report.state}", report))
        if any("error" in r.problems for r in report.rows):
            # Probes that could not run say nothing about the policies when
            # the API server itself is gone: that is an interruption, not a
            # failed verification (this read raises KubeUnreachable then).
            self.kube.get("v1", "Namespace", "kube-system")
        render(report, self.out, matrices=matrices)
        return report

    def verify_restore(self, record: StepRecord, k: int, verified: str) -> str:
        """Probe the matrix after a restore to k steps; record, say and return the verdict."""
        after = self.verify(k, matrices=False, purpose=f"restored: {state_label(self.profile, k)}")
        self.finish_restore(record, after)
        restored = verified if after.ok else "the restored state ALSO differs: " + after.summary_line()
        self.say(f"  {restored}")
        return restored

    def verify_step(self, record: StepRecord, k: int, snap_id: str, applied_at: float | None = None) -> MatrixReport:
        """Verify step k+1 (0-based index k) in place; record it or restore."""
        step = self.profile.steps[k]
        n = len(self.profile.steps)
        self.mark(record, Phase.VERIFYING, step=step.name, snapshot=snap_id)
        report = self.verify(k + 1, since=applied_at, purpose=f"step {k + 1}/{n} {step.name}")
        if report.ok:
            user, host = whoami()
            record.steps.append(StepEntry(step.name, snap_id, record.in_progress.started, now_iso(),
                                          user, host, report.summary()))
            record.in_progress = None
            self.records.save(record)
            self.event("step-verified", step=step.name, snapshot=snap_id, ok=True, summary=report.summary())
            enforced = (f" (time to enforce: the live matrix matched {report.matched_seconds:.1f} s after the apply)"
                        if report.matched_seconds is not None and applied_at is not None else "")
            self.say(f"[{k + 1}/{n}] {step.name}: verified{enforced}")
            return report
        self.say(f"[{k + 1}/{n}] {step.name}: verification FAILED; restoring snapshot {snap_id}", style="bold red")
        self.save_evidence(report, f"{snap_id}-{step.name}-failed")
        self.event("step-failed", step=step.name, snapshot=snap_id, ok=False, summary=report.summary(),
                   message="; ".join(f"{r.edge} {'/'.join(r.problems)}" for r in report.problem_rows[:20]))
        snap = self.snapshots.load(snap_id)
        try:
            self.restore_snapshot(record, snap, f"step {step.name} failed verification")
        except KubeError as e:
            raise KubeError(f"step {step.name} failed verification (evidence above) and restoring snapshot "
                            f"{snap_id} failed ({e}); the next run finishes the restore") from e
        restored = self.verify_restore(record, k, "the restore is verified: the live matrix matches the engine again")
        kinds = sorted({p for r in report.problem_rows for p in r.problems})
        raise VerificationFailed(
            f"step {step.name} rolled back to snapshot {snap_id}: {len(report.problem_rows)} edge(s) "
            f"differ ({', '.join(kinds)}); evidence above; {restored}")
