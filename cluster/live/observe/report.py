"""Expected and observed, side by side.

One ``MatrixReport`` holds, for every edge of a profile's matrix, what the
intent says (the step-intended state), what the engine predicts for the
policies in place (predicted) and what a live probe saw (observed). The same
report renders as rich tables for the terminal (predicted and observed
matrices next to each other, then the evidence for each difference), as JSON
for CI, and as Markdown for a ticket.

An edge's problems:

* ``mismatch``: the probe disagrees with the engine (the CNI does not do
  what the policies say, or has not yet);
* ``unintended``: the engine's prediction disagrees with the intent (a step
  opens an edge it should not, or fails to open its own);
* ``error``: the probe could not tell (DNS failure, exec failure, other, a
  refusal where the CNI's deny behaviour is unknown).

``unprobed`` edges (a UDP probe against DNS, a pod's traffic to itself) are
reported and counted, never treated as a match or a mismatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property

from rich.columns import Columns
from rich.console import Console
from rich.text import Text

from cluster.live.observe.prober import Observation
from cluster.live.record.files import now_iso
from cluster.policy.engine.evaluate import Verdict
from cluster.policy.engine.model import Edge
from cluster.policy.tables import matrix_table, print_column_key
from cluster.ui import prose

KIND_MEANING = {
    "connected": "connected (allowed)",
    "refused": "refused (blocked where the CNI rejects; where it drops, the packet reached the pod)",
    "timeout": "timeout: dropped (blocked)",
    "dns": "DNS error",
    "other": "other error",
    "unprobed": "unprobed",
}


@dataclass
class EdgeRow:
    edge: Edge
    predicted: bool  # the engine, for the policies in place
    verdict: Verdict
    intended: bool | None = None  # the step-intended state (None: not checked)
    intent: str = ""  # which step opens it and why
    observation: Observation | None = None  # None: not probed (dry run)
    # What the step that brought the policies here does to this edge by the
    # intended matrix: "opened", "closed", or None (no change, or no step).
    change: str | None = None

    @property
    def observed(self) -> bool | None:
        return None if self.observation is None else self.observation.allowed

    @property
    def kind(self) -> str | None:
        return None if self.observation is None else self.observation.result.kind

    @cached_property
    def problems(self) -> list[str]:
        # Worked out once: a row is not changed after it is made, and a
        # report asks for each row's problems in every cell it draws.
        out = []
        if self.observation is not None:
            # A probe that cannot tell (DNS, exec failure, a refusal under a
            # CNI whose deny behaviour was never measured) is an error.
            if self.kind in ("dns", "other") or (self.observed is None and self.kind != "unprobed"):
                out.append("error")
            elif self.observed is not None and self.observed != self.predicted:
                out.append("mismatch")
        if self.intended is not None and self.intended != self.predicted:
            out.append("unintended")
        return out

    @property
    def status(self) -> str:
        probs = self.problems
        if probs:
            return probs[0]
        return "unprobed" if self.kind == "unprobed" else "ok"


@dataclass
class MatrixReport:
    profile: str
    context: str | None
    state: str  # e.g. "after allow-dns (2/9)"
    rows: list[EdgeRow]
    probed: bool
    seconds: float = 0.0
    first_pass_seconds: float = 0.0
    probes: int = 0
    workers: int = 0
    notes: list[str] = field(default_factory=list)
    generated: str = field(default_factory=now_iso)
    # False when the live policies match no step of the profile, so there is
    # no step-intended matrix to compare with: that alone fails a smoke test.
    intent_checked: bool = True
    execs: int = 0
    mode: str = ""  # how the probes were run: one exec per source pod, or per edge
    # Seconds from the start of the run until every edge agreed with the
    # prediction (right after an apply: the time the CNI took to enforce).
    matched_seconds: float | None = None

    @property
    def problem_rows(self) -> list[EdgeRow]:
        return [r for r in self.rows if r.problems]

    @property
    def ok(self) -> bool:
        return not self.problem_rows and self.intent_checked

    def _counts(self) -> dict[str, int]:
        """How many rows have each status: a row counts once under each of
        its problems, or, with none, as ok or unprobed (``EdgeRow.status``);
        each row's problems worked out once."""
        counts = {"ok": 0, "mismatch": 0, "unintended": 0, "error": 0, "unprobed": 0}
        for r in self.rows:
            probs = r.problems
            for p in set(probs):
                counts[p] = counts.get(p, 0) + 1
            if not probs:
                counts["unprobed" if r.kind == "unprobed" else "ok"] += 1
        return counts

    def summary(self) -> dict:
        counts = self._counts()
        return {"edges": len(self.rows), "ok": counts["ok"], "mismatch": counts["mismatch"],
                "unintended": counts["unintended"], "error": counts["error"],
                "unprobed": counts["unprobed"],
                "predicted_allowed": sum(1 for r in self.rows if r.predicted),
                "observed_allowed": sum(1 for r in self.rows if r.observed),
                "probe_seconds": round(self.seconds, 2), "probes": self.probes, "execs": self.execs,
                "matched_seconds": None if self.matched_seconds is None else round(self.matched_seconds, 2)}

    def summary_line(self) -> str:
        s = self.summary()
        head = f"{s['edges']} edges, {s['predicted_allowed']} allowed by the policies"
        if self.probed:
            head += (f"; probed: {s['ok']} as predicted, {s['mismatch']} mismatched, {s['error']} errors, "
                     f"{s['unprobed']} unprobed ({self.probes} probes in {self.execs} execs, {self.workers} "
                     f"workers, {self.seconds:.1f} s)")
        if s["unintended"]:
            head += f"; {s['unintended']} differ from the intended matrix"
        return head


