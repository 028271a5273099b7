"""What the tool knows about a live cluster, for ``inv status`` and ``inv history``:
its CNI and health, the stand-ins, the CNI's measured deny behaviour, who
holds the cluster's lease, and the rollout's record of applied steps.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cluster.invoked import command
from cluster.live.observe.cni import cni_health, detect_cni
from cluster.live.record.history import History
from cluster.live.record.identity import ClusterState
from cluster.live.record.steprecord import current_state
from cluster.live.safety.lease import lease_holder
from cluster.live.setup import standins
from cluster.policy.profile import load_profile
from cluster.seams.kube import Kube


def report(kube: Kube, ctx: str, profile: str, console: Console, out: dict) -> dict:
    """CNI health, stand-ins and the rollout line of a connected cluster, printed and added to ``out``."""
    cni = detect_cni(kube)
    ok, detail = cni_health(kube, cni)
    out.update(context=ctx, cni=cni, cni_healthy=ok)
    console.print(f"context {ctx} ({kube.server()})")
    console.print(f"CNI: {cni} — {'[green]healthy[/green]' if ok else '[red]not healthy[/red]'}: {detail}")
    _, workloads = standins.objects(load_profile(profile))
    st = standins.states(kube, workloads)
    ready = sum(1 for w in st if w.ready)
    out["standins"] = (ready, len(st))
    console.print(f"stand-ins ({profile}): {ready}/{len(st)} ready")
    for w in st:
        if not w.ready:
            console.print(f"  [yellow]waiting[/yellow]: {w.detail}")
    out["rollout"] = rollout_line(console, kube, profile)
    return out


def rollout_line(console: Console, kube: Kube, profile: str, root: Path | None = None) -> str:
    """The cluster's identity and measured deny behaviour, the lease holder,
    and the rollout's line for one profile."""
    cluster = ClusterState.open(kube, root)
    if cluster.note:
        console.print(cluster.note, markup=False, highlight=False)
    deny = cluster.deny_behaviour
    measured = cluster.cni.get("measured")
    console.print(f"cluster {cluster.identity.uid} (kube-system uid); denied packets are "
                  + ({"drop": "dropped", "reject": "rejected"}.get(deny, "?") + f" (canary, {measured})"
                     if deny != "unknown" else f"read with an unknown deny behaviour: run {command('prepare')} to measure it"),
                  markup=False, highlight=False)
    holder = lease_holder(kube)
    if holder:
        console.print(f"being changed right now by {holder}", markup=False, highlight=False)
    rec = current_state(cluster.dir, cluster.identity.context).get(profile)
    if rec is None:
        line = f"policy rollout ({profile}): no step applied yet (open networking; `{command('network-policies-up')}`)"
    else:
        in_place = rec.in_place
        last = in_place[-1] if in_place else "baseline"
        verified = "verified" if rec.fully_verified else "NOT verified"
        line = f"policy rollout ({profile}): {len(in_place)} step(s) applied, last '{last}' ({verified})"
        if rec.in_progress:
            line += f"; interrupted during {rec.in_progress.phase} of {rec.in_progress.step}"
    console.print(line, markup=False, highlight=False)
    return line


def history_rows(kube: Kube, profile: str, root: Path | None = None) -> tuple[list[dict], list[str], Path]:
    """The history of one profile on the cluster behind ``kube``, and where it is kept."""
    path = ClusterState.open(kube, root).profile_dir(profile)
    entries, notes = History.at(path).read()
    return entries, notes, path / "history.jsonl"
