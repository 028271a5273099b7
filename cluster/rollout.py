"""The step-wise policy rollout: apply, verify live, keep the way back ready.

``network_policies_up`` takes a profile's namespaces from open networking to
its final policy set one step at a time. For each step:

1. snapshot the NetworkPolicies of the profile's namespaces (and the step
   record) before touching anything;
2. server-side apply the step's policies with our field manager, each
   labelled ``app.kubernetes.io/managed-by=dashi-cluster`` and annotated
   ``dashi.io/step=<step>``;
3. probe the live matrix from the stand-in pods and compare it with the
   engine's prediction for the policies now in place (the CNI enforces
   them), and that prediction with the step-intended matrix (the step does
   what it is meant to); disagreeing probes are re-polled for a bounded time,
   since CNIs apply policies asynchronously;
4. on any difference: restore the snapshot, verify the restore, and stop
   non-zero with the evidence (edge, expected vs observed, the probe's error
   kind, the engine's explanation naming the policies).

A re-run resumes after the last verified step. ``rollback`` restores a
snapshot exactly (creates, updates and deletes our policies to match it;
never touches anyone else's) and verifies the matrix. ``smoke`` probes the
whole matrix now and reports it. State lives on disk (see ``cluster.state``).

A run that is cut off (Ctrl-C, a crash) leaves ``in_progress`` in the step
record; the next run says what it finds and resolves it: a step cut off
while being verified is resumed (verified again); one cut off while being
applied, or a restore cut off, is rolled back to (or finished restoring)
the snapshot taken before it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from cluster import guard
from cluster.engine import Edge, predict
from cluster.errors import DashiError, KubeError, SnapshotError, VerificationFailed
from cluster.history import History
from cluster.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Kube
from cluster.lock import ClusterLock
from cluster.probe import MatrixProber, discover
from cluster.profile import BASELINE, Profile
from cluster.report import EdgeRow, MatrixReport, render, to_json, to_markdown
from cluster.snapshots import (NP_API, STEP_ANNOTATION, Snapshot, SnapshotInfo, SnapshotStore, canonical_spec,
                               clean_policy, is_ours, mark_ours, policy_key, same_policy)
from cluster.state import (RecordStore, StepEntry, StepRecord, atomic_write, cluster_dir, now_iso, profile_dir,
                           state_root, whoami)

OURS = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"


def _env_number(name: str, default: float, cast=float):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        raise DashiError(f"{name}={raw!r} is not a number") from None


@dataclass
class Settings:
    """Probe settings. The defaults are upstream e2e's: 1 s per probe, a
    disagreeing probe re-polled every 1 s for up to 10 s. 64 workers bring a
    full dashi matrix (240 probes, most of them waiting out the timeout right
    after default-deny) to about 4 probe timeouts (benchmarks/bench_probe.py)
    without opening hundreds of exec streams at once against a laptop's API
    server; DASHI_PROBE_WORKERS=256 makes it about one timeout."""

    workers: int = 64
    timeout_s: float = 1.0
    poll_interval: float = 1.0
    poll_timeout: float = 10.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(workers=_env_number("DASHI_PROBE_WORKERS", 64, int),
                   timeout_s=_env_number("DASHI_PROBE_TIMEOUT", 1.0),
                   poll_interval=_env_number("DASHI_POLL_INTERVAL", 1.0),
                   poll_timeout=_env_number("DASHI_POLL_TIMEOUT", 10.0))

    def prober(self, kube: Kube) -> MatrixProber:
        return MatrixProber(kube, workers=self.workers, timeout_s=self.timeout_s,
                            poll_interval=self.poll_interval, poll_timeout=self.poll_timeout,
                            clock=self.clock, sleep=self.sleep)


@dataclass
class RestoreResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{len(self.created)} created, {len(self.updated)} updated, {len(self.deleted)} deleted, "
                f"{self.unchanged} unchanged")


# --------------------------------------------------------------------------
# Cluster reads and writes


def live_policies(kube: Kube, namespaces: list[str]) -> list[dict]:
    """The NetworkPolicies of some namespaces, as complete objects (the API's
    list carries apiVersion and kind on the list, not on each item)."""
    out = []
    for ns in namespaces:
        for item in kube.list(NP_API, "NetworkPolicy", ns):
            out.append({"apiVersion": NP_API, "kind": "NetworkPolicy", **item})
    return out


def _ref(obj: dict) -> str:
    ns, name = policy_key(obj)
    return f"{ns}/{name}"


def restore(kube: Kube, policies: list[dict], namespaces: list[str]) -> RestoreResult:
    """Make our NetworkPolicies in ``namespaces`` exactly ``policies``.

    Creates and updates first, then deletes, and only ever touches objects
    carrying our label. Afterwards reads back and checks the result; raises
    KubeError naming what did not take.
    """
    result = RestoreResult()
    live = {policy_key(p): p for p in live_policies(kube, namespaces)}
    desired = {policy_key(p): p for p in policies}
    for key, want in sorted(desired.items()):
        have = live.get(key)
        if have is not None and not is_ours(have):
            result.notes.append(f"{key[0]}/{key[1]}: a policy that is not ours now has this name; left alone")
            continue
        if have is not None and same_policy(have, want):
            result.unchanged += 1
            continue
        kube.apply(clean_policy(want))
        (result.updated if have is not None else result.created).append(f"{key[0]}/{key[1]}")
    for key, have in sorted(live.items()):
        if key not in desired and is_ours(have):
            kube.delete(NP_API, "NetworkPolicy", key[1], key[0])
            result.deleted.append(f"{key[0]}/{key[1]}")
    after = {policy_key(p): p for p in live_policies(kube, namespaces) if is_ours(p)}
    wrong = [f"{k[0]}/{k[1]}" for k, want in desired.items()
             if k in after and not same_policy(after[k], want)]
    wrong += [f"{k[0]}/{k[1]} (missing)" for k in desired if k not in after
              and not any(n.startswith(f"{k[0]}/{k[1]}:") for n in result.notes)]
    wrong += [f"{k[0]}/{k[1]} (should be gone)" for k in after if k not in desired]
    if wrong:
        raise KubeError(f"restore did not take for {', '.join(wrong)}")
    return result


def infer_applied(profile: Profile, ours: list[dict]) -> int | None:
    """How many leading steps the live policies of ours amount to, or None."""
    live = {policy_key(p): canonical_spec(p.get("spec") or {}) for p in ours}
    for k in range(len(profile.steps), -1, -1):
        want = {policy_key(p): canonical_spec(p.get("spec") or {}) for p in profile.policies_through(k)}
        if want == live:
            return k
    return None


def drift(profile: Profile, k: int, ours: list[dict]) -> list[str]:
    """How the live policies of ours differ from the first k steps."""
    live = {policy_key(p): p for p in ours}
    want = {policy_key(p): p for p in profile.policies_through(k)}
    out = [f"{ns}/{n} missing" for (ns, n) in want if (ns, n) not in live]
    out += [f"{ns}/{n} changed" for (ns, n), p in want.items()
            if (ns, n) in live and canonical_spec(live[(ns, n)].get("spec") or {}) != canonical_spec(p.get("spec") or {})]
    out += [f"{ns}/{n} not part of these steps" for (ns, n) in live if (ns, n) not in want]
    return sorted(out)


# --------------------------------------------------------------------------
# Verification


def _state_label(profile: Profile, k: int | None) -> str:
    if k is None:
        return "(live policies match no step prefix)"
    if k == 0:
        return "at baseline (no step applied)"
    return f"after {profile.steps[k - 1].name} ({k}/{len(profile.steps)})"


def _intent(profile: Profile, edge: Edge) -> str:
    ie = profile.intent_of(edge)
    if ie is None:
        return "not in the intended matrix"
    return f"the matrix opens it at {ie.step}" + (f": {ie.reason}" if ie.reason else "")


def verify_live(kube: Kube, profile: Profile, k: int | None, settings: Settings, *,
                context: str | None = None) -> MatrixReport:
    """Probe the live matrix; compare with the engine (live policies and
    addresses) and, when k is known, with the step-intended matrix."""
    live = discover(kube, profile)
    policies = live_policies(kube, profile.profile_namespaces)
    verdicts = predict(profile, policies, live.endpoints)
    intended = profile.intended_after(k) if k is not None else {}
    run = settings.prober(kube).run(live.targets, {e: v.allowed for e, v in verdicts.items()})
    rows = [EdgeRow(edge=e, expected=v.allowed, verdict=v, intended=intended.get(e),
                    intent=_intent(profile, e), observation=run.observations.get(e))
            for e, v in verdicts.items()]
    notes = list(live.notes)
    foreign = sorted(_ref(p) for p in policies if not is_ours(p))
    if foreign:
        notes.append(f"policies that are not ours also apply here: {', '.join(foreign)}")
    return MatrixReport(profile.name, context, _state_label(profile, k), rows, True, run.seconds,
                        run.first_pass_seconds, run.probes, run.workers, notes)


def predicted(profile: Profile, k: int) -> MatrixReport:
    verdicts = predict(profile, profile.policies_through(k))
    intended = profile.intended_after(k)
    rows = [EdgeRow(edge=e, expected=v.allowed, verdict=v, intended=intended.get(e), intent=_intent(profile, e))
            for e, v in verdicts.items()]
    return MatrixReport(profile.name, None, _state_label(profile, k), rows, False)


# --------------------------------------------------------------------------
# The runner


class Rollout:
    """One command's worth of work on one cluster for one profile."""

    def __init__(self, kube: Kube, profile: Profile, *, out: Console | None = None,
                 settings: Settings | None = None, root: Path | None = None,
                 explicit_context: str | None = None, yes: bool = False,
                 confirm: guard.Confirm | None = None):
        self.kube = kube
        self.profile = profile
        self.out = out or Console()
        self.settings = settings or Settings.from_env()
        self.context = kube.context()
        self.server = kube.server()
        self.root = root or state_root()
        self.dir = profile_dir(self.context, profile.name, self.root)
        self.snapshots = SnapshotStore(self.dir / "snapshots")
        self.records = RecordStore(self.dir)
        self.history = History.at(self.dir)
        self.explicit_context = explicit_context
        self.yes = yes
        self.confirm = confirm

    # -- output -----------------------------------------------------------

    def say(self, text: str = "", **kw) -> None:
        self.out.print(text, markup=False, highlight=False, soft_wrap=True, **kw)

    def _verify_restore(self, k: int, verified: str) -> str:
        """Probe the matrix after a restore to k steps; say and return the verdict."""
        after = verify_live(self.kube, self.profile, k, self.settings, context=self.context)
        restored = verified if after.ok else "the restored state ALSO differs: " + after.summary_line()
        self.say(f"  {restored}")
        if not after.ok:
            render(after, self.out, matrices=False)
        return restored

    def _begin(self, action: str) -> ClusterLock:
        """Banner first (it names the cluster), then the guard, then the lock."""
        self.say(guard.banner(self.context, self.server, action))
        guard.check(self.context, self.explicit_context, yes=self.yes, confirm=self.confirm, action=action)
        return ClusterLock(cluster_dir(self.context, self.root), f"{action} ({self.profile.name})")

    # -- shared pieces --------------------------------------------------------

    def _record(self) -> StepRecord:
        return self.records.load(self.profile.name, self.context)

    def _snapshot(self, record: StepRecord, taken_before: str):
        info = self.snapshots.save(profile=self.profile.name, context=self.context, server=self.server,
                                   taken_before=taken_before, applied=record.applied,
                                   namespaces=self.profile.profile_namespaces,
                                   live_policies=live_policies(self.kube, self.profile.profile_namespaces))
        self.say(f"  snapshot {info.id}: {info.policies} of ours, {info.foreign} not ours "
                 f"({self.snapshots.dir / info.file})")
        return info

    def _mark(self, record: StepRecord, **progress) -> None:
        user, host = whoami()
        record.in_progress = {**progress, "started": now_iso(), "pid": os.getpid(), "user": user, "host": host}
        self.records.save(record)

    def _restore_snapshot(self, record: StepRecord, snap: Snapshot, why: str) -> RestoreResult:
        """Restore a loaded snapshot, recording the restore as in progress so a
        cut-off restore is finished by the next run."""
        self._mark(record, phase="restoring", snapshot=snap.info.id, step=record.in_progress.get("step")
                   if record.in_progress else None, why=why)
        res = restore(self.kube, snap.policies, snap.namespaces)
        self.say(f"  restored snapshot {snap.info.id}: {res.line()}")
        for note in res.notes:
            self.say(f"  note: {note}")
        keep = {s.name: s for s in record.steps}
        user, host = whoami()
        # Steps the record does not know (a snapshot from before an earlier
        # rollback) come back unverified until the matrix is checked.
        record.steps = [keep[n] if n in keep else
                        StepEntry(n, snap.info.id, now_iso(), "", user, host, {"restored_from": snap.info.id})
                        for n in snap.info.applied]
        record.in_progress = None
        self.records.save(record)
        self.history.append("restored", context=self.context, profile=self.profile.name,
                            snapshot=snap.info.id, ok=True, message=f"{why}: {res.line()}")
        return res

    def _save_evidence(self, report: MatrixReport, name: str) -> Path:
        """Keep the full evidence of a failed verification beside the snapshots
        (the terminal shows only the first differences)."""
        base = self.dir / "evidence"
        atomic_write(base / f"{name}.json", (json.dumps(to_json(report), indent=2) + "\n").encode())
        atomic_write(base / f"{name}.md", to_markdown(report).encode())
        self.say(f"  evidence: {base / name}.md (and .json)")
        return base / f"{name}.md"

    def _verify(self, k: int | None) -> MatrixReport:
        report = verify_live(self.kube, self.profile, k, self.settings, context=self.context)
        render(report, self.out, matrices=True)
        return report

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
                self.history.append("resolved", context=self.context, profile=self.profile.name, step=step,
                                    snapshot=snap_id, ok=True, message="resumed an interrupted verification")
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
        self.history.append("resolved", context=self.context, profile=self.profile.name, step=step,
                            snapshot=snap_id, ok=report.ok, summary=report.summary(),
                            message=f"rolled back a run cut off {what}")
        if not report.ok:
            raise VerificationFailed(f"after restoring {snap_id} the live matrix still differs "
                                     "(evidence above); the cluster is not in a verified state")
        return self._record()

    # -- network-policies-up ----------------------------------------------

    def _verify_step(self, record: StepRecord, k: int, snap_id: str) -> MatrixReport:
        """Verify step k+1 (0-based index k) in place; record it or restore."""
        step = self.profile.steps[k]
        n = len(self.profile.steps)
        self._mark(record, phase="verifying", step=step.name, snapshot=snap_id)
        report = self._verify(k + 1)
        if report.ok:
            user, host = whoami()
            record.steps.append(StepEntry(step.name, snap_id, record.in_progress["started"], now_iso(),
                                          user, host, report.summary()))
            record.in_progress = None
            self.records.save(record)
            self.history.append("step-verified", context=self.context, profile=self.profile.name,
                                step=step.name, snapshot=snap_id, ok=True, summary=report.summary())
            self.say(f"[{k + 1}/{n}] {step.name}: verified")
            return report
        self.say(f"[{k + 1}/{n}] {step.name}: verification FAILED; restoring snapshot {snap_id}", style="bold red")
        self._save_evidence(report, f"{snap_id}-{step.name}-failed")
        self.history.append("step-failed", context=self.context, profile=self.profile.name, step=step.name,
                            snapshot=snap_id, ok=False, summary=report.summary(),
                            message="; ".join(f"{r.edge} {'/'.join(r.problems)}" for r in report.problem_rows[:20]))
        snap = self.snapshots.load(snap_id)
        try:
            self._restore_snapshot(record, snap, f"step {step.name} failed verification")
        except KubeError as e:
            raise KubeError(f"step {step.name} failed verification (evidence above) and restoring snapshot "
                            f"{snap_id} failed ({e}); the next run finishes the restore") from e
        restored = self._verify_restore(k, "the restore is verified: the live matrix matches the engine again")
        kinds = sorted({p for r in report.problem_rows for p in r.problems})
        raise VerificationFailed(
            f"step {step.name} rolled back to snapshot {snap_id}: {len(report.problem_rows)} edge(s) "
            f"differ ({', '.join(kinds)}); evidence above; {restored}")

    def up(self, until: str | None = None) -> StepRecord:
        profile = self.profile
        n = len(profile.steps)
        target = n if until is None else profile.step_index(until)
        if until == BASELINE:
            raise DashiError("--until baseline applies nothing; to remove the policies use inv rollback --to baseline")
        with self._begin(f"apply profile {profile.name}'s policy steps"):
            record = self._resolve_interrupted(self._record())
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
            if k == target:
                self.say(f"Nothing to do: {_state_label(profile, k)} is verified on this cluster.")
                return record
            self.say(f"Profile {profile.name}: {k} of {n} steps verified here; applying "
                     f"{', '.join(s.name for s in profile.steps[k:target])}")
            # Fail before the first change if the stand-ins are not there to probe from.
            discover(self.kube, profile)
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
            self.say(f"Done: {_state_label(profile, target)}, every step verified live.")
            return self._record()

    def _run_step(self, record: StepRecord, i: int) -> None:
        step = self.profile.steps[i]
        n = len(self.profile.steps)
        self.say(f"[{i + 1}/{n}] {step.name} ({step.origin}, {step.path.name})")
        info = self._snapshot(record, step.name)
        self._mark(record, phase="applying", step=step.name, snapshot=info.id)
        try:
            for obj in step.objects:
                self.kube.apply(mark_ours(obj, step.name))
        except KubeError as e:
            self.say(f"  apply failed: {e}", style="bold red")
            snap = self.snapshots.load(info.id)
            try:
                self._restore_snapshot(record, snap, f"apply of step {step.name} failed")
            except KubeError as e2:
                raise KubeError(f"applying step {step.name} failed ({e}) and restoring snapshot {info.id} "
                                f"failed too ({e2}); the next run finishes the restore") from e2
            self.history.append("step-failed", context=self.context, profile=self.profile.name, step=step.name,
                                snapshot=info.id, ok=False, message=f"apply failed: {e}")
            restored = self._verify_restore(i, "the restore is verified live")
            raise KubeError(f"applying step {step.name} failed ({e}); restored snapshot {info.id}: {restored}") from e
        self.say(f"  applied {len(step.objects)} NetworkPolicies: "
                 f"{', '.join(_ref(o) for o in step.objects)}")
        self._verify_step(record, i, info.id)

    # -- rollback -----------------------------------------------------------

    def rollback(self, to: str | None = None) -> StepRecord:
        profile = self.profile
        with self._begin(f"roll back profile {profile.name}'s policies"):
            record = self._record()
            ip = record.in_progress
            if ip and to is None:
                snap_id = ip.get("snapshot")
                if not snap_id:
                    raise SnapshotError("a cut-off run left no snapshot to return to; use --to baseline")
                self.say(f"A previous run was cut off while {ip.get('phase')} step {ip.get('step')}: "
                         f"rolling that back (snapshot {snap_id}).")
                snap = self.snapshots.load(snap_id)
            else:
                if ip:
                    self.say(f"A previous run was cut off while {ip.get('phase')} step {ip.get('step')}; "
                             f"the rollback to {to} replaces whatever it left.")
                k_now = len(record.steps)
                if to is None:
                    if k_now == 0:
                        raise DashiError(f"no step of profile {profile.name} is recorded on {self.context}: "
                                         "nothing to roll back (--to baseline removes any policies of ours)")
                    k = k_now - 1
                else:
                    k = profile.step_index(to)
                want = [s.name for s in profile.steps[:k]]
                info = self.snapshots.latest_with(want)
                if info is None and k == 0:
                    self.say("No snapshot of the baseline on record: restoring it as 'no policies of ours'.")
                    snap = Snapshot(_baseline_info(), profile.name, self.context, profile.profile_namespaces,
                                    [], [])
                elif info is None and k > k_now:
                    raise DashiError(f"{to} is not applied yet ({k_now} steps are) and no snapshot holds it; "
                                     f"use inv network-policies-up --until {to}")
                elif info is None:
                    known = ", ".join(f"{i.id} ({len(i.applied)} steps)" for i in self.snapshots.index()) or "none"
                    raise SnapshotError(f"no snapshot of the state after {to or want[-1]} "
                                        f"(snapshots: {known})")
                else:
                    snap = self.snapshots.load(info.id)
            target = len(snap.info.applied)
            self.say(f"Rolling back to {_state_label(profile, target)} from snapshot {snap.info.id}: "
                     f"{len(snap.policies)} policies of ours will exist; others' are not touched.")
            # The rollback is a change too: keep the way back to what is live now.
            self._snapshot(record, "rollback")
            self._restore_snapshot(record, snap, f"rollback to {_state_label(profile, target)}")
            report = self._verify(target)
            if report.ok:
                record = self._record()
                for entry in record.steps:
                    entry.verified_at = entry.verified_at or now_iso()
                self.records.save(record)
            self.history.append("rollback", context=self.context, profile=profile.name,
                                step=(profile.steps[target - 1].name if target else BASELINE),
                                snapshot=snap.info.id, ok=report.ok, summary=report.summary())
            if not report.ok:
                self._save_evidence(report, f"{snap.info.id}-rollback-failed")
                raise VerificationFailed(f"rolled back to snapshot {snap.info.id}, but the live matrix differs "
                                         "(evidence above)")
            self.say(f"Rolled back: {_state_label(profile, target)}, verified live.")
            return self._record()

    # -- smoke --------------------------------------------------------------

    def smoke(self) -> MatrixReport:
        profile = self.profile
        self.say(f"Cluster: {self.context} ({self.server}) - probe profile {profile.name}'s matrix (read-only)")
        if ClusterLock(cluster_dir(self.context, self.root)).is_held():
            self.say("note: another run is changing this cluster right now; what this sees may be mid-step")
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
                                f"{_state_label(profile, nearest)}: {'; '.join(drift(profile, nearest, ours))}. "
                                "Intent not checked")
            report.intent_checked = False
        elif k != len(record.steps):
            report.notes.append(f"the step record says {len(record.steps)} steps; the live policies are "
                                f"those of {k}")
        render(report, self.out, matrices=True)
        self.history.append("smoke", context=self.context, profile=profile.name,
                            step=(profile.steps[k - 1].name if k else BASELINE) if k is not None else None,
                            ok=report.ok, summary=report.summary())
        return report