# --------------------------------------------------------------------------
# Evidence


def evidence(row: EdgeRow) -> list[str]:
    """Why this edge is a problem: the edge, predicted vs observed, the probe's
    error kind, and the engine's explanation naming the policies."""
    e = row.edge
    exp = "allowed" if row.predicted else "blocked"
    lines = [f"{e.src} -> {e.dst} {e.port}/{e.protocol}: {', '.join(row.problems) or row.status}"]
    if row.intended is not None:
        lines.append(f"  intended: {'allowed' if row.intended else 'blocked'}"
                     + (f" ({row.intent})" if row.intent else ""))
    lines.append(f"  predicted (engine): {exp}")
    if row.observation is not None:
        o = row.observation
        t = o.target
        where = f" from pod {t.namespace}/{t.pod} to {t.host}:{t.port}" if t else ""
        obs = {True: "allowed", False: "blocked", None: "unknown"}[o.allowed]
        lines.append(f"  observed: {obs} - {KIND_MEANING.get(o.result.kind, o.result.kind)}{where}; "
                     f"{o.attempts} probe(s) over {o.seconds:.1f} s")
        if o.result.detail:
            lines.append(f"  probe said: {o.result.detail}")
        if t is not None and t.note:
            lines.append(f"  note: {t.note}")
    lines.append("  engine:")
    lines.extend("    " + line.strip() for line in row.verdict.lines()[1:])
    return lines


def diagnosis(report: MatrixReport) -> str | None:
    """One line about a pattern across the differences, when there is one."""
    probed_blocked = [r for r in report.rows if r.observation is not None and not r.predicted
                      and r.observed is not None]
    leaked = [r for r in probed_blocked if r.observed]
    if probed_blocked and len(leaked) == len(probed_blocked):
        return ("every edge the policies block was observed open: the cluster's network plugin is not "
                "enforcing NetworkPolicy (is a policy-enforcing CNI installed and running?)")
    probed_allowed = [r for r in report.rows if r.observation is not None and r.predicted
                      and r.observed is not None]
    dropped = [r for r in probed_allowed if not r.observed]
    if probed_allowed and len(dropped) == len(probed_allowed):
        return "every edge the policies allow was observed dropped: is pod networking itself working?"
    return None


# --------------------------------------------------------------------------
# Terminal


def _cell(mark: str, style: str = "") -> Text:
    """One Text per mark and style, shared by every cell that shows it (the
    matrices read their cells and never change them): two matrices a step."""
    text = _CELLS.get((mark, style))
    if text is None:
        text = _CELLS[(mark, style)] = Text(mark, style=style)
    return text


_CELLS: dict[tuple[str, str], Text] = {}


def _cell_predicted(row: EdgeRow | None) -> Text:
    if row is None:
        return _cell("")
    mark = "✓" if row.predicted else "·"
    if "unintended" in row.problems:
        return _cell(mark + "!", "bold yellow")
    return _cell(mark, "green" if row.predicted else "dim")


def _cell_observed(row: EdgeRow | None) -> Text:
    if row is None or row.observation is None:
        return _cell("")
    mark = {"connected": "✓", "refused": "R", "timeout": "·", "unprobed": "?"}.get(row.kind, "E")
    if "mismatch" in row.problems or "error" in row.problems:
        return _cell(mark + "✗", "bold white on red")
    if row.kind == "unprobed":
        return _cell(mark, "dim")
    return _cell(mark, "green" if row.observed else "dim")


# How many differences the terminal shows in full; the rest are counted
# (every one is in --json / --markdown and in the evidence files).
MAX_EVIDENCE = 25

LEGEND = ("✓ allowed  · blocked  R refused (rejected)  ? unprobed  E error  "
          "✗ observed differs from predicted  ! predicted differs from intended")


