"""``network-policies-up --dry-run``: the plan, with no cluster."""

from __future__ import annotations

from rich.console import Console

from cluster.live.observe.report import render
from cluster.live.observe.verify import predicted
from cluster.live.record.policies import STEP_ANNOTATION
from cluster.policy.manifests import obj_ref
from cluster.policy.profile import Profile
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.ui import shown_path

OURS = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"



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
        say(f"[{k}/{n}] {step.name} ({step.origin}, {shown_path(step.path)})", style="bold")
        say("  its names checked against policies not ours, a snapshot, then each created (field manager "
            f"dashi-cluster, label {OURS}, annotation {STEP_ANNOTATION}={step.name}):")
        for obj in step.objects:
            say(f"    NetworkPolicy {obj_ref(obj, kind=False)}")
        report = predicted(profile, k)
        prev = {r.edge: r.predicted for r in before.rows}
        opened = [r.edge for r in report.rows if r.predicted and not prev.get(r.edge)]
        closed = [r.edge for r in report.rows if not r.predicted and prev.get(r.edge)]
        say(f"  predicted: {sum(r.predicted for r in report.rows)} of {len(report.rows)} edges allowed "
            f"({len(opened)} opened, {len(closed)} closed by this step)")
        for e in opened:
            say(f"    + {e}")
        render(report, out, matrices=True)
        before = report