def _baseline_info() -> SnapshotInfo:
    return SnapshotInfo(id="baseline", file="", sha256="", created="", user="", host="",
                        taken_before="(none)", applied=[])


# --------------------------------------------------------------------------
# Offline


def plan(profile: Profile, out: Console, until: str | None = None) -> None:
    """The steps in order, the objects each applies, and the predicted matrix
    after each. Needs no cluster."""
    n = len(profile.steps)
    target = n if until is None else profile.step_index(until)
    say = lambda text="", **kw: out.print(text, markup=False, highlight=False, soft_wrap=True, **kw)  # noqa: E731
    say(f"Dry run: profile {profile.name}, steps 1..{target} of {n}; no cluster is contacted.")
    before = predicted(profile, 0)
    for k in range(1, target + 1):
        step = profile.steps[k - 1]
        say()
        say(f"[{k}/{n}] {step.name} ({step.origin}, {step.path})", style="bold")
        say("  snapshot first, then server-side apply (field manager dashi-cluster, label "
            f"{OURS}, annotation {STEP_ANNOTATION}={step.name}):")
        for obj in step.objects:
            say(f"    NetworkPolicy {_ref(obj)}")
        report = predicted(profile, k)
        prev = {r.edge: r.expected for r in before.rows}
        opened = [r.edge for r in report.rows if r.expected and not prev.get(r.edge)]
        closed = [r.edge for r in report.rows if not r.expected and prev.get(r.edge)]
        say(f"  predicted: {sum(r.expected for r in report.rows)} of {len(report.rows)} edges allowed "
            f"({len(opened)} opened, {len(closed)} closed by this step)")
        for e in opened:
            say(f"    + {e}")
        render(report, out, matrices=True)
        before = report