def render(report: MatrixReport, console: Console, *, matrices: bool = True) -> None:
    """Print the matrices (predicted, observed) and the evidence for each problem."""
    console.print(f"{report.profile} {report.state}: {report.summary_line()}", markup=False, highlight=False,
                  **prose(console))
    if matrices:
        rows = {r.edge: r for r in report.rows}
        edges = list(rows)
        predicted = matrix_table(edges, "predicted (engine)", lambda e: _cell_predicted(rows.get(e)))
        if report.probed:
            observed = matrix_table(edges, "observed (live probes)", lambda e: _cell_observed(rows.get(e)))
            console.print(Columns([predicted, observed], padding=(0, 4)))
        else:
            console.print(predicted)
        print_column_key(edges, console)
        console.print(LEGEND, markup=False, highlight=False, style="dim", **prose(console))
    for note in report.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    problems = report.problem_rows
    if problems:
        console.print(f"{len(problems)} edge(s) differ:", markup=False, highlight=False, soft_wrap=True, style="bold red")
        hint = diagnosis(report)
        if hint:
            console.print(hint, markup=False, highlight=False, soft_wrap=True, style="bold")
        for row in problems[:MAX_EVIDENCE]:
            for line in evidence(row):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        if len(problems) > MAX_EVIDENCE:
            console.print(f"... and {len(problems) - MAX_EVIDENCE} more edge(s) (all of them are in the JSON "
                          "and Markdown reports)", markup=False, highlight=False, soft_wrap=True)
    unprobed = [r for r in report.rows if r.status == "unprobed"]
    if unprobed:
        reasons: dict[str, int] = {}
        for r in unprobed:
            reasons[r.observation.result.detail] = reasons.get(r.observation.result.detail, 0) + 1
        for why, n in reasons.items():
            console.print(f"unprobed ({n} edges): {why}", markup=False, highlight=False, soft_wrap=True, style="dim")


# --------------------------------------------------------------------------
# JSON and Markdown


def row_dict(row: EdgeRow) -> dict:
    o = row.observation
    return {
        "src": row.edge.src, "dst": row.edge.dst, "port": row.edge.port, "protocol": row.edge.protocol,
        "intended": row.intended, "intent": row.intent or None,
        "predicted": row.predicted, "observed": None if o is None else o.allowed,
        "kind": None if o is None else o.result.kind, "detail": None if o is None else o.result.detail,
        "attempts": None if o is None else o.attempts,
        "target": None if o is None or o.target is None else
        {"pod": f"{o.target.namespace}/{o.target.pod}", "address": f"{o.target.host}:{o.target.port}"},
        "status": row.status, "problems": row.problems, "change": row.change,
        "explanation": [line.strip() for line in row.verdict.lines()],
    }


def to_json(report: MatrixReport) -> dict:
    return {"profile": report.profile, "context": report.context, "state": report.state,
            "generated": report.generated, "ok": report.ok, "intent_checked": report.intent_checked,
            "summary": report.summary(),
            "workers": report.workers, "first_pass_seconds": round(report.first_pass_seconds, 2),
            "mode": report.mode,
            "notes": report.notes, "edges": [row_dict(r) for r in report.rows]}


def write_json(report: MatrixReport, path: str) -> None:
    with open(path, "w") as f:
        json.dump(to_json(report), f, indent=2)
        f.write("\n")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(report: MatrixReport, html_link: str | None = None) -> str:
    """``html_link``: where the HTML page of the same report is, linked at the top."""
    s = report.summary()
    verdict = "PASS" if report.ok else "FAIL"
    out = [f"# Network policy smoke test: {verdict}", "",
           f"- profile: `{report.profile}` ({report.state})",
           f"- cluster: `{report.context}`",
           f"- generated: {report.generated}",
           f"- edges: {s['edges']} ({s['ok']} as predicted, {s['mismatch']} mismatched, {s['error']} errors, "
           f"{s['unprobed']} unprobed, {s['unintended']} differ from the intent)",
           f"- probing: {report.probes} probes in {report.execs} execs ({report.mode or 'not probed'}) on "
           f"{report.workers} workers in {report.seconds:.1f} s"]
    if html_link:
        out.append(f"- the matrix as a picture, every edge with the policies that decide it: "
                   f"[HTML report](<{html_link}>)")
    out.append("")
    for note in report.notes:
        out.append(f"> note: {_md(note)}")
    if report.notes:
        out.append("")
    problems = report.problem_rows
    if problems:
        out += ["## Differences", ""]
        for row in problems:
            out.append("```")
            out.extend(evidence(row))
            out.append("```")
            out.append("")
    out += ["## All edges", "",
            "| from | to | port | intended | predicted | observed | probe | status |",
            "|---|---|---|---|---|---|---|---|"]
    word = {True: "allowed", False: "blocked", None: "-"}
    for r in report.rows:
        out.append(f"| {_md(r.edge.src)} | {_md(r.edge.dst)} | {r.edge.port}/{r.edge.protocol} | "
                   f"{word[r.intended]} | {word[r.predicted]} | {word[r.observed]} | {r.kind or '-'} | "
                   f"{'**' + r.status + '**' if r.problems else r.status} |")
    return "\n".join(out) + "\n"


def write_markdown(report: MatrixReport, path: str, html_link: str | None = None) -> None:
    with open(path, "w") as f:
        f.write(to_markdown(report, html_link))
