"""Entry points of the GitOps tasks: export (verified steps -> Flux layout)
and policies-diff (what a policy change does to connectivity).

Each returns the process exit code; expected failures raise a
``DashiError``, which the task turns into one line and its exit code.

policies-diff is an offline task (``cluster.cli.offline``): what only
export needs (the rollout's record of a cluster, durable writes) and git
(only with ``--git``) are imported where they are used.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.cli.htmlfile import link_from, write_html
from cluster.errors import DashiError
from cluster.invoked import command
from cluster.paths import dashi_home
from cluster.policy import diff as pdiff
from cluster.policy import export as pexport
from cluster.policy.fluxtree import WIRING
from cluster.policy.htmlreport.pages import diff_page
from cluster.policy.profile import Profile, load_profile
from cluster.ui import make_console

if TYPE_CHECKING:
    from rich.console import Console

    from cluster.seams import git
    from cluster.seams.runner import Runner


def _verified_on(profile: Profile, context: str, state_root: Path | None) -> int:
    """How many leading steps the rollout recorded as verified on a context."""
    from cluster.live.record.identity import known_cluster_dir
    from cluster.live.record.steprecord import current_state

    cluster_dir = known_cluster_dir(context, state_root)
    rec = current_state(cluster_dir, context).get(profile.name) if cluster_dir is not None else None
    if rec is None:
        raise DashiError(f"no rollout of profile {profile.name} is recorded for context {context} "
                         f"({command(f'network-policies-up --profile {profile.name} --context {context}')})")
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
    verified = f"offline ({command('policies-check')})"
    if context:
        limit = _verified_on(profile, context, state_root)
        verified = (f"live on context {context} ({command('network-policies-up')}) and offline "
                    f"({command('policies-check')})")
    target = Path(out) if out else dashi_home() / "export" / profile.name
    try:
        current = pexport.current_untils(target, profile, layout)
        untils = pexport.resolve_untils(profile, layout, list(until or []), limit, current)
        pexport.check_offline(profile, max(untils.values()))
        plan = pexport.plan(profile, untils, verified, source=source, interval=interval, layout=layout)
        changes = pexport.changes(target, plan, force=force)
    except OSError as e:  # an --out that cannot be read (a directory without permission, ...)
        raise DashiError(f"--out {target}: cannot read {e.filename or target} ({e.strerror or e}); "
                         "nothing was written") from None
    _write_all(target, changes.write)
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


def _write_all(target: Path, files: dict[Path, str]) -> None:
    """Write every file or none: an --out that is a file, has a file where a
    directory must go, or refuses writes (/proc, a read-only mount, no
    permission) is one line naming the place, with nothing written. Each
    file is first written beside its destination as a temporary file
    (every directory made, every write done); only then are they renamed
    into place, which within a directory we could write to does not fail.
    A failure before that removes the temporary files and the directories
    made for them."""
    from cluster.live.record.files import fsync_dir

    if target.exists() and not target.is_dir():
        raise DashiError(f"--out {target}: it is a file, not a directory; nothing was written")
    for path in files:
        for parent in reversed(path.relative_to(target).parents[:-1]):  # flux, flux/bootstrap, ...
            if (target / parent).exists() and not (target / parent).is_dir():
                raise DashiError(f"--out {target}: {target / parent} is a file where the export needs a "
                                 "directory; nothing was written")
        if path.is_dir():
            raise DashiError(f"--out {target}: {path} is a directory where the export writes a file; "
                             "nothing was written")
    made: list[Path] = []
    staged: dict[Path, str] = {}
    try:
        for path, text in files.items():
            _make_dirs(path.parent, made)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            staged[path] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode())
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        for tmp in staged.values():
            Path(tmp).unlink(missing_ok=True)
        for d in reversed(made):
            try:
                d.rmdir()
            except OSError:
                pass
        raise DashiError(f"--out {target}: cannot write {e.filename or target} ({e.strerror or e}); "
                         "nothing was written") from None
    for path, tmp in staged.items():
        os.replace(tmp, path)
    for d in {p.parent for p in staged}:
        fsync_dir(d)


def _make_dirs(directory: Path, made: list[Path]) -> None:
    """``mkdir -p``, noting each directory it makes (outermost first)."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir()
        made.append(d)


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


def _check_paths(revisions: list[git.Revision], listed: list[list[str]]) -> None:
    """A PATH one revision lacks reads as no policies only where the other
    revision has that same PATH: the pull request that adds (or removes) the
    tree. A PATH that is not there otherwise is a typo, not an empty side:
    read as no policies it would report every edge as changed."""
    for i, (revision, names) in enumerate(zip(revisions, listed)):
        other, other_names = revisions[1 - i], listed[1 - i]
        if not names and not (other_names and other.path == revision.path):
            raise DashiError(f"{revision.spec}: no path {revision.path or '.'!r} at {revision.rev} "
                             f"({revision.commit[:12]}); a path reads as no policies only on the side that "
                             "lacks it while the other has it (the pull request that adds it)")


def policies_diff(old: str, new: str, *, profile: str | None = None, use_git: bool = False, repo: str = ".",
                  fmt: str = "table", json_path: str | None = None, markdown_path: str | None = None,
                  html_path: str | None = None, html_link: str | None = None,
                  runner: Runner | None = None, console: Console | None = None) -> int:
    """0: shown, nothing unintended opened; 3: opens an edge the intended
    matrix does not allow; 2: the workloads differ; 1: bad input.
    ``html_path``: also the page of the same dict as the JSON, which the
    Markdown links (at ``html_link``, default its path; "" for no link)."""
    if fmt not in ("table", "json", "markdown"):
        raise DashiError(f"unknown format {fmt!r} (table, json, markdown)")
    console = console or make_console()
    hint = profile or "dashi"
    with tempfile.TemporaryDirectory(prefix="dashi-diff-") as tmp:
        sides, notes = [], []
        if use_git:
            from cluster.seams import git
            from cluster.seams.runner import Runner

            runner = runner or Runner()
            revisions = [git.resolve(runner, Path(repo), spec) for spec in (old, new)]
            listed = [git.files(runner, Path(repo), r) for r in revisions]
            _check_paths(revisions, listed)
            for name, spec, revision, names in zip(("old", "new"), (old, new), revisions, listed):
                dest = Path(tmp) / name
                directory = git.write_tree(runner, Path(repo), revision, names, dest)
                if not any(directory.iterdir()):
                    notes.append(f"{revision.label} has no YAML at {revision.path or '.'}: read as no policies")
                sides.append(_load(spec, directory, revision.label, hint, dest, revision.rev))
        else:
            for spec in (old, new):
                sides.append(_load(spec, Path(spec), spec, hint, None, None))
        result = pdiff.diff(*sides)
        result.notes[:0] = notes
    data = pdiff.to_dict(result)
    if html_path:
        write_html(html_path, diff_page(data))
        html_link = link_from(markdown_path, html_path) if html_link is None else html_link
    if json_path:
        Path(json_path).write_text(json.dumps(data, indent=2) + "\n")
    if markdown_path:
        Path(markdown_path).write_text(pdiff.to_markdown(result, html_link))
    if fmt == "json":
        print(json.dumps(data, indent=2))
    elif fmt == "markdown":
        print(pdiff.to_markdown(result, html_link), end="")
    else:
        pdiff.print_diff(result, console)
        if html_path:
            console.print(f"HTML report: {html_path}", markup=False, highlight=False)
    return result.exit_code
