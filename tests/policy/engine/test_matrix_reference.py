"""The whole-matrix paths against the algorithm they replaced
(``reference_matrix``): on random clusters built to exercise what grouping
destinations and merging egress rules change (broad namespace-selector
peers, the same peers and ports in many rules, rules open to every peer,
TCP, UDP and SCTP, named ports, several replicas, the node, addresses
outside the pod network, both dataplanes), ``allowed_matrix`` and
``port_ranges`` give exactly the old values in the old order, and
``reachability`` the same bytes (as dicts through json.dumps, and as the
text ``compute_json`` makes); so do the benchmark's generated trees.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import reference_matrix as reference  # beside this file (pytest puts its directory on sys.path)

from cluster.policy.engine import matrix
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import HOST, Endpoint, Port
from cluster.policy.manifests import read_dir
from cluster.policy.reachability import compute, compute_json
from support.cases import seeds

ROOT = Path(__file__).resolve().parents[3]
TEAMS, ENVS = ("a", "b", "c"), ("prod", "dev")
APPS, TIERS = ("web", "db", "api", "cache"), ("front", "back")
PORTS = (Port("http", 8080), Port("dns", 53, "UDP"), Port("dns-tcp", 53), Port("statsd", 8125, "UDP"),
         Port("assoc", 9000, "SCTP"), Port(None, 5432), Port("http", 80, "UDP"))
# Peers and ports drawn from small pools, so that many rules share both.
PEERS = (
    [{"namespaceSelector": {"matchLabels": {"team": "a"}}}],
    [{"namespaceSelector": {"matchLabels": {"team": "b"}}}],
    [{"namespaceSelector": {}}],
    [{"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}}],
    [{"podSelector": {"matchLabels": {"app": "web"}}}],
    [{"podSelector": {}}],
    [{"namespaceSelector": {"matchLabels": {"team": "c"}}, "podSelector": {"matchLabels": {"tier": "front"}}}],
    [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}},
     {"namespaceSelector": {"matchLabels": {"env": "dev"}}}],
    [{"ipBlock": {"cidr": "10.42.0.0/16", "except": ["10.42.1.0/24"]}}],
    [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
    None,  # every peer
)
PORT_RULES = (
    [{"port": 8080}],
    [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    [{"port": "statsd", "protocol": "UDP"}],
    [{"port": "http"}, {"port": "http", "protocol": "UDP"}],
    [{"port": 8000, "endPort": 9000}],
    [{"protocol": "SCTP"}],
    [{"port": 5432}, {"port": 9000, "protocol": "SCTP"}],
    None,  # every port
)


def random_cluster(seed: int):
    rng = random.Random(seed)
    namespaces = {f"ns{i}": {"team": rng.choice(TEAMS), "env": rng.choice(ENVS)}
                  for i in range(rng.randint(3, 8))}
    endpoints = [HOST]
    for ns in namespaces:
        for j in range(rng.randint(1, 6)):
            labels = {k: rng.choice(v) for k, v in (("app", APPS), ("tier", TIERS)) if rng.random() < 0.8}
            ports = tuple(sorted(rng.sample(PORTS, rng.randint(0, 4)), key=str))
            endpoints.append(Endpoint(key=f"{ns}/p{j}", namespace=ns, name=f"p{j}", labels=labels, ports=ports,
                                      kind="debug" if rng.random() < 0.1 else "workload",
                                      replicas=rng.choice((1, 1, 2, 3)),
                                      ip=f"10.42.{rng.randint(0, 2)}.{j + 2}" if rng.random() < 0.7 else None))
    endpoints.append(Endpoint(key="external/api", namespace=None, name="api", kind="external", ip="203.0.113.9",
                              ports=(Port(None, 443),)))
    shared = [(rng.choice(PEERS), rng.choice(PORT_RULES)) for _ in range(4)]
    policies = []
    for k in range(rng.randint(2, 16)):
        ns = rng.choice(list(namespaces))
        spec: dict = {"podSelector": rng.choice(({}, {"matchLabels": {"app": rng.choice(APPS)}},
                                                 {"matchLabels": {"tier": rng.choice(TIERS)}}))}
        for direction, key in (("ingress", "from"), ("egress", "to")):
            if rng.random() < 0.25:
                continue
            rules = []
            for _ in range(rng.randint(0, 3)):
                peers, ports = rng.choice(shared) if rng.random() < 0.6 else (rng.choice(PEERS), rng.choice(PORT_RULES))
                rule = {}
                if peers is not None:
                    rule[key] = peers
                if ports is not None:
                    rule["ports"] = ports
                rules.append(rule)
            spec[direction] = rules
        spec["policyTypes"] = [t for t, d in (("Ingress", "ingress"), ("Egress", "egress"))
                               if d in spec or rng.random() < 0.3] or ["Ingress"]
        policies.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": f"pol{k}", "namespace": ns}, "spec": spec})
    return namespaces, endpoints, policies


@pytest.mark.parametrize("dataplane", [None, "cilium"])
@pytest.mark.parametrize("seed", seeds(40, quick=16))
def test_the_matrix_is_the_reference_s_on_random_clusters(seed, dataplane):
    namespaces, endpoints, policies = random_cluster(seed)
    engine = Engine(namespaces, policies, dataplane=dataplane)
    assert list(matrix.allowed_matrix(engine, endpoints).items()) == \
        list(reference.allowed_matrix(engine, endpoints).items())
    assert list(matrix.port_ranges(engine, endpoints)) == list(reference.port_ranges(engine, endpoints))


@pytest.mark.parametrize("seed", seeds(40, quick=12))
def test_reachability_output_is_the_reference_s_byte_for_byte(seed):
    namespaces, endpoints, policies = random_cluster(seed)
    pods = [ep for ep in endpoints if ep.is_pod]  # what a tree of manifests holds
    rs = SimpleNamespace(namespaces=namespaces, endpoints=pods, compiled=[compile_policy(p) for p in policies],
                         pod_keys={ep.key for ep in pods if ep.replicas == 1 and ep.name.endswith("0")})
    for mode in ("workloads", "pods"):
        want = json.dumps(reference.compute(rs, mode))
        assert json.dumps(compute(rs, mode)) == want
        assert compute_json(rs, mode) == want  # what `dashi reachability` prints, made as text


def test_random_clusters_share_rules_and_allow_traffic():
    """The generator is not trivial: egress rules merge, and a good share of
    the sources reach a good share of the destinations on every protocol."""
    merged = allowed = 0
    protocols = set()
    for seed in range(40):
        namespaces, endpoints, policies = random_cluster(seed)
        engine = Engine(namespaces, policies)
        b = matrix._Bitsets(engine, endpoints)
        rules = sum(len(p.egress or ()) for p in engine.policies)
        merged += rules - len(b.rules)
        for _, protocol, segments in matrix.port_ranges(engine, endpoints):
            protocols.add(protocol)
            allowed += sum(bin(bits).count("1") for _, _, bits in segments)
    assert merged > 50 and allowed > 5000 and protocols == {"TCP", "UDP", "SCTP"}, (merged, allowed, protocols)


@pytest.fixture(scope="module")
def bench_engine():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_engine
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_engine


@pytest.mark.parametrize("shape", ["project", "broad"])
def test_benchmark_trees_give_the_reference_s_bytes(bench_engine, tmp_path, shape):
    bench_engine.write_manifests(tmp_path, 400, 100, shape=shape)
    rs = read_dir(tmp_path)
    for mode in ("workloads", "pods"):
        got = json.dumps(compute(rs, mode))
        assert got == json.dumps(reference.compute(rs, mode)) == compute_json(rs, mode)
        assert len(json.loads(got)["ranges"]) > 300
