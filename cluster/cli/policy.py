"""Entry points of the offline tasks: policies-check, explain, reachability.

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.

Imports are local to each task: ``reachability`` on a large directory is
timed as a whole process, and the console and the profile machinery cost
a tenth of a second to import that its JSON output does not need.
"""

from __future__ import annotations

import json
import sys

from cluster.errors import DashiError

# explain's exit code when the traffic is blocked, so scripts can gate on it
# (0: allowed, 1: bad input, as every task).
BLOCKED_EXIT = 3


def _load(profile: str, cni: str | None):
    """A profile by name, its steps in their form for ``cni`` (None: the plain form)."""
    from cluster.policy.profile import VARIANT_CNIS, load_profile

    if cni is not None and cni not in VARIANT_CNIS:
        raise DashiError(f"--cni: unknown value {cni!r} ({', '.join(VARIANT_CNIS)})")
    return load_profile(profile).for_cni(cni)


def policies_check(profile: str, skip: list[str], as_json: bool = False, quiet: bool = False,
                   strict: bool = False, cni: str | None = None) -> int:
    """Print the check; 1 when a step or the final matrix differs from the intent
    (or, with ``strict``, when a rule serves no intended edge), else 0."""
    from cluster.cli.common import make_console
    from cluster.policy import analysis, render

    prof = _load(profile, cni).without(skip)
    report = analysis.check(prof)
    if as_json:
        print(json.dumps(render.check_to_dict(report), indent=2))
    else:
        render.print_check(report, make_console(), show_matrices=not quiet)
    failed = not report.ok or (strict and bool(report.over_permissive))
    return 1 if failed else 0


def explain(profile: str, src: str, dst: str, port: str, step: str | None, as_json: bool = False,
            cni: str | None = None) -> int:
    """The verdict for one edge: exit 0 when allowed, BLOCKED_EXIT when blocked."""
    from dataclasses import asdict

    from cluster.cli.common import make_console
    from cluster.policy import analysis

    verdict = analysis.explain(_load(profile, cni), src, dst, port, step)
    if as_json:
        print(json.dumps({"src": verdict.src, "dst": verdict.dst, "port": verdict.port,
                          "protocol": verdict.protocol, "allowed": verdict.allowed,
                          "egress": asdict(verdict.egress), "ingress": asdict(verdict.ingress),
                          "lines": verdict.lines()}, indent=2))
    else:
        console = make_console()
        for line in verdict.lines():
            console.print(line, markup=False)
    return 0 if verdict.allowed else BLOCKED_EXIT


def _spans(ports: list[list[int]]) -> str:
    if ports == [[1, 65535]]:
        return "all"
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


def reachability(resources: str, fmt: str = "json", endpoints: str = "workloads",
                 namespace: str = "default") -> int:
    from cluster.policy.manifests import read_dir
    from cluster.policy.reachability import compute, skipped_line

    if fmt not in ("json", "table"):
        raise DashiError(f"--format: unknown value {fmt!r} (json, table)")
    rs = read_dir(resources, namespace=namespace)
    notes: list[str] = []
    result = compute(rs, endpoints, notes)
    for warning in filter(None, [skipped_line(rs), *notes]):
        print(f"warning: {warning}", file=sys.stderr)
    if fmt == "json":
        # json.dumps, not json.dump: only dumps runs C's encoder (dump writes
        # each of tens of thousands of pieces through Python).
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    from rich.table import Table

    from cluster.cli.common import make_console

    console = make_console()
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for r in result["ranges"]:
        pairs.setdefault((r["src"], r["dst"]), {})[r["protocol"]] = _spans(r["ports"])
    declared: dict[tuple[str, str], list[str]] = {}
    for a in result["allowed"]:
        declared.setdefault((a["src"], a["dst"]), []).append(f"{a['port']}/{a['protocol']}")
    console.print(f"{len(result['endpoints'])} endpoints ({endpoints}), {len(pairs)} pairs with allowed traffic, "
                  f"{len(result['allowed'])} allowed declared ports", markup=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("from", "to", "TCP", "UDP", "SCTP", "declared ports allowed"):
        table.add_column(col, overflow="fold")
    for (src, dst), protos in pairs.items():
        table.add_row(src, dst, *(protos.get(p, "-") for p in ("TCP", "UDP", "SCTP")),
                      ", ".join(declared.get((src, dst), [])) or "-")
    console.print(table)
    return 0