def current_state(context: str, root: Path | None = None) -> dict | None:
    """What the rollout has recorded for a context, for ``inv status``:
    ``{"context": c, "profiles": {name: {"applied": [...], "verified": [...],
    "in_progress": {...} | None, "updated": "..."}}}``, or None if nothing."""
    base = cluster_dir(context, root)
    if not base.is_dir():
        return None
    profiles = {}
    for d in sorted(p for p in base.iterdir() if p.is_dir()):
        if not (d / "state.yaml").exists():
            continue
        rec = RecordStore(d).load(d.name, context)
        verified = [s.name for s in rec.steps if s.verified_at]
        applied = rec.applied
        if rec.in_progress and rec.in_progress.get("phase") in ("applying", "verifying") \
                and rec.in_progress.get("step"):
            applied.append(rec.in_progress["step"])
        profiles[rec.profile] = {"applied": applied, "verified": verified, "in_progress": rec.in_progress,
                                 "updated": rec.updated}
    return {"context": context, "profiles": profiles} if profiles else None


def history_rows(context: str, profile: str, root: Path | None = None) -> tuple[list[dict], list[str]]:
    return History.at(profile_dir(context, profile, root)).read()


# --------------------------------------------------------------------------
# Entry points for the tasks (a kube factory can be passed in by tests)


