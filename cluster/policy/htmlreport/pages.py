"""A page per report, read from the report's JSON dict: ``policies-check``,
``policies-diff``, and a live matrix (``smoke``, the verifications of a
rollout, the evidence of a failed one).

A page is a verdict at the top, a row of tiles (one per step, each a link
to its section, with its own verdict), then a section per step: its counts,
its grid, and what differs, in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.policy.htmlreport import cells as cellviews
from cluster.policy.htmlreport.cells import CellView
from cluster.policy.htmlreport.grid import MAX_CELLS, Grid, layout


@dataclass(frozen=True)
class Finding:
    """A titled list under a grid: what differs, in words."""

    title: str
    items: list[str]
    problem: bool = False  # a list of things that are wrong (not just information)


@dataclass
class Section:
    anchor: str
    heading: str
    ok: bool | None  # None: neither pass nor fail (information)
    verdict: str
    facts: list[str] = field(default_factory=list)
    grid: Grid | None = None
    grid_note: str = ""
    findings: list[Finding] = field(default_factory=list)
    tile: str = ""  # the short text of its tile at the top of the page

    @property
    def status(self) -> str:
        return {True: "pass", False: "fail", None: "info"}[self.ok]


@dataclass
class Page:
    title: str
    kind: str  # "policies-check", "policies-diff", "smoke", "rollout", "evidence"
    ok: bool
    verdict: str
    facts: list[tuple[str, str]]
    sections: list[Section]
    notes: list[str] = field(default_factory=list)
    marks: list[tuple[str, str]] = field(default_factory=list)  # the legend: what is on the page
    changes: list[tuple[str, str]] = field(default_factory=list)
    probes: list[tuple[str, str]] = field(default_factory=list)
    problems: bool = False  # any framed and hatched cell on the page
    probed: bool = False  # any cell a live probe saw

    @property
    def status(self) -> str:
        return "pass" if self.ok else "fail"


def with_grid(section: Section, views: list[CellView]) -> Section:
    """The section with the grid of ``views`` (or, too large to draw, a note saying so)."""
    section.grid = layout(views)
    if section.grid is None and views:
        section.grid_note = (f"The matrix has {len(views)} edges, more than the {MAX_CELLS} a grid here is drawn "
                             "for; what differs is listed below, every edge is in the JSON.")
    return section


def _legend(page: Page, views: list[CellView]) -> Page:
    marks = {v.mark for v in views}
    changes = {v.change for v in views if v.change}
    probes = {v.probe for v in views if v.show_probe}
    page.marks = [(m, t) for m, t in cellviews.MARKS.items() if m in marks]
    page.changes = [(c, t) for c, t in cellviews.CHANGES.items() if c in changes]
    page.probes = [(p, t) for p, t in cellviews.PROBES.items() if p in probes]
    page.probed = any(v.probe for v in views)
    page.problems = any(v.problem for v in views)
    return page


def _edge(d: dict) -> str:
    return f"{d['src']} -> {d['dst']} {d['port']}/{d['protocol']}"


# --------------------------------------------------------------------------
# policies-check (and the dry run of network-policies-up, which prints its steps)


def check_page(data: dict) -> Page:
    """``policies-check --json`` (or ``network-policies-up --dry-run --json``)."""
    steps = data.get("steps", [])
    skipped = data.get("skipped_steps") or []
    n_edges = len(steps[0]["edges"]) if steps else 0
    sections, views = [], []
    for i, step in enumerate(steps, 1):
        k = step.get("index", i)
        diffs = step.get("differences", [])
        step_views = cellviews.check_cells(step)
        views += step_views
        opened, closed = len(step.get("opened", ())), len(step.get("closed", ()))
        verdict = "as intended" if not diffs else f"{len(diffs)} difference(s) from the step's intent"
        section = Section(f"step-{k}", f"Step {k}: {step['step']}", not diffs, verdict,
                          [f"{len(step.get('allowed', ()))} of {n_edges} edges allowed after it",
                           f"opened {opened}, closed {closed} (against "
                           + ("the open baseline, no policy)" if k == 1 else "the step before)")],
                          tile=f"{len(step.get('allowed', ()))} allowed")
        if diffs:
            section.findings.append(Finding("Differences from the step's intent",
                                            [f"{'BLOCKED' if d['intended'] else 'ALLOWED'}: {_edge(d)}\n{d['detail']}"
                                             for d in diffs], problem=True))
        sections.append(with_grid(section, step_views))
    final = data.get("final_differences")
    if final is not None or data.get("over_permissive") is not None:
        findings = []
        if final:
            findings.append(Finding("Every difference from the intended matrix",
                                    [f"{'BLOCKED' if d['intended'] else 'ALLOWED'}: {_edge(d)}\n{d['detail']}"
                                     for d in final], problem=True))
        over = data.get("over_permissive") or []
        findings.append(Finding("Least-privilege audit: rules that allow no intended edge",
                                over or ["none: every rule serves an intended edge"], problem=False))
        sections.append(Section("final", "The final matrix against the intended matrix", not final,
                                "equal" if not final else f"{len(final)} edge(s) differ",
                                [f"after all {len(steps)} steps"], findings=findings, tile="final"))
    title = f"policies-check: profile {data.get('profile')}" + (f" without {', '.join(skipped)}" if skipped else "")
    if data.get("dry_run"):
        title = f"network-policies-up --dry-run: profile {data.get('profile')}"
    ok = bool(data.get("ok"))
    page = Page(title, "policies-check", ok,
                "every step does what the intended matrix says" if ok else
                "a step, or the final matrix, differs from the intended matrix",
                [("profile", str(data.get("profile"))), ("steps", str(len(steps))), ("edges", str(n_edges))],
                sections)
    return _legend(page, views)


# --------------------------------------------------------------------------
# policies-diff


def diff_page(data: dict) -> Page:
    """``policies-diff --json``."""
    views = cellviews.diff_cells(data)
    unchanged = data.get("unchanged", {})
    opened, closed = data.get("opened", []), data.get("closed", [])
    section = Section("diff", "Opened and closed edges", data.get("exit_code") == 0,
                      f"{len(opened)} opened, {len(closed)} closed",
                      [f"{unchanged.get('allowed', 0)} edges stay allowed, {unchanged.get('blocked', 0)} stay blocked, "
                       f"of {data.get('edges')}"], tile=f"+{len(opened)} / \u2212{len(closed)}")
    pol = data.get("policies", {})
    for what in ("added", "removed", "changed"):
        section.findings.append(Finding(f"Policies {what}", pol.get(what) or ["none"]))
    if data.get("steps"):
        section.findings.append(Finding("Steps per namespace (dashi.io/step)", data["steps"]))

    def intended(c: dict, is_open: bool) -> str:
        if c.get("intended") is None:
            return ""
        if is_open:
            return "  (intended)" if c["intended"] else "  (NOT in the intended matrix)"
        return "  (breaks intended traffic)" if c["intended"] else ""

    for title, rows, is_open in (("Opened", opened, True), ("Closed", closed, False)):
        if rows:
            bad = [c for c in rows if c.get("intended") is (not is_open)]
            section.findings.append(Finding(
                f"{title} ({len(rows)})",
                [f"{_edge(c)}{intended(c, is_open)}\nbefore: {c['before']}\nafter:  {c['after']}" for c in rows],
                problem=bool(bad)))
    with_grid(section, views)
    ok = data.get("exit_code") == 0
    n_bad = data.get("unintended_opened", 0)
    verdict = (f"{n_bad} opened edge(s) are not in the intended matrix of profile {data.get('profile')}" if n_bad else
               "no intended matrix applies" if data.get("profile") is None else
               f"every opened edge is in the intended matrix of profile {data.get('profile')}"
               + (f"; {data.get('intended_closed')} closed edge(s) were intended" if data.get("intended_closed") else ""))
    page = Page(f"policies-diff: {data.get('old')} \u2192 {data.get('new')}", "policies-diff", ok, verdict,
                [("before", str(data.get("old"))), ("after", str(data.get("new"))),
                 ("intended matrix", str(data.get("profile") or "none")), ("edges", str(data.get("edges")))],
                [section], notes=list(data.get("notes") or []))
    return _legend(page, views)


# --------------------------------------------------------------------------
# A live matrix


def _evidence(d: dict) -> str:
    """One differing edge in words, as the terminal's evidence gives it."""
    lines = [f"{_edge(d)}: {', '.join(d.get('problems') or []) or d.get('status')}"]
    if d.get("intended") is not None:
        lines.append(f"intended: {'allowed' if d['intended'] else 'blocked'}"
                     + (f" ({d['intent']})" if d.get("intent") else ""))
    lines.append(f"predicted (engine): {'allowed' if d['predicted'] else 'blocked'}")
    if d.get("kind"):
        where = f" from pod {d['target']['pod']} to {d['target']['address']}" if d.get("target") else ""
        obs = {True: "allowed", False: "blocked", None: "unknown"}[d.get("observed")]
        lines.append(f"observed: {obs} - {cellviews.PROBES.get(d['kind'], d['kind'])}{where}; "
                     f"{d.get('attempts')} probe(s)")
        if d.get("detail"):
            lines.append(f"probe said: {d['detail']}")
    lines += [f"engine: {line.strip()}" for line in (d.get("explanation") or [])[1:]]
    return "\n".join(lines)


