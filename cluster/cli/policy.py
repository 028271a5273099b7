"""Entry points of the offline tasks: policies-check, explain, reachability.

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.

Imports are local to each task and to each form of output: a small run's
time is mostly imports, and the console (rich) is only for the printed
forms, never for ``--json`` (the `dashi` command runs these without invoke:
``cluster.cli.offline``).
"""

from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager

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
                   strict: bool = False, cni: str | None = None, html_path: str | None = None) -> int:
    """Print the check; 1 when a step or the final matrix differs from the intent
    (or, with ``strict``, when a rule serves no intended edge), else 0.
    ``html_path``: also the page of the same dict as the JSON."""
    from cluster.policy import analysis, render

    prof = _load(profile, cni).without(skip)
    report = analysis.check(prof)
    failed_by_audit = strict and bool(report.over_permissive)
    data = render.check_to_dict(report) if as_json or html_path else None
    if data is not None:
        # "ok" is the exit status: with --strict, over-permissive rules fail it too.
        data["ok"] = report.ok and not failed_by_audit
        data["strict"] = strict
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        from cluster.ui import make_console, prose

        console = make_console()
        render.print_check(report, console, show_matrices=not quiet)
        if failed_by_audit:
            # Without this line a --strict failure reads like a pass: the
            # matrices all match and the audit is printed in yellow either way.
            console.print(f"--strict: failing on the {len(report.over_permissive)} over-permissive rule(s) above "
                          "(without --strict the audit is reported, not failed)", markup=False, highlight=False,
                          style="bold red", **prose(console))
    if html_path:
        from cluster.cli.htmlfile import write_html
        from cluster.policy.htmlreport.pages import check_page

        write_html(html_path, check_page(data))
        print(f"HTML report: {html_path}", file=sys.stderr if as_json else sys.stdout)
    return 1 if not report.ok or failed_by_audit else 0


def explain(profile: str, src: str, dst: str, port: str, step: str | None, as_json: bool = False,
            cni: str | None = None) -> int:
    """The verdict for one edge: exit 0 when allowed, BLOCKED_EXIT when blocked."""
    from dataclasses import asdict

    from cluster.policy import analysis

    verdict = analysis.explain(_load(profile, cni), src, dst, port, step)
    if as_json:
        print(json.dumps({"src": verdict.src, "dst": verdict.dst, "port": verdict.port,
                          "protocol": verdict.protocol, "allowed": verdict.allowed,
                          "egress": asdict(verdict.egress), "ingress": asdict(verdict.ingress),
                          "lines": verdict.lines()}, indent=2))
    else:
        from cluster.ui import make_console, prose

        console = make_console()
        for line in verdict.lines():
            console.print(line, markup=False, **prose(console))
    return 0 if verdict.allowed else BLOCKED_EXIT


def _expect(args: str, expect: str, result: dict) -> int:
    """0 when the tree's reachability is the expected file's, else each change
    and DIFFERS_EXIT. ``args``: the flags that made ``result``, for the hint."""
    from cluster.policy.reachexpect import DIFFERS_EXIT, compare, load_expected

    changes = compare(load_expected(expect), result)
    if not changes:
        print(f"reachability {args} is as {expect} expects: {len(result['endpoints'])} endpoints, "
              f"{len(result['ranges'])} pairs with allowed traffic")
        return 0
    print(f"reachability {args} differs from {expect} in {len(changes)} place(s):")
    for line in changes:
        print(f"  {line}")
    print(f"if the change is intended, record it: dashi reachability {args} > {expect}")
    return DIFFERS_EXIT


def _spans(ports: list[list[int]]) -> str:
    if ports == [[1, 65535]]:
        return "all"
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ports)


@contextmanager
def _collector_paused():
    """Python's cycle collector off while a large tree is read and its
    matrix built: those make hundreds of thousands of objects that all live
    to the end, and every full collection walks all of them again (about a
    third of the run's time at 10,000 pods). They hold no cycles to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def reachability(resources: str, fmt: str = "json", endpoints: str = "workloads",
                 namespace: str = "default", expect: str | None = None) -> int:
    from cluster.policy.manifests import read_dir
    from cluster.policy.reachability import compute, compute_json, skipped_line

    if fmt not in ("json", "table"):
        raise DashiError(f"--format: unknown value {fmt!r} (json, table)")
    if expect is not None:
        from cluster.policy.reachexpect import check_outside

        check_outside(expect, resources)
    notes: list[str] = []
    with _collector_paused():
        rs = read_dir(resources, namespace=namespace)
        # The JSON printed is made as text; a table and --expect read the dicts.
        text = fmt == "json" and expect is None
        result = compute_json(rs, endpoints, notes) if text else compute(rs, endpoints, notes)
    for warning in filter(None, [skipped_line(rs), *notes]):
        print(f"warning: {warning}", file=sys.stderr)
    if expect is not None:
        flags = (f" -e {endpoints}" if endpoints != "workloads" else "") + \
            (f" -N {namespace}" if namespace != "default" else "")
        return _expect(f"-r {resources}{flags}", expect, result)
    if fmt == "json":
        sys.stdout.write(result + "\n")
        return 0
    from rich.table import Table

    from cluster.ui import make_console

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
