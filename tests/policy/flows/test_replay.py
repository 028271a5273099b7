"""Observed flows replayed against the dashi profile's steps: by default no
step cuts observed traffic, and the exceptions are the ones listed."""

import shutil
from pathlib import Path

import pytest

from cluster import yamlio
from cluster.errors import ManifestError
from cluster.policy.flows.model import Flow, Peer, labels_of
from cluster.policy.flows.recording import Gatherer
from cluster.policy.flows.replay import check_lines, check_to_dict, draft_matrix, observe, parse_accept, replay
from cluster.policy.profile import MANIFESTS_DIR, load_profile

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flows"


@pytest.fixture(scope="module")
def dashi():
    return load_profile("dashi")


def pod(profile, key: str, suffix: str = "-5d8b-x1") -> Peer:
    ep = profile.endpoint(key)
    return Peer("pod", ep.namespace, ep.name + suffix, labels_of(dict(ep.labels)))


def gathered(profile, *flows: tuple, t0: float = 1_765_137_600.0):
    """Flows as (src key or Peer, dst key or Peer, port, protocol, count)."""
    g = Gatherer()
    for i, (src, dst, port, proto, n) in enumerate(flows):
        for j in range(n):
            g.add(Flow(src if isinstance(src, Peer) else pod(profile, src),
                       dst if isinstance(dst, Peer) else pod(profile, dst), port, proto, time=t0 + i + j))
    return g.result({"source": "test"})


def run(profile, *flows, accept=()):
    obs = observe(profile, gathered(profile, *flows))
    return replay(profile, obs, [parse_accept(a, profile) for a in accept])


def test_intended_traffic_is_cut_only_in_windows(dashi):
    check = run(dashi, ("dashi-data/flow-run", "dashi-catalog/stac-fastapi", 8080, "TCP", 3),
                ("dashi-data/flow-run", "kube-system/kube-dns", 53, "UDP", 5),
                ("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP", 2))
    assert check.ok and not check.failures and not check.uncovered
    windows = {(str(c.edge), c.step, c.reopened_by, c.length) for c in check.windows}
    assert windows == {
        ("dashi-data/flow-run -> kube-system/kube-dns 53/UDP", "default-deny", "allow-dns", 1),
        ("dashi-data/flow-run -> dashi-catalog/stac-fastapi 8080/TCP", "default-deny", "allow-catalog", 3),
        ("dashi-catalog/stac-fastapi -> dashi-catalog/pgstac 5432/TCP", "default-deny", "allow-catalog-internal", 4),
    }
    assert check_lines(check)[-1].startswith("flows-check: OK")


def test_an_unlisted_edge_is_cut_by_default_deny_naming_the_policies(dashi):
    check = run(dashi, ("dashi-serving/titiler", "dashi-catalog/stac-fastapi", 8080, "TCP", 42))
    [cut] = check.failures
    assert (cut.step, cut.index, cut.observed.count, cut.intended_step) == ("default-deny", 1, 42, None)
    assert cut.why == [
        "egress of dashi-serving/titiler: BLOCKED: selected by dashi-serving/default-deny; no rule allows "
        "dashi-catalog/stac-fastapi on 8080/TCP",
        "ingress of dashi-catalog/stac-fastapi: BLOCKED: selected by dashi-catalog/default-deny; no rule allows "
        "dashi-serving/titiler on 8080/TCP"]
    assert [oe.edge for oe, still in check.uncovered] == [cut.edge]
    text = "\n".join(check_lines(check))
    assert '--accept-blocking "dashi-serving/titiler dashi-catalog/stac-fastapi 8080/TCP"' in text
    assert text.splitlines()[-1].startswith("flows-check: FAIL: 1 observed edge(s) would be cut outside the intent "
                                            "(by default-deny)")
    data = check_to_dict(check)
    assert data["ok"] is False and data["steps"][0]["cuts"][0]["failure"] is True


