"""Expected vs observed rows, the evidence, and the three renderings."""

from __future__ import annotations

import io
import json

from rich.console import Console

from cluster.live.observe.discovery import Target
from cluster.live.observe.probe import ProbeResult
from cluster.live.observe.prober import Observation
from cluster.live.observe.report import EdgeRow, MatrixReport, diagnosis, evidence, render, to_json, to_markdown
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import Edge, Endpoint, Port

SRC = Endpoint("team/client", "team", "client", labels={"app": "client"})
DST = Endpoint("team/db", "team", "db", labels={"app": "db"}, ports=(Port("pg", 5432),))
DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": "team"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
EDGE = Edge(SRC.key, DST.key, 5432)


def verdict(policies):
    return Engine({"team": {}}, policies).evaluate(SRC, DST, 5432)


def obs(kind, attempts=1):
    return Observation(EDGE, ProbeResult(kind == "connected", kind, f"said {kind}"), attempts,
                       Target("team", "client-abc", "10.42.0.5", 5432), 0.0 if attempts == 1 else 2.0)


def row(expected_open, kind, intended=None):
    v = verdict([] if expected_open else [DENY])
    return EdgeRow(EDGE, v.allowed, v, intended, "", obs(kind) if kind else None)


def test_status_truth_table():
    # Default: a probe that agrees with the engine, no intent check, is "ok".
    cases = {
        (True, "connected", None): ["ok"],
        (False, "timeout", None): ["ok"],
        (False, "refused", None): ["ok"],  # rejected by a policy (kube-router REJECTs)
        (True, "unprobed", None): ["unprobed"],
        (False, "unprobed", None): ["unprobed"],
        (None, None, None): ["ok"],  # dry run: nothing observed
        # exceptions
        (False, "connected", None): ["mismatch"],
        (True, "refused", None): ["mismatch"],
        (True, "timeout", None): ["mismatch"],
        (True, "dns", None): ["error"],
        (False, "other", None): ["error"],
        (True, "connected", False): ["unintended"],
        (False, "connected", True): ["mismatch", "unintended"],
        (False, "unprobed", True): ["unintended"],
    }
    got = {}
    for (exp, kind, intended) in cases:
        r = row(bool(exp), kind, intended)
        got[(exp, kind, intended)] = r.problems or [r.status]
    assert got == cases


def test_evidence_names_edge_expected_observed_kind_and_policies():
    r = row(False, "connected", intended=False)
    r.intent = "not in the intended matrix"
    assert evidence(r) == [
        "team/client -> team/db 5432/TCP: mismatch",
        "  intended: blocked (not in the intended matrix)",
        "  predicted (engine): blocked",
        "  observed: allowed - connected (allowed) from pod team/client-abc to 10.42.0.5:5432; 1 probe(s) over 0.0 s",
        "  probe said: said connected",
        "  engine:",
        "    egress of team/client: BLOCKED: selected by team/default-deny; no rule allows team/db on 5432/TCP",
        "    ingress of team/db: BLOCKED: selected by team/default-deny; no rule allows team/client on 5432/TCP",
    ]


def report(rows, probed=True):
    return MatrixReport("lab", "k3d-lab", "after default-deny (1/3)", rows, probed, 1.234, 1.0, 3, 8,
                        ["a note"], generated="2025-01-01T00:00:00Z")


def test_summary_counts():
    rep = report([row(False, "timeout", False), row(False, "connected", False), row(True, "unprobed", True)])
    assert rep.summary() == {"edges": 3, "ok": 1, "mismatch": 1, "unintended": 0, "error": 0, "unprobed": 1,
                             "predicted_allowed": 1, "observed_allowed": 1, "probe_seconds": 1.23, "probes": 3,
                             "execs": 0, "matched_seconds": None}
    assert not rep.ok and [r.kind for r in rep.problem_rows] == ["connected"]


def test_json_carries_the_evidence():
    data = to_json(report([row(False, "connected", False)]))
    assert json.loads(json.dumps(data)) == data
    (edge,) = data["edges"]
    assert {k: edge[k] for k in ("src", "dst", "port", "protocol", "intended", "predicted", "observed", "kind",
                                 "attempts", "status", "problems", "target")} == {
        "src": "team/client", "dst": "team/db", "port": 5432, "protocol": "TCP", "intended": False,
        "predicted": False, "observed": True, "kind": "connected", "attempts": 1, "status": "mismatch",
        "problems": ["mismatch"], "target": {"pod": "team/client-abc", "address": "10.42.0.5:5432"}}
    assert edge["explanation"][0] == "team/client -> team/db 5432/TCP: BLOCKED"
    assert (data["ok"], data["summary"]["mismatch"], data["notes"]) == (False, 1, ["a note"])


def test_markdown_has_verdict_differences_and_every_edge():
    md = to_markdown(report([row(False, "connected", False), row(False, "timeout", False)]))
    assert md.startswith("# Network policy smoke test: FAIL\n")
    assert "## Differences" in md and "team/client -> team/db 5432/TCP: mismatch" in md
    table = [line for line in md.splitlines() if line.startswith("| team/client")]
    assert table == ["| team/client | team/db | 5432/TCP | blocked | blocked | allowed | connected | **mismatch** |",
                     "| team/client | team/db | 5432/TCP | blocked | blocked | blocked | timeout | ok |"]
    assert to_markdown(report([row(False, "timeout")])).startswith("# Network policy smoke test: PASS\n")


def render_text(rep, width=160):
    buf = io.StringIO()
    render(rep, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


def test_render_shows_both_tables_the_key_and_the_evidence():
    text = render_text(report([row(False, "connected", False)]))
    assert "predicted (engine)" in text and "observed (live probes)" in text
    assert " 1 team/db 5432/TCP" in text
    assert "1 edge(s) differ:" in text and "team/client -> team/db 5432/TCP: mismatch" in text
    assert "note: a note" in text


def test_render_without_probes_shows_the_prediction_only():
    text = render_text(report([row(False, None, False)], probed=False))
    assert "predicted (engine)" in text and "observed (live probes)" not in text and "edge(s) differ" not in text


def test_diagnosis_spots_a_cni_that_enforces_nothing():
    assert diagnosis(report([row(False, "connected"), row(False, "connected"), row(True, "connected")])) \
        .startswith("every edge the policies block was observed open")
    assert diagnosis(report([row(True, "timeout"), row(False, "timeout")])) \
        .startswith("every edge the policies allow was observed dropped")
    assert diagnosis(report([row(False, "connected"), row(False, "timeout")])) is None


def test_a_report_without_an_intent_check_fails():
    rep = report([row(False, "timeout")])
    rep.intent_checked = False
    assert not rep.ok and rep.problem_rows == []
    assert to_json(rep)["intent_checked"] is False
    assert to_markdown(rep).startswith("# Network policy smoke test: FAIL\n")
