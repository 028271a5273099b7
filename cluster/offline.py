"""The offline commands behind the tasks: policies-check, explain, reachability."""

from __future__ import annotations

import json
import sys

from rich.console import Console

from cluster import analysis, render
from cluster.errors import DashiError
from cluster.profile import load_profile
from cluster.reachability import reachability as compute_reachability


def policies_check(profile: str, skip: list[str], as_json: bool = False, quiet: bool = False,
                   strict: bool = False) -> bool:
    """Print the check; return True when the caller must exit non-zero."""
    prof = load_profile(profile).without(skip)
    report = analysis.check(prof)
    if as_json:
        print(json.dumps(render.check_to_dict(report), indent=2))
    else:
        render.print_check(report, Console(), show_matrices=not quiet)
    return not report.ok or (strict and bool(report.over_permissive))


def explain(profile: str, src: str, dst: str, port: str, step: str | None) -> None:
    verdict = analysis.explain(load_profile(profile), src, dst, port, step)
    console = Console()
    for line in verdict.lines():
        console.print(line, highlight=False)


def reachability(directory: str, fmt: str = "json") -> None:
    if fmt not in ("json", "table"):
        raise DashiError(f"unknown format {fmt!r} (json, table)")
    result = compute_reachability(directory)
    if fmt == "json":
        json.dump(result, sys.stdout, indent=None)
        sys.stdout.write("\n")
        return
    console = Console()
    console.print(f"{len(result['endpoints'])} endpoints, {len(result['allowed'])} allowed edges")
    for a in result["allowed"]:
        console.print(f"{a['src']} -> {a['dst']} {a['port']}/{a['protocol']}", highlight=False)
