"""Rendering of offline analysis: rich tables for people, dicts for machines."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from cluster.policy.analysis import CheckReport, Difference
from cluster.policy.checkcells import step_cells
from cluster.policy.engine.model import Edge
from cluster.policy.tables import matrix_table, print_column_key
from cluster.ui import prose

# The cells of the check's matrices: a matrix cell is drawn as the Text it
# is (``tables.Grid`` reads no markup), so the marks are made once here.
_ALLOWED, _BLOCKED = Text("✓", style="green"), Text("·", style="dim")
_UNINTENDED, _MISSING = Text("✗", style="bold red"), Text("!", style="bold red")
_NONE = Text("")
LEGEND = "✓ allowed  · blocked  ✗ allowed but not intended  ! intended but blocked"


def _diff_lines(diffs: list[Difference]) -> list[str]:
    return [f"  {'BLOCKED' if d.intended else 'ALLOWED'}: {d.edge}\n      {d.detail}" for d in diffs]


def print_check(report: CheckReport, console: Console, show_matrices: bool = True) -> None:
    profile = report.profile
    wrap = prose(console)
    skipped = f" (without {', '.join(profile.skipped_steps)})" if profile.skipped_steps else ""
    console.print(f"[bold]policies-check[/bold] profile {profile.name}{skipped}: "
                  f"{len(profile.steps)} steps, {len(profile.edges())} edges, "
                  f"{len(profile.intended)} intended", **wrap)
    if show_matrices and report.steps:
        console.print("destination columns of the matrices below:", **wrap)
        print_column_key(report.steps[0].verdicts, console)
        # Once, not in every matrix's title: a title wider than the matrix
        # would widen it past an 80-column terminal.
        console.print(LEGEND, markup=False, highlight=False, style="dim", **wrap)
    prev = None
    for res in report.steps:
        k = res.index
        verdicts = res.verdicts
        want = profile.intended_after(k)
        if show_matrices:
            def cell(e: Edge | None, v=verdicts, w=want) -> Text:
                if e is None:
                    return _NONE
                ok = v.allowed(e)
                if ok == w[e]:
                    return _ALLOWED if ok else _BLOCKED
                return _UNINTENDED if ok else _MISSING
            console.print(matrix_table(verdicts, f"after step {k} {res.name}", cell))
        opened = closed = 0
        if prev is not None:
            opened = sum(1 for e in verdicts if verdicts.allowed(e) and not prev.allowed(e))
            closed = sum(1 for e in verdicts if not verdicts.allowed(e) and prev.allowed(e))
        status = "[green]as intended[/green]" if not res.differences else \
            f"[red]{len(res.differences)} difference(s) from the step's intent[/red]"
        delta = f" (+{opened} / -{closed})" if prev is not None else ""
        console.print(f"step {k} {res.name}: {res.allowed} allowed{delta}: {status}", **wrap)
        for line in _diff_lines(res.differences):
            console.print(line, markup=False, highlight=False, **wrap)
        prev = verdicts

    if report.final:
        console.print(f"[bold red]final matrix differs from the intended matrix in "
                      f"{len(report.final)} edge(s):[/bold red]", **wrap)
        for line in _diff_lines(report.final):
            console.print(line, markup=False, highlight=False, **wrap)
    else:
        console.print("[bold green]final matrix equals the intended matrix[/bold green]", **wrap)
    if report.over_permissive:
        console.print(f"[yellow]least-privilege audit: {len(report.over_permissive)} rule(s) "
                      "allow no intended edge:[/yellow]", **wrap)
        for f in report.over_permissive:
            console.print(f"  over-permissive: {f}", markup=False, highlight=False, **wrap)
    else:
        console.print("least-privilege audit: every rule serves an intended edge", **wrap)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False, **wrap)
    for h in profile.host_access:
        console.print(f"[dim]host -> {h.dst}: allowed, node traffic is not subject to NetworkPolicy "
                      f"({h.reason})[/dim]", **wrap)


def _edge_dict(e: Edge) -> dict:
    return {"src": e.src, "dst": e.dst, "port": e.port, "protocol": e.protocol}


def check_to_dict(report: CheckReport) -> dict:
    profile = report.profile
    steps = []
    for res in report.steps:
        steps.append({
            "step": res.name,
            "allowed": [_edge_dict(e) for e in res.verdicts if res.verdicts.allowed(e)],
            "differences": [{**_edge_dict(d.edge), "intended": d.intended, "predicted": d.predicted,
                             "detail": d.detail} for d in res.differences],
            **step_cells(report, res),
        })
    return {
        "profile": profile.name,
        "skipped_steps": list(profile.skipped_steps),
        "ok": report.ok,
        "steps": steps,
        "final_differences": [{**_edge_dict(d.edge), "intended": d.intended, "predicted": d.predicted,
                               "detail": d.detail} for d in report.final],
        "over_permissive": report.over_permissive,
        "warnings": report.warnings,
    }
