"""The conformance cases: the upstream e2e network policy scenarios
(kubernetes test/e2e/network/netpol/network_policy.go) as data, on the
universe the engine's truth-table tests use, with their builders
(tests/support/engine_builders.py): namespaces x, y, z labelled ns=<name>, pods a,
b, c in each labelled pod=<name>, every pod serving TCP 80 (serve-80-tcp)
and 81 (serve-81-tcp).

Each case states its expected truth table per port the way the upstream
tests do, "allowed (or blocked) everywhere except these pairs", and builds
its policies from the pods' addresses (the ipBlock cases name a pod's IP).
``tests/policy/engine/test_conformance_cases.py`` holds the engine to every table offline;
``tests/e2e/test_conformance_e2e.py`` applies every case to real pods on a
test cluster lane, probes the 9 x 9 matrix on both ports and counts the cases
whose live matrix is the engine's prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import Endpoint
from support.engine_builders import (ALLOWED, KEYS, PORTS, TCP_PORTS, exprs, ip_peer, labels, make_namespaces, make_pods,
                             netpol, ns_named, ns_peer, ns_pod_peer, pairs, pod_peer, port, req, truth_table)


def endpoints(ips: Mapping[str, str]) -> list[Endpoint]:
    """The nine pods as the engine sees them, at the given addresses, serving TCP only."""
    return make_pods(ips=ips, ports=dict.fromkeys(KEYS, TCP_PORTS))


def cidr(ip: str) -> str:
    return f"{ip}/32" if ":" not in ip else f"{ip}/128"


@dataclass(frozen=True)
class Case:
    id: str
    upstream: str  # the upstream e2e test it follows
    policies: Callable[[Mapping[str, str]], list[dict]]  # pod key -> IP, to policies
    expect: Mapping[int, tuple[bool, frozenset]]  # port -> (default, exceptions)


def both(default: bool, exceptions=frozenset()) -> dict:
    return {p: (default, frozenset(exceptions)) for p in PORTS}


CASES: tuple[Case, ...] = (
    Case("default-deny-ingress", "should support a 'default-deny-ingress' policy",
         lambda ip: [netpol("x", "deny-ingress", ingress=[])],
         both(ALLOWED, pairs("*", "x/*"))),
    Case("default-deny-all", "should support a 'default-deny-all' policy",
         lambda ip: [netpol("x", "deny-all", ingress=[], egress=[])],
         both(ALLOWED, pairs("*", "x/*") | pairs("x/*", "*"))),
    Case("allow-all", "should support allow-all policy",
         lambda ip: [netpol("x", "deny-ingress", ingress=[]), netpol("x", "allow-all", ingress=[{}])],
         both(ALLOWED)),
    Case("pod-selector-same-namespace",
         "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
         lambda ip: [netpol("x", "x-a-from-x-b", labels(pod="a"), ingress=[{"from": [pod_peer(labels(pod="b"))]}])],
         both(ALLOWED, pairs("*", "x/a") - {("x/b", "x/a")})),
    Case("allow-ingress-for-a-target", "should enforce policy to allow ingress traffic for a target",
         lambda ip: [netpol("x", "deny-ingress", ingress=[]),
                     netpol("x", "allow-all-to-a", labels(pod="a"),
                            ingress=[{"from": [ns_pod_peer({}, {})]}])],
         both(ALLOWED, pairs("*", ["x/b", "x/c"]))),
    Case("namespace-selector", "should enforce policy to allow traffic only from a different namespace, "
                               "based on NamespaceSelector",
         lambda ip: [netpol("x", "a-from-y", labels(pod="a"), ingress=[{"from": [ns_peer(ns_named("y"))]}])],
         both(ALLOWED, pairs(["x/*", "z/*"], "x/a"))),
    Case("namespace-selector-not-in", "should enforce policy based on NamespaceSelector with MatchExpressions",
         lambda ip: [netpol("x", "a-not-from-x", labels(pod="a"),
                            ingress=[{"from": [ns_peer(exprs(req("ns", "NotIn", "x")))]}])],
         both(ALLOWED, pairs("x/*", "x/a"))),
    Case("pod-selector-expressions", "should enforce policy based on PodSelector with MatchExpressions",
         lambda ip: [netpol("x", "a-from-b", labels(pod="a"),
                            ingress=[{"from": [pod_peer(exprs(req("pod", "In", "b")))]}])],
         both(ALLOWED, pairs("*", "x/a") - {("x/b", "x/a")})),
    Case("namespace-and-pod-selector", "should enforce policy based on PodSelector and NamespaceSelector",
         lambda ip: [netpol("x", "a-from-y-b", labels(pod="a"),
                            ingress=[{"from": [ns_pod_peer(ns_named("y"), labels(pod="b"))]}])],
         both(ALLOWED, pairs("*", "x/a") - {("y/b", "x/a")})),
    Case("namespace-or-pod-selector", "should enforce policy based on PodSelector or NamespaceSelector",
         lambda ip: [netpol("x", "a-from-y-or-c", labels(pod="a"),
                            ingress=[{"from": [ns_peer(ns_named("y")), pod_peer(labels(pod="c"))]}])],
         both(ALLOWED, pairs("*", "x/a") - pairs("y/*", "x/a") - {("x/c", "x/a")})),
    Case("pod-selector-all-namespaces", "should enforce policy based on any PodSelectors",
         lambda ip: [netpol("x", "a-from-b-anywhere", labels(pod="a"),
                            ingress=[{"from": [ns_pod_peer({}, labels(pod="b"))]}])],
         both(ALLOWED, pairs("*", "x/a") - pairs("*/b", "x/a"))),
    Case("multiple-policies-union", "should enforce multiple ingress policies with ingress allow-all policy "
                                    "taking precedence (allows add up)",
         lambda ip: [netpol("x", "a-from-y", labels(pod="a"), ingress=[{"from": [ns_peer(ns_named("y"))]}]),
                     netpol("x", "a-from-z", labels(pod="a"), ingress=[{"from": [ns_peer(ns_named("z"))]}])],
         both(ALLOWED, pairs("x/*", "x/a"))),
    Case("port-number", "should enforce policy to allow traffic only from a pod in a different namespace "
                        "based on PodSelector and NamespaceSelector, on one port",
         lambda ip: [netpol("x", "a-on-80", labels(pod="a"), ingress=[{"ports": [port(80, "TCP")]}])],
         {80: (ALLOWED, frozenset()), 81: (ALLOWED, pairs("*", "x/a"))}),
    Case("port-named", "should allow ingress access on one named port",
         lambda ip: [netpol("x", "a-on-serve-81", labels(pod="a"), ingress=[{"ports": [port("serve-81-tcp", "TCP")]}])],
         {80: (ALLOWED, pairs("*", "x/a")), 81: (ALLOWED, frozenset())}),
    Case("port-range", "should support a 'port range' (endPort)",
         lambda ip: [netpol("x", "a-on-81-90", labels(pod="a"), ingress=[{"ports": [port(81, "TCP", 90)]}])],
         {80: (ALLOWED, pairs("*", "x/a")), 81: (ALLOWED, frozenset())}),
    Case("default-deny-egress", "should support a 'default-deny-egress' policy",
         lambda ip: [netpol("x", "deny-egress", egress=[])],
         both(ALLOWED, pairs("x/*", "*"))),
    Case("egress-to-namespace", "should enforce egress policy allowing traffic to a server in a different "
                                "namespace based on PodSelector and NamespaceSelector",
         lambda ip: [netpol("x", "a-to-y", labels(pod="a"), egress=[{"to": [ns_peer(ns_named("y"))]}])],
         both(ALLOWED, pairs("x/a", "*") - pairs("x/a", "y/*"))),
    Case("egress-to-pod-on-port", "should allow egress access on one named port",
         lambda ip: [netpol("x", "a-to-y-b-80", labels(pod="a"),
                            egress=[{"to": [ns_pod_peer(ns_named("y"), labels(pod="b"))],
                                     "ports": [port(80, "TCP")]}])],
         {80: (ALLOWED, pairs("x/a", "*") - {("x/a", "y/b")}), 81: (ALLOWED, pairs("x/a", "*"))}),
    Case("ingress-and-egress", "should enforce ingress and egress policies together",
         lambda ip: [netpol("x", "a-deny-ingress", labels(pod="a"), ingress=[]),
                     netpol("y", "b-deny-egress", labels(pod="b"), egress=[])],
         both(ALLOWED, pairs("*", "x/a") | pairs("y/b", "*"))),
    Case("ipblock-ingress", "should allow ingress access from a pod by its IP (ipBlock)",
         lambda ip: [netpol("x", "a-from-y-b-ip", labels(pod="a"),
                            ingress=[{"from": [ip_peer(cidr(ip["y/b"]))]}])],
         both(ALLOWED, pairs("*", "x/a") - {("y/b", "x/a")})),
    Case("ipblock-egress", "should enforce policies to check ingress and egress policies can be controlled "
                           "independently based on CIDR (egress to a pod's IP)",
         lambda ip: [netpol("x", "a-to-z-c-ip", labels(pod="a"), egress=[{"to": [ip_peer(cidr(ip["z/c"]))]}])],
         both(ALLOWED, pairs("x/a", "*") - {("x/a", "z/c")})),
    Case("ipblock-egress-except", "should enforce except clause while egress access to server in CIDR block",
         lambda ip: [netpol("x", "a-to-all-but-z-c", labels(pod="a"),
                            egress=[{"to": [ip_peer("0.0.0.0/0", cidr(ip["z/c"]))]}])],
         both(ALLOWED, {("x/a", "z/c")})),
)


# The dataplane each test lane runs, as the engine names it (DATAPLANES).
LANE_DATAPLANES = {"cilium": "cilium", "kube-router": "k3s"}


def predicted_table(case: Case, ips: Mapping[str, str], dataplane: str | None = None) -> dict[tuple[str, str, int], bool]:
    """The engine's verdict for every pair and port of one case."""
    eps = endpoints(ips)
    engine = Engine(make_namespaces(), case.policies(ips), dataplane=dataplane)
    return {(s.key, d.key, p): engine.evaluate(s, d, p, "TCP").allowed
            for s in eps for d in eps if s is not d for p in PORTS}


def expected_table(case: Case) -> dict[tuple[str, str, int], bool]:
    return {(s, d, p): allowed for p, (default, exceptions) in case.expect.items()
            for (s, d), allowed in truth_table(default, exceptions).items()}
