"""Randomized: on random clusters with ClusterNetworkPolicies of both tiers
and NetworkPolicies together, the whole-matrix paths (``allowed_matrix``,
``port_ranges``, through ``tiers``) agree with ``evaluate`` on every edge,
for the API as written and for Cilium's dataplane; the generator is not
trivial (every action, both tiers, ties, Pass into a NetworkPolicy, named
ports, ranges, networks, a label Cilium's identities leave out)."""

from __future__ import annotations

import random

import pytest
from support.engine_builders import (
    assert_paths_agree,
    assert_ranges_agree,
    cnp,
    cnp_rule,
    named_port,
    namespaces_peer,
    netpol,
    networks_peer,
    ns_peer,
    ns_subject,
    pod_peer,
    pods_peer,
    pods_subject,
    port,
    proto,
    req,
)

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import Endpoint, Port
from support.cases import seeds

# pod-template-hash: a label Cilium leaves out of identities (selectors on it match no pod there).
POD_VOCAB = {"app": ("web", "db"), "tier": ("front", "back"), "pod-template-hash": ("h1", "h2")}
NS_VOCAB = {"env": ("prod", "dev")}
PORTS = [Port("web", 80, "TCP"), Port(None, 8080, "TCP"), Port("mdns", 5353, "UDP"), Port("dns", 53, "UDP"),
         Port("sctp", 9003, "SCTP")]
NETWORKS = ["10.42.0.0/16", "10.42.1.0/24", "0.0.0.0/0", "203.0.113.0/24", "10.42.0.4/32"]


def _selector(rng: random.Random, vocab: dict) -> dict:
    if rng.random() < 0.35:
        return {}
    key = rng.choice(list(vocab))
    if rng.random() < 0.7:
        return {"matchLabels": {key: rng.choice(vocab[key])}}
    return {"matchExpressions": [req(key, rng.choice(["NotIn", "In"]), rng.choice(vocab[key]))]}


def _cnp_peer(rng: random.Random, egress: bool) -> dict:
    kind = rng.choice(["ns", "pods", "pods", "net"] if egress else ["ns", "pods"])
    if kind == "ns":
        return namespaces_peer(_selector(rng, NS_VOCAB))
    if kind == "pods":
        return pods_peer(_selector(rng, NS_VOCAB), _selector(rng, POD_VOCAB))
    return networks_peer(*rng.sample(NETWORKS, rng.randint(1, 2)))


def _cnp_protocols(rng: random.Random, named_ok: bool) -> list[dict]:
    out = []
    for _ in range(rng.randint(0, 2)):
        choice = rng.random()
        if choice < 0.2 and named_ok:
            out.append(named_port(rng.choice(["web", "mdns", "nope"])))
        elif choice < 0.5:
            start = rng.choice([53, 80, 1000])
            out.append(proto(rng.choice(["TCP", "UDP", "SCTP"]), start, start + rng.choice([1, 5352, 9000])))
        else:
            out.append(proto(rng.choice(["TCP", "UDP", "SCTP"]), rng.choice([53, 80, 8080, 5353, 9003])))
    return out


def _cnp(rng: random.Random, k: int) -> dict:
    subject = ns_subject(_selector(rng, NS_VOCAB)) if rng.random() < 0.5 else \
        pods_subject(_selector(rng, NS_VOCAB), _selector(rng, POD_VOCAB))
    rules = {}
    for direction in ("ingress", "egress"):
        if rng.random() < 0.3:
            continue
        out = []
        for _ in range(rng.randint(1, 3)):
            peers = [_cnp_peer(rng, direction == "egress") for _ in range(rng.randint(1, 2))]
            named_ok = not any("networks" in p for p in peers)
            out.append(cnp_rule(rng.choice(["Accept", "Deny", "Pass"]), peers,
                                *_cnp_protocols(rng, named_ok), direction="from" if direction == "ingress" else "to"))
        rules[direction] = out
    # Few priorities, so that ties happen.
    return cnp(f"c{k}", rng.choice(["Admin", "Baseline"]), rng.choice([1, 5, 5, 9]), subject, **rules)


