"""What the tool knows about a live cluster, for ``inv status`` and ``inv history``:
its CNI and health, the stand-ins, and the rollout's record of applied steps.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from cluster.live import standins
from cluster.live.cni import cni_health, detect_cni
from cluster.live.history import History
from cluster.live.kube import Kube
from cluster.live.state import RecordStore, cluster_dir, profile_dir
from cluster.policy.profile import load_profile


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
    out["rollout"] = rollout_line(console, ctx, profile)
    return out


def rollout_line(console: Console, ctx: str, profile: str) -> str:
    state = current_state(ctx)
    rec = ((state or {}).get("profiles") or {}).get(profile)
    if not rec:
        line = f"policy rollout ({profile}): no step applied yet (open networking; `inv network-policies-up`)"
    else:
        applied = rec.get("applied") or []
        last = applied[-1] if applied else "baseline"
        verified = "verified" if last in (rec.get("verified") or []) else "NOT verified"
        line = f"policy rollout ({profile}): {len(applied)} step(s) applied, last '{last}' ({verified})"
        if rec.get("in_progress"):
            line += f"; interrupted during {rec['in_progress'].get('phase')} of {rec['in_progress'].get('step')}"
    console.print(line)
    return line


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