def _summary_facts(s: dict) -> list[str]:
    facts = [f"{s.get('edges')} edges, {s.get('predicted_allowed')} allowed by the policies"]
    if s.get("probes"):
        facts.append(f"probed: {s.get('ok')} as predicted and intended, {s.get('mismatch')} mismatched, "
                     f"{s.get('error')} errors, {s.get('unprobed')} unprobed ({s.get('probes')} probes in "
                     f"{s.get('probe_seconds')} s)")
    if s.get("unintended"):
        facts.append(f"{s['unintended']} differ from the intended matrix")
    return facts


def live_section(anchor: str, heading: str, report: dict) -> tuple[Section, list[CellView]]:
    """One live report (``to_json``): its verdict, counts, grid and evidence."""
    views = cellviews.live_cells(report.get("edges", []))
    problems = [d for d in report.get("edges", []) if d.get("problems")]
    ok = bool(report.get("ok"))
    verdict = ("observed = predicted = intended" if ok else
               f"{len(problems)} edge(s) differ" if problems else "the intent could not be checked")
    s = report.get("summary", {})
    section = Section(anchor, heading, ok, verdict, _summary_facts(s),
                      tile=f"{s.get('predicted_allowed', 0)} allowed")
    if problems:
        section.findings.append(Finding(f"Edges that differ ({len(problems)})", [_evidence(d) for d in problems],
                                        problem=True))
    if report.get("notes"):
        section.findings.append(Finding("Notes", list(report["notes"])))
    return with_grid(section, views), views


