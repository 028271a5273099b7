"""Randomized: on random clusters the bitset paths (``allowed_matrix``,
``port_ranges``) and ``Predictions`` agree with ``evaluate``; the
Predictions of every shipped profile step equal ``predict``; the generator
is not trivial.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.matrix import source_ranges
from cluster.policy.engine.model import Edge, Endpoint, Port
from cluster.policy.engine.predictions import Predictions, predict, predict_matrix
from cluster.policy.profile import load_profile
from support.engine_builders import (ABSENT, assert_paths_agree, assert_ranges_agree, ip_peer, labels, make_namespaces,
                             make_pods, netpol, ns_peer, ns_pod_peer, pod_peer, port, raw_policy, req)
from support.cases import seeds


POD_VOCAB = {"app": ("web", "db", "api"), "tier": ("front", "back"), "pod": ("a", "b")}
NS_VOCAB = {"env": ("prod", "dev"), "team": ("red", "blue")}
NAMED = {"http": [(80, "TCP"), (8080, "TCP"), (80, "UDP")],
         "dns": [(53, "UDP"), (53, "TCP")],
         "metrics": [(9090, "TCP"), (9090, "SCTP")]}
UNNAMED = [(81, "TCP"), (443, "TCP"), (5000, "UDP"), (80, "SCTP")]
CIDRS = ["10.42.0.0/16", "10.42.1.0/24", "0.0.0.0/0", "203.0.113.0/24", "10.42.0.0/23", "10.42.2.4/30"]
EXCEPT_POOL = ["10.42.0.0/25", "10.42.1.7/32", "10.42.0.3/32", "203.0.113.128/25", "10.42.2.0/24",
               "10.42.1.0/26", "10.42.2.5/32"]
PORT_NUMBERS = [53, 80, 81, 443, 5000, 8080, 9090]


def _rand_selector(rng: random.Random, vocab: dict) -> dict:
    if rng.random() < 0.3:
        return {}
    out: dict = {}
    ml = {k: rng.choice(v) for k, v in vocab.items() if rng.random() < 0.35}
    if ml:
        out["matchLabels"] = ml
    reqs = []
    for _ in range(rng.randint(0, 2)):
        key = rng.choice(list(vocab) + ["missing"])
        op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
        values = vocab.get(key, ("v1", "v2"))
        reqs.append(req(key, op, *rng.sample(values, rng.randint(1, len(values))))
                    if op in ("In", "NotIn") else req(key, op))
    if reqs:
        out["matchExpressions"] = reqs
    return out


def _rand_peer(rng: random.Random) -> dict:
    kind = rng.choice(["pod", "ns", "both", "ip", "ip"])
    if kind == "pod":
        return pod_peer(_rand_selector(rng, POD_VOCAB))
    if kind == "ns":
        return ns_peer(_rand_selector(rng, NS_VOCAB))
    if kind == "both":
        return ns_pod_peer(_rand_selector(rng, NS_VOCAB), _rand_selector(rng, POD_VOCAB))
    cidr = rng.choice(CIDRS)
    net = ipaddress.ip_network(cidr)
    inside = [e for e in EXCEPT_POOL if ipaddress.ip_network(e).subnet_of(net)
              and ipaddress.ip_network(e).prefixlen > net.prefixlen]
    excepts = rng.sample(inside, rng.randint(0, min(2, len(inside)))) if inside else []
    return ip_peer(cidr, *excepts)


def _rand_port(rng: random.Random) -> dict:
    kind = rng.choice(["proto", "number", "range", "named", "named"])
    proto = rng.choice([None, "TCP", "UDP", "SCTP"])
    if kind == "proto":
        return port(None, proto or "TCP")
    if kind == "number":
        return port(rng.choice(PORT_NUMBERS), proto)
    if kind == "range":
        start = rng.choice(PORT_NUMBERS)
        return port(start, proto, start + rng.choice([0, 1, 10, 1000, 8000]))
    return port(rng.choice(list(NAMED) + ["nope"]), proto)


def _rand_rules(rng: random.Random, peer_key: str):
    choice = rng.random()
    if choice < 0.15:
        return ABSENT
    if choice < 0.3:
        return []
    rules = []
    for _ in range(rng.randint(1, 3)):
        rule: dict = {}
        r = rng.random()
        if r < 0.2:
            rule[peer_key] = []
        elif r < 0.85:
            rule[peer_key] = [_rand_peer(rng) for _ in range(rng.randint(1, 3))]
        r = rng.random()
        if r < 0.15:
            rule["ports"] = []
        elif r < 0.75:
            rule["ports"] = [_rand_port(rng) for _ in range(rng.randint(1, 3))]
        rules.append(rule)
    return rules


def random_cluster(seed: int):
    rng = random.Random(seed)
    ns_names = rng.sample(["x", "y", "z"], rng.randint(2, 3))
    namespaces = {ns: {k: rng.choice(v) for k, v in NS_VOCAB.items() if rng.random() < 0.5}
                  for ns in ns_names}
    endpoints: list[Endpoint] = []
    for ni, ns in enumerate(ns_names):
        for i in range(rng.randint(2, 4)):
            ports = []
            for name, variants in NAMED.items():
                if rng.random() < 0.6:
                    number, proto = rng.choice(variants)
                    ports.append(Port(name, number, proto))
            for number, proto in UNNAMED:
                if rng.random() < 0.3 and all((p.port, p.protocol) != (number, proto) for p in ports):
                    ports.append(Port(None, number, proto))
            kind = "debug" if rng.random() < 0.1 else "workload"
            lbls = {} if kind == "debug" else {k: rng.choice(v) for k, v in POD_VOCAB.items()
                                                if rng.random() < 0.6}
            ip = f"10.42.{ni}.{i + 2}" if rng.random() < 0.75 else None
            endpoints.append(Endpoint(key=f"{ns}/p{i}", namespace=ns, name=f"p{i}", kind=kind,
                                      labels=lbls, ports=tuple(ports), ip=ip))
    endpoints.append(Endpoint(key="kube-system/dns", namespace="kube-system", name="dns", kind="cluster",
                              labels={"app": "dns"}, ports=(Port("dns", 53, "UDP"), Port("dns-tcp", 53, "TCP")),
                              ip="10.42.2.5"))
    for j in range(rng.randint(1, 2)):
        ip = rng.choice(["203.0.113.9", "203.0.113.200", "198.51.100.4", "10.42.1.7"])
        endpoints.append(Endpoint(key=f"external/e{j}", namespace=None, name=f"e{j}", kind="external", ip=ip,
                                  ports=(Port(None, 443, "TCP"), Port(None, 53, "UDP"))))
    policies = []
    for k in range(rng.randint(1, 6)):
        spec: dict = {"podSelector": _rand_selector(rng, POD_VOCAB)}
        ingress, egress = _rand_rules(rng, "from"), _rand_rules(rng, "to")
        if ingress is not ABSENT:
            spec["ingress"] = ingress
        if egress is not ABSENT:
            spec["egress"] = egress
        types = rng.choice([ABSENT, ABSENT, [], ["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        if types is not ABSENT:
            spec["policyTypes"] = types
        policies.append(raw_policy(rng.choice(ns_names), f"p{k}", spec))
    return namespaces, endpoints, policies


@pytest.mark.parametrize("seed", seeds(30, quick=12))
def test_random_clusters_bitset_path_agrees_with_evaluate(seed):
    namespaces, endpoints, policies = random_cluster(seed)
    for p in policies:
        compile_policy(p, f"random-{seed}.yaml")  # the generator only writes valid policies
    engine = Engine(namespaces, policies)
    assert_paths_agree(engine, endpoints)
    assert_ranges_agree(engine, endpoints)


@pytest.mark.parametrize("seed", range(5))
def test_predictions_give_each_edge_the_verdict_evaluate_gives(seed):
    """Predictions (what policies-check uses): the allowed bit from the
    bitset matrix and, when asked, the Verdict itself, for every edge,
    ports shared by number and protocol included."""
    namespaces, endpoints, policies = random_cluster(seed)
    engine = Engine(namespaces, policies)
    edges = [Edge(s.key, d.key, p.port, p.protocol) for s in endpoints for d in endpoints for p in d.ports]
    got = Predictions(engine, endpoints, edges)
    by_key = {ep.key: ep for ep in endpoints}
    assert list(got) == list(dict.fromkeys(edges)) and len(got) == len(set(edges))
    for e in edges:
        want = engine.evaluate(by_key[e.src], by_key[e.dst], e.port, e.protocol)
        assert (got.allowed(e), got[e]) == (want.allowed, want), e
    assert Edge("nowhere/x", "x/a", 80) not in got
    with pytest.raises(KeyError):
        got[Edge("nowhere/x", "x/a", 80)]


@pytest.mark.parametrize("cni", [None, "k3s", "cilium"])
@pytest.mark.parametrize("name", ["dashi", "environments"])
def test_predictions_of_every_step_equal_predict(name, cni):
    profile = load_profile(name).for_cni(cni)
    for k in range(len(profile.steps) + 1):
        policies = profile.policies_through(k)
        want, got = predict(profile, policies), predict_matrix(profile, policies)
        assert list(got) == list(want)
        assert {e: got.allowed(e) for e in got} == {e: v.allowed for e, v in want.items()}
        assert dict(got.items()) == want


def test_port_ranges_are_exact_for_ranges_named_ports_and_protocols():
    """One destination, two policies: the ranges are the union of what both sides allow."""
    pods = make_pods()
    engine = Engine(make_namespaces(), [
        netpol("x", "in", labels(pod="a"), ingress=[
            {"ports": [port(1000, end=2000), port("serve-80-udp", "UDP"), port(None, "SCTP")]}]),
        netpol("x", "out", labels(pod="b"), egress=[{"ports": [port(1500, end=3000)]}]),
    ])
    got = {}
    for d, protocol, segments in engine.port_ranges(pods):
        for bits, ranges in source_ranges(segments):
            for s in range(len(pods)):
                if bits >> s & 1:
                    assert (pods[s].key, pods[d].key, protocol) not in got
                    got[(pods[s].key, pods[d].key, protocol)] = ranges
    assert got[("y/a", "x/a", "TCP")] == [(1000, 2000)]
    assert got[("x/b", "x/a", "TCP")] == [(1500, 2000)]  # egress of x/b AND ingress of x/a
    assert got[("y/a", "x/a", "UDP")] == [(80, 80)]  # the named port, resolved on x/a
    assert got[("y/a", "x/a", "SCTP")] == [(1, 65535)]
    assert got[("x/b", "y/c", "TCP")] == [(1500, 3000)]
    assert ("x/b", "y/c", "UDP") not in got
    assert got[("y/a", "y/c", "UDP")] == [(1, 65535)]
    assert_ranges_agree(engine, pods)


def test_random_clusters_are_not_trivial():
    """The generator exercises both outcomes, isolation, named ports and ipBlocks."""
    allowed = blocked = 0
    features = set()
    for seed in range(30):
        namespaces, endpoints, policies = random_cluster(seed)
        engine = Engine(namespaces, policies)
        for src in endpoints:
            for dst in endpoints:
                for p in dst.ports:
                    if engine.evaluate(src, dst, p.port, p.protocol).allowed:
                        allowed += 1
                    else:
                        blocked += 1
        text = repr(policies)
        features |= {f for f in ("ipBlock", "endPort", "'http'", "matchExpressions", "NotIn", "except")
                     if f in text}
    assert allowed > 1000 and blocked > 1000, (allowed, blocked)
    assert features == {"ipBlock", "endPort", "'http'", "matchExpressions", "NotIn", "except"}
