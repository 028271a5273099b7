"""Every edge of one step of ``policies-check``, as its JSON gives it: what
the step opened and closed, and each edge's verdict in ``explain``'s words.

The HTML report draws its grids from exactly these entries (it is built
from the same dict as ``--json``), so each cell's mark and the policies its
tooltip names are what the JSON says.

Pure: the analysis' predictions, no client.
"""

from __future__ import annotations

from cluster.policy.analysis import CheckReport, StepResult
from cluster.policy.engine.model import Edge


def _edge(e: Edge) -> dict:
    return {"src": e.src, "dst": e.dst, "port": e.port, "protocol": e.protocol}


def step_cells(report: CheckReport, res: StepResult) -> dict:
    """``opened`` and ``closed``: the edges this step changed against the
    step before it (the first step against the open baseline, where no
    policy applies and everything is allowed); ``edges``: every edge of the
    matrix after the step, predicted and intended, with the verdict's lines
    (the policies that select each side and the rules that allow)."""
    prev = report.steps[res.index - 2].verdicts if res.index > 1 else None
    want = report.profile.intended_after(res.index)
    verdicts = res.verdicts
    opened, closed, edges = [], [], []
    for e in verdicts:
        allowed = verdicts.allowed(e)
        before = True if prev is None else prev.allowed(e)
        if allowed and not before:
            opened.append(_edge(e))
        elif before and not allowed:
            closed.append(_edge(e))
        edges.append({**_edge(e), "predicted": allowed, "intended": want[e],
                      "explanation": verdicts[e].lines()})
    return {"index": res.index, "opened": opened, "closed": closed, "edges": edges}