def smoke_page(report: dict) -> Page:
    """``smoke --json``: the matrix as probed now."""
    section, views = live_section("smoke", f"The live matrix {report.get('state')}", report)
    page = Page(f"smoke: profile {report.get('profile')} on {report.get('context')}", "smoke",
                bool(report.get("ok")), "PASS: " + section.verdict if report.get("ok") else "FAIL: " + section.verdict,
                [("profile", str(report.get("profile"))), ("cluster", str(report.get("context"))),
                 ("state", str(report.get("state"))), ("generated", str(report.get("generated")))],
                [section])
    return _legend(page, views)


def rollout_page(data: dict, *, evidence: bool = False) -> Page:
    """A rollout's verifications, in the order they ran: ``network-policies-up
    --json``'s ``verifications`` (each a purpose and a live report), or the
    evidence of a failed one (those of the run up to the failure)."""
    sections, views = [], []
    for i, v in enumerate(data.get("verifications", []), 1):
        section, vs = live_section(f"verification-{i}", v.get("purpose") or f"verification {i}", v["report"])
        sections.append(section)
        views += vs
    ok = bool(data.get("ok"))
    if evidence:
        title = f"Evidence: profile {data.get('profile')} on {data.get('context')}"
        verdict = data.get("message") or "a verification failed"
    else:
        title = f"network-policies-up: profile {data.get('profile')} on {data.get('context')}"
        verdict = (data.get("message") or ("every step verified live" if ok else "the rollout stopped"))
        if not sections:
            verdict += "; no verification ran in this run"
    facts = [("profile", str(data.get("profile"))), ("cluster", str(data.get("context")))]
    if data.get("applied") is not None:
        facts.append(("steps applied", ", ".join(data["applied"]) or "none"))
    page = Page(title, "evidence" if evidence else "rollout", ok, verdict, facts, sections,
                notes=list(data.get("notes") or []))
    return _legend(page, views)
