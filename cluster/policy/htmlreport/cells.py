"""What one cell of a report's grid shows, for each kind of report, read
from one edge of the report's JSON.

Every cell has a mark (a shape, never a colour alone), may carry a badge
for what the step changed and one for what the live probe saw, is framed
and hatched when something is wrong with it, and has a tooltip naming the
policies that decide it, in ``explain``'s words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The marks, and what they mean, for the legend. A cell's mark is its main
# shape; "unintended" and "missing" are problems whatever else is true.
MARKS = {
    "allowed": "allowed",
    "blocked": "blocked",
    "unintended": "allowed, but not in the intended matrix",
    "missing": "intended, but blocked",
    "opened": "opened: blocked before, allowed after",
    "closed": "closed: allowed before, blocked after",
}
# A badge in the top right corner: what the step changed.
CHANGES = {
    "opened": "the step opens it",
    "closed": "the step closes it",
}
# A badge in the bottom right corner: what the live probe saw.
PROBES = {
    "connected": "probe connected (allowed)",
    "timeout": "probe timed out: dropped (blocked)",
    "refused": "probe refused",
    "dns": "probe: DNS error",
    "other": "probe: other error",
    "unprobed": "not probed",
}


@dataclass(frozen=True)
class CellView:
    src: str
    dst: str
    port: int
    protocol: str
    mark: str  # a key of MARKS
    change: str | None = None  # a key of CHANGES
    probe: str | None = None  # a key of PROBES
    # The probe's badge is drawn where it says something the mark does not:
    # the probe disagreed with the engine, could not tell, or did not run.
    show_probe: bool = False
    problem: bool = False  # framed and hatched: differs from the intent, the engine or the probe
    title: str = ""  # the tooltip

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.src, self.dst, self.port, self.protocol)


def edge_key(d: dict) -> tuple[str, str, int, str]:
    return (d["src"], d["dst"], d["port"], d["protocol"])


def _head(d: dict) -> str:
    return f"{d['src']} \u2192 {d['dst']} {d['port']}/{d['protocol']}"


def _word(allowed: bool | None) -> str:
    return {True: "allowed", False: "blocked", None: "-"}[allowed]


def _intent_mark(predicted: bool, intended: bool | None) -> str:
    if intended is None or predicted == intended:
        return "allowed" if predicted else "blocked"
    return "unintended" if predicted else "missing"


def _explanation(d: dict) -> list[str]:
    """The verdict's lines without their first (the edge and ALLOWED/BLOCKED, said above)."""
    return [line.strip() for line in (d.get("explanation") or [])[1:]]


# --------------------------------------------------------------------------
# policies-check


def check_cells(step: dict) -> list[CellView]:
    """One step of ``policies-check --json``: its ``edges``, ``opened`` and ``closed``."""
    opened = {edge_key(e) for e in step.get("opened", ())}
    closed = {edge_key(e) for e in step.get("closed", ())}
    out = []
    for d in step.get("edges", ()):
        mark = _intent_mark(d["predicted"], d["intended"])
        k = edge_key(d)
        change = "opened" if k in opened else "closed" if k in closed else None
        state = {"allowed": "allowed, as intended", "blocked": "blocked, as intended",
                 "unintended": "ALLOWED, but not intended", "missing": "BLOCKED, but intended"}[mark]
        lines = [_head(d), state] + ([f"{change} by this step"] if change else []) + _explanation(d)
        out.append(CellView(*k, mark=mark, change=change, problem=mark in ("unintended", "missing"),
                            title="\n".join(lines)))
    return out


# --------------------------------------------------------------------------
# A live matrix: smoke, a rollout's verifications, its evidence


def live_cells(edges: Iterable[dict]) -> list[CellView]:
    """The ``edges`` of a live report's JSON (``cluster.live.observe.report.to_json``)."""
    out = []
    for d in edges:
        mark = _intent_mark(d["predicted"], d.get("intended"))
        kind = d.get("kind")
        problems = list(d.get("problems") or ())
        lines = [_head(d)]
        if d.get("intended") is not None:
            lines.append(f"intended: {_word(d['intended'])}" + (f" ({d['intent']})" if d.get("intent") else ""))
        lines.append(f"predicted (engine): {_word(d['predicted'])}")
        if kind is not None:
            lines.append(f"observed: {PROBES.get(kind, kind)}" + (f": {d['detail']}" if d.get("detail") else ""))
        if problems:
            lines.append(f"PROBLEM: {', '.join(problems)}")
        if d.get("change"):
            lines.append(f"the step {d['change'][:-2]}s it (intended matrix)")
        lines += _explanation(d)
        probe = kind if kind in PROBES else None if kind is None else "other"
        out.append(CellView(*edge_key(d), mark=mark, change=d.get("change"), probe=probe,
                            show_probe=probe == "unprobed" or "mismatch" in problems or "error" in problems,
                            problem=bool(problems), title="\n".join(lines)))
    return out


# --------------------------------------------------------------------------
# policies-diff


def _opened_text(intended: bool | None) -> str:
    return {None: "", True: " (intended)", False: " (NOT in the intended matrix)"}[intended]


def diff_cells(diff: dict) -> list[CellView]:
    """The ``matrix`` of ``policies-diff --json``, with what decided each
    opened or closed edge before and after from its ``opened`` and ``closed``."""
    changed = {edge_key(c): c for c in list(diff.get("opened", ())) + list(diff.get("closed", ()))}
    out = []
    for d in diff.get("matrix", ()):
        k = edge_key(d)
        before, after, intended = d["before"], d["after"], d.get("intended")
        if after and not before:
            mark, problem = "opened", intended is False
            lines = [_head(d), "OPENED: blocked before, allowed after" + _opened_text(intended)]
        elif before and not after:
            mark, problem = "closed", intended is True
            lines = [_head(d), "CLOSED: allowed before, blocked after"
                     + (" (breaks intended traffic)" if intended else "")]
        else:
            mark, problem = ("allowed" if after else "blocked"), False
            lines = [_head(d), f"unchanged: {_word(after)} before and after"]
        c = changed.get(k)
        if c is not None:
            lines += [f"before: {c['before']}", f"after: {c['after']}"]
        else:
            lines += _explanation(d)
        out.append(CellView(*k, mark=mark, problem=problem, title="\n".join(lines)))
    return out
