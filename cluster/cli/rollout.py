"""Entry points of the rollout tasks: network-policies-up, rollback, smoke,
history. A kube factory and a console can be passed in (tests do).

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from cluster.cli.common import make_console, real_kube
from cluster.errors import DashiError
from cluster.live import guard
from cluster.live.dryrun import plan
from cluster.live.report import write_json, write_markdown
from cluster.live.rollout import Rollout
from cluster.live.status import history_rows
from cluster.policy.profile import load_profile


def up(profile_name: str, *, until: str | None = None, context: str | None = None, dry_run: bool = False,
       yes: bool = False, kube_factory=None, out: Console | None = None) -> int:
    out = out or make_console()
    profile = load_profile(profile_name)
    if until is not None:
        profile.step_index(until)  # a bad step name fails before anything else
    if dry_run:
        plan(profile, out, until)
        return 0
    kube = (kube_factory or real_kube)(context)
    Rollout(kube, profile, out=out, explicit_context=context, yes=yes,
            confirm=guard.terminal_confirm()).up(until)
    return 0


def rollback(profile_name: str, *, to: str | None = None, context: str | None = None, yes: bool = False,
             kube_factory=None, out: Console | None = None) -> int:
    out = out or make_console()
    profile = load_profile(profile_name)
    if to is not None:
        profile.step_index(to)
    kube = (kube_factory or real_kube)(context)
    Rollout(kube, profile, out=out, explicit_context=context, yes=yes,
            confirm=guard.terminal_confirm()).rollback(to)
    return 0


def smoke(profile_name: str, *, context: str | None = None, json_path: str | None = None,
          markdown_path: str | None = None, kube_factory=None, out: Console | None = None) -> int:
    """Probe the matrix now; 0 when every edge is as predicted and intended, else 1."""
    out = out or make_console()
    profile = load_profile(profile_name)
    kube = (kube_factory or real_kube)(context)
    report = Rollout(kube, profile, out=out, explicit_context=context).smoke()
    try:
        if json_path:
            write_json(report, json_path)
            out.print(f"JSON report: {json_path}", markup=False)
        if markdown_path:
            write_markdown(report, markdown_path)
            out.print(f"Markdown report: {markdown_path}", markup=False)
    except OSError as e:
        raise DashiError(f"cannot write the report: {e}") from None
    ok = report.ok
    out.print("smoke: PASS" if ok else "smoke: FAIL", markup=False, style="bold green" if ok else "bold red")
    return 0 if ok else 1


def history(profile_name: str, *, context: str | None = None, kube_factory=None,
            out: Console | None = None) -> int:
    out = out or make_console()
    kube = (kube_factory or real_kube)(context)
    ctx = kube.context()
    entries, notes, path = history_rows(kube, profile_name)
    if not entries:
        out.print(f"No history for profile {profile_name} on {ctx} ({path}).", markup=False)
        return 0
    table = Table(title=f"history of profile {profile_name} on {ctx}", header_style="bold")
    for col in ("time", "who", "event", "step", "snapshot", "result"):
        table.add_column(col, no_wrap=col in ("time", "event", "snapshot"))
    for e in entries:
        table.add_row(e.get("time", ""), f"{e.get('user', '?')}@{e.get('host', '?')}", e.get("event", ""),
                      e.get("step") or "", e.get("snapshot") or "", _result(e))
    out.print(table)
    for note in notes:
        out.print(f"note: {note}", markup=False)
    return 0


def _result(entry: dict) -> str:
    """The result column of one history entry."""
    s = entry.get("summary") or {}
    if s.get("edges"):
        result = (f"{'ok' if entry.get('ok') else 'FAILED'}: {s.get('edges')} edges, {s.get('mismatch', 0)} "
                  f"mismatched, {s.get('unintended', 0)} unintended, {s.get('unprobed', 0)} unprobed, "
                  f"{s.get('probe_seconds', 0)} s")
    else:
        result = {True: "ok", False: "FAILED", None: ""}[entry.get("ok")]
    if entry.get("message"):
        result = f"{result} {entry['message']}".strip()
    return result
