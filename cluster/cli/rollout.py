"""Entry points of the rollout tasks: network-policies-up, rollback, smoke,
history. A kube factory and a console can be passed in (tests do).

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from cluster.cli.common import make_console, real_kube
from cluster.cli.htmlfile import link_from, write_html, write_text
from cluster.errors import DashiError
from cluster.live.observe.htmlpages import run_html, smoke_html, verifications_json
from cluster.live.observe.report import to_json, write_json, write_markdown
from cluster.live.observe.settings import ProbeSettings
from cluster.live.record.files import state_root
from cluster.live.rollout.dryrun import plan
from cluster.live.rollout.overview import history_rows
from cluster.live.rollout.rollout import Rollout
from cluster.live.safety import guard
from cluster.policy import analysis, render
from cluster.policy.htmlreport.pages import check_page
from cluster.policy.profile import load_profile


def _console(as_json: bool, out: Console | None) -> Console:
    """With --json, stdout carries the JSON document alone: progress goes to stderr."""
    return out or make_console(sys.stderr if as_json else None)


def _dry_run(profile, until: str | None, out: Console, as_json: bool, html_path: str | None = None) -> int:
    """The plan, then whether each step's predicted matrix is its intended
    one: 1 when any differs (a port typo in a step fails here, not live)."""
    plan(profile, out, until)
    target = len(profile.steps) if until is None else profile.step_index(until)
    report = analysis.check(profile)
    steps = report.steps[:target]
    bad = [s for s in steps if s.differences]
    for s in bad:
        out.print(f"dry run: step {s.index} {s.name}: the predicted matrix differs from the intended one in "
                  f"{len(s.differences)} edge(s):", markup=False, style="bold red")
        for d in s.differences:
            out.print(f"  {'BLOCKED' if d.intended else 'ALLOWED'}: {d.edge}: {d.detail}", markup=False)
    if not bad:
        out.print(f"dry run: every step 1..{target} predicts exactly its intended matrix", markup=False)
    if as_json or html_path:
        data = render.check_to_dict(report)
        data = {"profile": data["profile"], "dry_run": True, "ok": not bad, "steps": data["steps"][:target]}
        if as_json:
            print(json.dumps(data, indent=2))
        if html_path:
            write_html(html_path, check_page(data))
            out.print(f"HTML report: {html_path}", markup=False)
    return 1 if bad else 0


def up(profile_name: str, *, until: str | None = None, context: str | None = None, dry_run: bool = False,
       yes: bool = False, kube_factory=None, out: Console | None = None, as_json: bool = False,
       observe: str | None = None, hubble: str | None = None, accept_blocking: list[str] | None = None,
       html_path: str | None = None) -> int:
    """``html_path``: the page of this run's verifications, written however
    the run ends (a failed step's page is the one most wanted)."""
    out = _console(as_json, out)
    profile = load_profile(profile_name)
    if until is not None:
        profile.step_index(until)  # a bad step name fails before anything else
    if dry_run:
        return _dry_run(profile, until, out, as_json, html_path)
    if observe is None and (hubble or accept_blocking):
        raise DashiError("--hubble and --accept-blocking go with --observe D")
    state_root()  # a state directory that cannot be one fails before the cluster is asked
    ProbeSettings.from_env()  # and so does a probe setting out of bounds
    kube = (kube_factory or real_kube)(context)
    rollout = Rollout(kube, profile, out=out, explicit_context=context, yes=yes, confirm=guard.terminal_confirm())
    if observe is not None:
        rollout.watch = _watch(observe, hubble, accept_blocking or [], rollout, kube, out)
    try:
        record = rollout.up(until)
    except BaseException as e:
        if html_path:
            try:
                _run_page(html_path, rollout, {"ok": False, "message": f"stopped: {e}" if str(e) else "interrupted"},
                          out)
            except DashiError as w:  # the run's own error is the one to report
                out.print(f"warning: {w}", markup=False)
        raise
    finally:
        if rollout.watch is not None:
            rollout.watch.close()
    data = {"profile": profile.name, "context": kube.context(), "ok": True, "applied": record.applied,
            "in_progress": record.in_progress.to_dict() if record.in_progress else None,
            "verifications": verifications_json(rollout.verifications)}
    if html_path:
        _run_page(html_path, rollout, data, out)
    if as_json:
        print(json.dumps(data, indent=2))
    return 0


def _watch(observe: str, hubble: str | None, accept: list[str], rollout, kube, out):
    """network-policies-up --observe: the hooks that observe before each step."""
    from cluster.cli.flows import parse_duration
    from cluster.live.observe.hubble import connect
    from cluster.live.rollout.watch import Watch
    from cluster.policy.flows.replay import parse_accept

    seconds = parse_duration(observe, "--observe")
    for a in accept:
        parse_accept(a, rollout.profile)  # a bad edge fails before the cluster is changed
    say = lambda t: out.print(f"  {t}", markup=False)  # noqa: E731
    return Watch(lambda: connect(address=hubble, kube=None if hubble else kube, say=say), seconds, accept)


def _run_page(path: str, rollout: Rollout, data: dict, out: Console) -> None:
    """The page of a rollout's verifications; ``data``: its JSON, or what is known of a run that stopped."""
    data = {"profile": rollout.profile.name, "context": rollout.context,
            "verifications": verifications_json(rollout.verifications), **data}
    write_text(path, run_html(data))
    out.print(f"HTML report: {path}", markup=False)


def rollback(profile_name: str, *, to: str | None = None, context: str | None = None, yes: bool = False,
             kube_factory=None, out: Console | None = None) -> int:
    out = out or make_console()
    profile = load_profile(profile_name)
    if to is not None:
        profile.step_index(to)
    state_root()  # a state directory that cannot be one fails before the cluster is asked
    ProbeSettings.from_env()  # and so does a probe setting out of bounds
    kube = (kube_factory or real_kube)(context)
    Rollout(kube, profile, out=out, explicit_context=context, yes=yes,
            confirm=guard.terminal_confirm()).rollback(to)
    return 0


def smoke(profile_name: str, *, context: str | None = None, json_path: str | None = None,
          markdown_path: str | None = None, kube_factory=None, out: Console | None = None,
          as_json: bool = False, html_path: str | None = None) -> int:
    """Probe the matrix now; 0 when every edge is as predicted and intended, else 1."""
    out = _console(as_json, out)
    profile = load_profile(profile_name)
    state_root()  # a state directory that cannot be one fails before the cluster is asked
    ProbeSettings.from_env()  # and so does a probe setting out of bounds
    kube = (kube_factory or real_kube)(context)
    report = Rollout(kube, profile, out=out, explicit_context=context).smoke()
    try:
        if json_path:
            write_json(report, json_path)
            out.print(f"JSON report: {json_path}", markup=False)
        if html_path:
            write_text(html_path, smoke_html(report))
            out.print(f"HTML report: {html_path}", markup=False)
        if markdown_path:
            write_markdown(report, markdown_path, link_from(markdown_path, html_path) if html_path else None)
            out.print(f"Markdown report: {markdown_path}", markup=False)
    except OSError as e:
        raise DashiError(f"cannot write the report: {e}") from None
    ok = report.ok
    out.print("smoke: PASS" if ok else "smoke: FAIL", markup=False, style="bold green" if ok else "bold red")
    if as_json:
        print(json.dumps(to_json(report), indent=2))
    return 0 if ok else 1


def history(profile_name: str, *, context: str | None = None, kube_factory=None,
            out: Console | None = None, as_json: bool = False) -> int:
    out = _console(as_json, out)
    state_root()  # a state directory that cannot be one fails before the cluster is asked
    kube = (kube_factory or real_kube)(context)
    ctx = kube.context()
    entries, notes, path = history_rows(kube, profile_name)
    if as_json:
        print(json.dumps({"profile": profile_name, "context": ctx, "entries": entries, "notes": notes}, indent=2))
        return 0
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