def client(context: str | None) -> Kube:
    """The real adapter for a kubeconfig context (None: the current one).
    It reads KUBECONFIG like kubectl does."""
    from cluster import kube as kube_module

    cls = getattr(kube_module, "ClientKube", None)
    if cls is None:
        raise KubeError("this build has no Kubernetes client adapter (cluster.kube.ClientKube)")
    return cls(context=context)


def _console() -> Console:
    return Console(highlight=False)


def cli_up(profile_name: str, *, until: str | None = None, context: str | None = None, dry_run: bool = False,
           yes: bool = False, kube_factory=None, out: Console | None = None) -> None:
    from cluster.profile import load_profile

    out = out or _console()
    profile = load_profile(profile_name)
    if until is not None:
        profile.step_index(until)  # a bad step name fails before anything else
    if dry_run:
        plan(profile, out, until)
        return
    kube = (kube_factory or client)(context)
    Rollout(kube, profile, out=out, explicit_context=context, yes=yes,
            confirm=guard.terminal_confirm()).up(until)



def cli_rollback(profile_name: str, *, to: str | None = None, context: str | None = None, yes: bool = False,
                 kube_factory=None, out: Console | None = None) -> None:
    from cluster.profile import load_profile

    out = out or _console()
    profile = load_profile(profile_name)
    if to is not None:
        profile.step_index(to)
    kube = (kube_factory or client)(context)
    Rollout(kube, profile, out=out, explicit_context=context, yes=yes,
            confirm=guard.terminal_confirm()).rollback(to)