def _netpol(rng: random.Random, ns: str, k: int) -> dict:
    def rules(key: str):
        return [{key: [rng.choice([pod_peer(_selector(rng, POD_VOCAB)), ns_peer(_selector(rng, NS_VOCAB))])],
                 **({"ports": [port(rng.choice([80, "web", 5353]), rng.choice(["TCP", "UDP"]))]}
                    if rng.random() < 0.5 else {})} for _ in range(rng.randint(0, 2))]
    kinds = rng.choice([("ingress",), ("egress",), ("ingress", "egress")])
    return netpol(ns, f"n{k}", _selector(rng, POD_VOCAB),
                  **{d: rules("from" if d == "ingress" else "to") for d in kinds})


def random_world(seed: int):
    rng = random.Random(seed)
    names = ["x", "y", "z"]
    namespaces = {ns: {k: rng.choice(v) for k, v in NS_VOCAB.items() if rng.random() < 0.7} for ns in names}
    endpoints = []
    for ni, ns in enumerate(names):
        for i in range(rng.randint(1, 3)):
            lbls = {k: rng.choice(v) for k, v in POD_VOCAB.items() if rng.random() < 0.6}
            ports = tuple(p for p in PORTS if rng.random() < 0.7) or (PORTS[0],)
            endpoints.append(Endpoint(key=f"{ns}/p{i}", namespace=ns, name=f"p{i}", labels=lbls, ports=ports,
                                      ip=f"10.42.{ni}.{i + 2}" if rng.random() < 0.8 else None))
    endpoints.append(Endpoint(key="external/api", namespace=None, name="api", kind="external", ip="203.0.113.9",
                              ports=(Port(None, 6443, "TCP"),), address_service="default/kubernetes"))
    policies = [_cnp(rng, k) for k in range(rng.randint(1, 5))]
    policies += [_netpol(rng, rng.choice(names), k) for k in range(rng.randint(1, 4))]
    return namespaces, endpoints, policies


@pytest.mark.parametrize("dataplane", [None, "cilium"])
@pytest.mark.parametrize("seed", seeds(20, quick=8))
def test_random_tiers_bitset_paths_agree_with_evaluate(seed, dataplane):
    namespaces, endpoints, policies = random_world(seed)
    engine = Engine(namespaces, policies, dataplane=dataplane)
    assert engine.tiers is not None
    assert_paths_agree(engine, endpoints)
    assert_ranges_agree(engine, endpoints)


def test_random_worlds_are_not_trivial():
    """Both outcomes, decided by every tier, every action and the
    NetworkPolicy tier after a Pass; ties of one priority; Cilium departing."""
    seen: set[str] = set()
    allowed = blocked = departs = 0
    for seed in range(20):
        namespaces, endpoints, policies = random_world(seed)
        api, cilium = Engine(namespaces, policies), Engine(namespaces, policies, dataplane="cilium")
        for s in endpoints:
            for d in endpoints:
                for p in d.ports:
                    v = api.evaluate(s, d, p.port, p.protocol)
                    allowed += v.allowed
                    blocked += not v.allowed
                    c = cilium.evaluate(s, d, p.port, p.protocol)
                    departs += v.allowed != c.allowed
                    if v.allowed != c.allowed and any("pod-template-hash" in n for n in cilium.notes):
                        seen.add("cilium identity labels")
                    if any("Cilium: the Baseline tier" in side.decided_by for side in (c.egress, c.ingress)):
                        seen.add("cilium baseline after networkpolicy")
                    for side in (v.egress, v.ingress):
                        if side.decided_by:
                            seen.add(f"{side.tier} {'accept' if side.allowed else 'deny'}")
                        if side.passed and side.isolated and not side.decided_by:
                            seen.add("pass to networkpolicy")
                        if side.tied:
                            seen.add("tie")
                        if side.undefined:
                            seen.add("undefined")
        text = repr(policies)
        seen |= {f for f in ("destinationNamedPort", "range", "networks", "udp", "sctp") if f in text}
    assert allowed > 1000 and blocked > 1000 and departs > 10, (allowed, blocked, departs)
    assert seen >= {"Admin accept", "Admin deny", "Baseline accept", "Baseline deny", "pass to networkpolicy",
                    "tie", "undefined", "destinationNamedPort", "range", "networks", "udp", "sctp",
                    "cilium baseline after networkpolicy", "cilium identity labels"}, seen
