"""Entry points of the GitOps tasks: export (verified steps -> Flux layout)
and policies-diff (what a policy change does to connectivity).

Each returns the process exit code; expected failures raise a
``DashiError``, which the task turns into one line and its exit code.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from rich.console import Console

from cluster.cli.common import make_console
from cluster.errors import DashiError
from cluster.live.record.files import atomic_write
from cluster.live.record.identity import known_cluster_dir
from cluster.live.record.steprecord import current_state
from cluster.paths import dashi_home
from cluster.policy import diff as pdiff
from cluster.policy import export as pexport
from cluster.policy.fluxtree import WIRING
from cluster.policy.profile import Profile, load_profile
from cluster.seams import git
from cluster.seams.runner import Runner


def _verified_on(profile: Profile, context: str, state_root: Path | None) -> int:
    """How many leading steps the rollout recorded as verified on a context."""
    cluster_dir = known_cluster_dir(context, state_root)
    rec = current_state(cluster_dir, context).get(profile.name) if cluster_dir is not None else None
    if rec is None:
        raise DashiError(f"no rollout of profile {profile.name} is recorded for context {context} "
                         f"(inv network-policies-up --profile {profile.name} --context {context})")
    verified = set(rec.verified)
    k = 0
    while k < len(profile.steps) and profile.steps[k].name in verified:
        k += 1
    return k


def _wiring_hint(out: Path) -> str | None:
    ks = out / WIRING.parent / "kustomization.yaml"
    if ks.is_file() and WIRING.name in ks.read_text():
        return None
    return (f"list {WIRING.name} under resources in {WIRING.parent}/kustomization.yaml "
            "(the file `flux bootstrap` writes) so Flux picks up the wiring")


def export(profile_name: str | Profile, *, out: str | None = None, until: list[str] | None = None,
           context: str | None = None, source: str = pexport.DEFAULT_SOURCE,
           interval: str = pexport.DEFAULT_INTERVAL, force: bool = False,
           console: Console | None = None, state_root: Path | None = None) -> int:
    console = console or make_console()
    profile = profile_name if isinstance(profile_name, Profile) else load_profile(profile_name)
    layout = pexport.choose_layout(profile)
    limit = None
    verified = "offline (inv policies-check)"
    if context:
        limit = _verified_on(profile, context, state_root)
        verified = f"live on context {context} (inv network-policies-up) and offline (inv policies-check)"
    target = Path(out) if out else dashi_home() / "export" / profile.name
    current = pexport.current_untils(target, profile, layout)
    untils = pexport.resolve_untils(profile, layout, list(until or []), limit, current)
    pexport.check_offline(profile, max(untils.values()))
    plan = pexport.plan(profile, untils, verified, source=source, interval=interval, layout=layout)
    changes = pexport.changes(target, plan, force=force)
    for path, text in changes.write.items():
        atomic_write(path, text.encode())
    for path in changes.remove:
        path.unlink()
        # An overlay taken back to baseline leaves no empty directory behind.
        if path.parent != target / pexport.BASE_DIR and not any(path.parent.iterdir()):
            path.parent.rmdir()

    console.print(f"[bold]export[/bold] profile {profile.name} -> {target}: {plan.steps} of "
                  f"{len(profile.steps)} steps, verified {verified}")
    console.print(f"overlays: {layout.reason}", markup=False, highlight=False)
    if current is not None:
        console.print("an earlier export is there: overlays not named in --until keep their step", markup=False)
    for o in plan.overlays:
        steps = ", ".join(s.name for s in profile.steps[:o.until])
        console.print(f"  {o.kustomization:<30} {o.path}  {pexport.steps_span(o.until)}: {steps}",
                      markup=False, highlight=False)
    for name, k in untils.items():
        if not k:
            console.print(f"  network-policies-{name:<13} not exported (baseline: no policies there yet)",
                          markup=False, highlight=False)
    console.print(f"{len(changes.write)} file(s) written, {len(changes.unchanged)} unchanged, "
                  f"{len(changes.remove)} removed")
    hint = _wiring_hint(target)
    if hint:
        console.print(f"next: {hint}", markup=False, highlight=False)
    return 0


def _load(spec: str, directory: Path, label: str, profile: str, tmp: Path | None, rev: str | None):
    """One side; error messages name REV:path instead of the temporary copy."""
    try:
        return pdiff.load_side(directory, profile, label=label, root=tmp)
    except DashiError as e:
        if tmp is None:
            raise
        err = DashiError(str(e).replace(str(tmp.resolve()) + "/", f"{rev}:").replace(str(tmp) + "/", f"{rev}:"))
        err.exit_code = e.exit_code
        raise err from None


def policies_diff(old: str, new: str, *, profile: str | None = None, use_git: bool = False, repo: str = ".",
                  fmt: str = "table", json_path: str | None = None, markdown_path: str | None = None,
                  runner: Runner | None = None, console: Console | None = None) -> int:
    """0: shown, nothing unintended opened; 3: opens an edge the intended
    matrix does not allow; 2: the workloads differ; 1: bad input."""
    if fmt not in ("table", "json", "markdown"):
        raise DashiError(f"unknown format {fmt!r} (table, json, markdown)")
    console = console or make_console()
    hint = profile or "dashi"
    with tempfile.TemporaryDirectory(prefix="dashi-diff-") as tmp:
        sides, notes = [], []
        for name, spec in (("old", old), ("new", new)):
            if use_git:
                dest = Path(tmp) / name
                directory, revision = git.materialize(runner or Runner(), Path(repo), spec, dest)
                if not any(directory.iterdir()):
                    notes.append(f"{revision.label} has no YAML at {revision.path or '.'}: read as no policies")
                sides.append(_load(spec, directory, revision.label, hint, dest, revision.rev))
            else:
                sides.append(_load(spec, Path(spec), spec, hint, None, None))
        result = pdiff.diff(*sides)
        result.notes[:0] = notes
    if json_path:
        Path(json_path).write_text(json.dumps(pdiff.to_dict(result), indent=2) + "\n")
    if markdown_path:
        Path(markdown_path).write_text(pdiff.to_markdown(result))
    if fmt == "json":
        print(json.dumps(pdiff.to_dict(result), indent=2))
    elif fmt == "markdown":
        print(pdiff.to_markdown(result), end="")
    else:
        pdiff.print_diff(result, console)
    return result.exit_code