def test_accept_blocking_and_the_matrix_blocked_list(dashi, tmp_path):
    edge = ("dashi-serving/titiler", "dashi-catalog/stac-fastapi", 8080, "TCP", 4)
    for accept in ("dashi-serving/titiler dashi-catalog/stac-fastapi 8080/TCP",
                   "dashi-serving/* -> dashi-catalog/stac-fastapi 8080"):
        check = run(dashi, edge, accept=[accept])
        assert check.ok and check.cuts[0].acknowledged == "accepted with --accept-blocking"
    prof = tmp_path / "dashi"
    shutil.copytree(MANIFESTS_DIR / "dashi", prof)
    matrix = yamlio.load((prof / "matrix.yaml").read_text())
    matrix["blocked"] = [{"from": "dashi-serving/titiler", "to": "dashi-catalog/stac-fastapi", "port": "http",
                          "reason": "tiles must not read the catalog"}]
    (prof / "matrix.yaml").write_text(yamlio.dump(matrix))
    p = load_profile(prof)
    check = run(p, edge)
    assert check.ok and check.cuts[0].acknowledged == "tiles must not read the catalog"
    # An edge cannot be both intended and blocked.
    matrix["blocked"][0].update({"from": "dashi-data/flow-run"})
    (prof / "matrix.yaml").write_text(yamlio.dump(matrix))
    with pytest.raises(ManifestError, match=r"blocked\[0\]: dashi-data/flow-run -> dashi-catalog/stac-fastapi "
                                            r"8080/TCP is also in allowed"):
        load_profile(prof)


@pytest.mark.parametrize("text, why", [
    ("a b", "expected"), ("dashi-x/* dashi-catalog/stac-fastapi 80", "matches no endpoint"),
    ("dashi-serving/titiler dashi-catalog/stac-fastapi 80/ICMP", "protocol"),
])
def test_bad_accept_blocking(dashi, text, why):
    with pytest.raises(ManifestError, match=why):
        parse_accept(text, dashi)


def test_what_cannot_be_placed_is_counted_with_the_reason(dashi):
    stranger = Peer("pod", "shop", "api-1", labels_of({"app": "api"}))
    unlabelled = Peer("pod", "dashi-serving", "something-else-1", labels_of({"app": "other"}))
    check = run(dashi, (stranger, "dashi-catalog/stac-fastapi", 8080, "TCP", 2),
                ("dashi-data/flow-run", Peer("world", ip="203.0.113.9"), 443, "TCP", 3),
                (unlabelled, "dashi-catalog/stac-fastapi", 8080, "TCP", 1),
                ("dashi-data/flow-run", "dashi-catalog/stac-fastapi", None, "ICMPv4", 1),
                (Peer("host"), "dashi-catalog/stac-fastapi", 8080, "TCP", 7),
                ("dashi-data/flow-run", "dashi-catalog/stac-fastapi", 8080, "TCP", 1))
    obs = check.observation
    assert (obs.total, obs.placed, obs.from_node, obs.unplaced) == (15, 1, 7, 7)
    assert {(n.why, n.count) for n in obs.not_placed} == {
        ("namespace shop is not in profile dashi", 2), ("outside the cluster (world)", 3),
        ("pod dashi-serving/something-else-1 in dashi-serving matches no endpoint of profile dashi", 1),
        ("protocol ICMPv4 (NetworkPolicy has rules for TCP, UDP and SCTP only)", 1)}


def test_debug_pods_calico_aggregates_and_undeclared_ports(dashi):
    debug = Peer("pod", "dashi-serving", "debug")
    aggregated = Peer("pod", "dashi-data", "flow-run-5859b7f755-*")  # Calico without labels
    check = run(dashi, (debug, "dashi-catalog/stac-fastapi", 8080, "TCP", 1),
                (aggregated, "dashi-catalog/stac-fastapi", 8080, "TCP", 2),
                ("dashi-data/prefect-worker", "dashi-catalog/stac-fastapi", 4317, "TCP", 1))
    edges = {str(e) for e in check.observation.edges}
    assert edges == {"dashi-serving/debug -> dashi-catalog/stac-fastapi 8080/TCP",
                     "dashi-data/flow-run -> dashi-catalog/stac-fastapi 8080/TCP",
                     "dashi-data/prefect-worker -> dashi-catalog/stac-fastapi 4317/TCP"}
    # A port the destination does not declare is judged by the engine all the same.
    assert {str(c.edge) for c in check.failures} == {
        "dashi-serving/debug -> dashi-catalog/stac-fastapi 8080/TCP",
        "dashi-data/prefect-worker -> dashi-catalog/stac-fastapi 4317/TCP"}


