"""Entry points of the offline tasks: policies-check, explain, reachability.

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.
"""

from __future__ import annotations

import json
import sys

from cluster.cli.common import make_console
from cluster.errors import DashiError
from cluster.policy import analysis, render
from cluster.policy.profile import load_profile
from cluster.policy.reachability import reachability as compute_reachability


def policies_check(profile: str, skip: list[str], as_json: bool = False, quiet: bool = False,
                   strict: bool = False) -> int:
    """Print the check; 1 when a step or the final matrix differs from the intent
    (or, with ``strict``, when a rule serves no intended edge), else 0."""
    prof = load_profile(profile).without(skip)
    report = analysis.check(prof)
    if as_json:
        print(json.dumps(render.check_to_dict(report), indent=2))
    else:
        render.print_check(report, make_console(), show_matrices=not quiet)
    failed = not report.ok or (strict and bool(report.over_permissive))
    return 1 if failed else 0


def explain(profile: str, src: str, dst: str, port: str, step: str | None) -> int:
    verdict = analysis.explain(load_profile(profile), src, dst, port, step)
    console = make_console()
    for line in verdict.lines():
        console.print(line, markup=False)
    return 0


def reachability(directory: str, fmt: str = "json") -> int:
    if fmt not in ("json", "table"):
        raise DashiError(f"unknown format {fmt!r} (json, table)")
    result = compute_reachability(directory)
    if fmt == "json":
        json.dump(result, sys.stdout, indent=None)
        sys.stdout.write("\n")
        return 0
    console = make_console()
    console.print(f"{len(result['endpoints'])} endpoints, {len(result['allowed'])} allowed edges", markup=False)
    for a in result["allowed"]:
        console.print(f"{a['src']} -> {a['dst']} {a['port']}/{a['protocol']}", markup=False)
    return 0