def cli_smoke(profile_name: str, *, context: str | None = None, json_path: str | None = None,
              markdown_path: str | None = None, kube_factory=None, out: Console | None = None) -> bool:
    from cluster.profile import load_profile
    from cluster.report import write_json, write_markdown

    out = out or _console()
    profile = load_profile(profile_name)
    kube = (kube_factory or client)(context)
    report = Rollout(kube, profile, out=out, explicit_context=context).smoke()
    try:
        if json_path:
            write_json(report, json_path)
            out.print(f"JSON report: {json_path}", markup=False)
        if markdown_path:
            write_markdown(report, markdown_path)
            out.print(f"Markdown report: {markdown_path}", markup=False)
    except OSError as e:
        raise DashiError(f"cannot write the report: {e}") from None
    ok = report.ok
    out.print("smoke: PASS" if ok else "smoke: FAIL", markup=False, style="bold green" if ok else "bold red")
    return ok


def cli_history(profile_name: str, *, context: str | None = None, kube_factory=None,
                out: Console | None = None) -> None:
    from rich.table import Table

    out = out or _console()
    ctx = context or (kube_factory or client)(None).context()
    entries, notes = history_rows(ctx, profile_name)
    if not entries:
        out.print(f"No history for profile {profile_name} on {ctx} "
                  f"({profile_dir(ctx, profile_name) / 'history.jsonl'}).", markup=False)
        return
    table = Table(title=f"history of profile {profile_name} on {ctx}", header_style="bold")
    for col in ("time", "who", "event", "step", "snapshot", "result"):
        table.add_column(col, no_wrap=col in ("time", "event", "snapshot"))
    for e in entries:
        s = e.get("summary") or {}
        if s.get("edges"):
            result = (f"{'ok' if e.get('ok') else 'FAILED'}: {s.get('edges')} edges, {s.get('mismatch', 0)} mismatched, "
                      f"{s.get('unintended', 0)} unintended, {s.get('unprobed', 0)} unprobed, "
                      f"{s.get('probe_seconds', 0)} s")
        else:
            result = {True: "ok", False: "FAILED", None: ""}[e.get("ok")]
        if e.get("message"):
            result = f"{result} {e['message']}".strip()
        table.add_row(e.get("time", ""), f"{e.get('user', '?')}@{e.get('host', '?')}", e.get("event", ""),
                      e.get("step") or "", e.get("snapshot") or "", result)
    out.print(table)
    for note in notes:
        out.print(f"note: {note}", markup=False)