def test_the_node_running_the_api_server_is_the_api_endpoint_as_a_destination(dashi):
    node = Peer("host-apiserver", ip="10.44.0.1")
    check = run(dashi, ("dashi-data/prefect-worker", node, 6443, "TCP", 2), (node, "dashi-data/flow-run", 9100, "TCP", 1))
    assert [str(e) for e in check.observation.edges] == ["dashi-data/prefect-worker -> external/kube-api 6443/TCP"]
    assert check.observation.from_node == 1
    assert [(c.step, c.reopened_by) for c in check.windows] == [("default-deny", "allow-kube-api")]


def test_the_draft_lists_unlisted_edges_for_review(dashi):
    obs = observe(dashi, gathered(dashi, ("dashi-serving/titiler", "dashi-catalog/stac-fastapi", 8080, "TCP", 5),
                                  ("dashi-data/flow-run", "dashi-catalog/stac-fastapi", 8080, "TCP", 1),
                                  ("dashi-data/prefect-worker", "dashi-catalog/stac-fastapi", 4317, "TCP", 1)))
    text = draft_matrix(dashi, obs)
    doc = yamlio.load(text)
    assert doc["allowed"] == [
        {"from": "dashi-data/prefect-worker", "to": "dashi-catalog/stac-fastapi", "port": 4317, "protocol": "TCP",
         "step": "TODO", "reason": "observed: 1 flow(s), first 2025-12-07T20:00:02Z, last 2025-12-07T20:00:02Z"},
        {"from": "dashi-serving/titiler", "to": "dashi-catalog/stac-fastapi", "port": "http", "protocol": "TCP",
         "step": "TODO", "reason": "observed: 5 flow(s), first 2025-12-07T20:00:00Z, last 2025-12-07T20:00:04Z"}]
    assert "2 observed edge(s) the intended matrix of profile dashi does not list (1 it does)" in text
    assert "# not a port the destination declares" in text


def test_real_files_replay_alike(dashi):
    from cluster.policy.flows.formats import FlowFile

    for name in ("hubble-observe.jsonl", "calico-flows.log", "goldmane-flows.jsonl"):
        g = Gatherer()
        for f in FlowFile(FIXTURES / name):
            g.add(f)
        check = replay(dashi, observe(dashi, g.result()))
        cut = {str(c.edge) for c in check.failures}
        assert cut == {"dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP"}, name


@pytest.mark.parametrize("unlisted, why", [
    ({"from": "dashi-serving/titiler", "to": "dashi-catalog/stac-fastapi", "port": 9999},
     r"traffic.unlisted\[0\]: dashi-catalog/stac-fastapi has no port 9999/TCP"),
    ({"from": "dashi-data/flow-run", "to": "dashi-catalog/stac-fastapi", "port": "http"},
     r"traffic.unlisted\[0\]: dashi-data/flow-run -> dashi-catalog/stac-fastapi 8080/TCP is in the intended matrix"),
    ({"from": "dashi-*/*", "to": "dashi-catalog/stac-fastapi", "port": "http"},
     r"traffic.unlisted\[0\]: from and to each name one pod endpoint"),
    ({"from": "dashi-serving/titiler", "to": "dashi-catalog/stac-fastapi"}, r"traffic.unlisted\[0\]"),
])
def test_bad_unlisted_edges_name_the_file_and_the_entry(tmp_path, unlisted, why):
    prof = tmp_path / "dashi"
    shutil.copytree(MANIFESTS_DIR / "dashi", prof)
    spec = yamlio.load((prof / "profile.yaml").read_text())
    spec["traffic"]["unlisted"] = [unlisted]
    (prof / "profile.yaml").write_text(yamlio.dump(spec))
    with pytest.raises(ManifestError, match=why) as e:
        load_profile(prof)
    assert str(e.value).startswith(str(prof / "profile.yaml"))
