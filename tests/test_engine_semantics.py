"""Semantic tests for the offline NetworkPolicy evaluator (cluster.engine).

Modelled on the upstream Kubernetes e2e network policy suite
(test/e2e/network/netpol/network_policy.go) and on the truth tables of
cyclonus / policy-assistant (integration_test.go): the same universe of
namespaces x, y, z with pods a, b, c in each, every pod serving 80 and 81 on
TCP, UDP and SCTP under the names serve-<port>-<proto>.

Every truth-table test states "default allowed (or blocked) plus these
exceptions" over the full 9x9 table (self excluded) and asserts exact
equality; and for every engine built by a truth-table test the fast bitset
path (``allowed_matrix``) must agree with ``evaluate`` on every
(source, destination, declared port).

Upstream "updated policy / namespace / pod" cases become: evaluate, change the
policy set or the labels, evaluate again.
"""

from __future__ import annotations

import ipaddress
import random

import pytest

from cluster.errors import ManifestError
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.matrix import source_ranges
from cluster.policy.engine.model import HOST, Edge, Endpoint, Port
from cluster.policy.engine.predictions import Predictions, predict, predict_matrix
from cluster.policy.profile import load_profile
from conformance import pairs  # the same universe: x, y, z with pods a, b, c

# --------------------------------------------------------------------------
# The universe

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
KEYS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES)
NS_NAME = "kubernetes.io/metadata.name"
CONTAINER_PORTS = tuple(Port(f"serve-{n}-{proto.lower()}", n, proto)
                        for proto in ("TCP", "UDP", "SCTP") for n in (80, 81))
ALLOWED, BLOCKED = True, False


def pod_ip(key: str) -> str:
    return f"10.42.0.{KEYS.index(key) + 1}"


def make_namespaces(extra: dict | None = None) -> dict:
    """x, y, z labelled ns=<name>; ``extra`` adds labels per namespace."""
    extra = extra or {}
    return {ns: {"ns": ns, **extra.get(ns, {})} for ns in NAMESPACES}


def make_pods(*, ips: bool = False, labels: dict | None = None, ports: dict | None = None) -> list[Endpoint]:
    """The nine pods. ``labels``/``ports`` replace a pod's labels/ports by key."""
    labels = labels or {}
    ports = ports or {}
    out = []
    for key in KEYS:
        ns, name = key.split("/")
        out.append(Endpoint(key=key, namespace=ns, name=name, labels=labels.get(key, {"pod": name}),
                            ports=ports.get(key, CONTAINER_PORTS), ip=pod_ip(key) if ips else None))
    return out


PODS = {ep.key: ep for ep in make_pods()}
PODS_WITH_IPS = {ep.key: ep for ep in make_pods(ips=True)}


def external(name: str, ip: str) -> Endpoint:
    return Endpoint(key=f"external/{name}", namespace=None, name=name, kind="external", ip=ip,
                    ports=(Port(None, 80, "TCP"), Port(None, 443, "TCP")))


# --------------------------------------------------------------------------
# Policy builders (plain dicts, as read from YAML)

ABSENT = object()


def raw_policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def netpol(ns: str, name: str, selector: dict | None = None, *, ingress=ABSENT, egress=ABSENT,
           types=ABSENT) -> dict:
    """Like upstream GenNetworkPolicyWithNameAndPodSelector + SetSpecIngressRules /
    SetSpecEgressRules: passing ``ingress``/``egress`` (even ``[]``) lists that
    direction in policyTypes, unless ``types`` is given."""
    spec: dict = {"podSelector": {} if selector is None else selector}
    listed = []
    if ingress is not ABSENT:
        spec["ingress"] = ingress
        listed.append("Ingress")
    if egress is not ABSENT:
        spec["egress"] = egress
        listed.append("Egress")
    spec["policyTypes"] = listed if types is ABSENT else types
    return raw_policy(ns, name, spec)


def labels(**kv) -> dict:
    return {"matchLabels": dict(kv)}


def ns_named(name: str) -> dict:
    return {"matchLabels": {NS_NAME: name}}


def req(key: str, op: str, *values: str) -> dict:
    r = {"key": key, "operator": op}
    if values:
        r["values"] = list(values)
    return r


def exprs(*reqs: dict) -> dict:
    return {"matchExpressions": list(reqs)}


def pod_peer(selector: dict) -> dict:
    return {"podSelector": selector}


def ns_peer(selector: dict) -> dict:
    return {"namespaceSelector": selector}


def ns_pod_peer(ns_selector: dict, pod_selector: dict) -> dict:
    return {"namespaceSelector": ns_selector, "podSelector": pod_selector}


def ip_peer(cidr: str, *excepts: str) -> dict:
    block = {"cidr": cidr}
    if excepts:
        block["except"] = list(excepts)
    return {"ipBlock": block}


def port(p, protocol: str | None = None, end: int | None = None) -> dict:
    out: dict = {}
    if p is not None:
        out["port"] = p
    if protocol is not None:
        out["protocol"] = protocol
    if end is not None:
        out["endPort"] = end
    return out


# --------------------------------------------------------------------------
# Truth tables


def render(table: dict) -> str:
    width = max(len(k) for k in KEYS)
    lines = [" " * width + " " + " ".join(k.rjust(width) for k in KEYS)]
    for s in KEYS:
        cells = []
        for d in KEYS:
            cells.append("-" if s == d else ("." if table[(s, d)] else "X"))
        lines.append(s.ljust(width) + " " + " ".join(c.rjust(width) for c in cells))
    return "\n".join(lines) + "\n(rows: source, columns: destination; '.' allowed, 'X' blocked)"


def assert_paths_agree(engine: Engine, endpoints) -> None:
    """allowed_matrix (bitsets) must agree with evaluate on every edge it reports."""
    endpoints = list(endpoints)
    matrix = engine.allowed_matrix(endpoints)
    want_keys = {(d, q) for d, dst in enumerate(endpoints) for q in range(len(dst.ports))}
    assert set(matrix) == want_keys, "allowed_matrix must report exactly every (destination, declared port)"
    bad = []
    for d, dst in enumerate(endpoints):
        for q, p in enumerate(dst.ports):
            bits = matrix[(d, q)]
            for s, src in enumerate(endpoints):
                fast = bool(bits >> s & 1)
                slow = engine.evaluate(src, dst, p.port, p.protocol).allowed
                if fast != slow:
                    bad.append(f"{src.key} -> {dst.key} {p.port}/{p.protocol}: "
                               f"allowed_matrix={'ALLOWED' if fast else 'BLOCKED'}, "
                               f"evaluate={'ALLOWED' if slow else 'BLOCKED'}")
    assert not bad, (f"allowed_matrix disagrees with evaluate on {len(bad)} edge(s):\n  "
                     + "\n  ".join(bad[:20]))


def _probe_ports(engine: Engine, endpoints) -> list[int]:
    """Ports where a verdict can change: every rule bound and its neighbours,
    every declared port, and the ends of the port space."""
    ports = {1, 2, 65534, 65535}
    for p in engine.policies:
        for rule in (p.ingress or ()) + (p.egress or ()):
            for pr in rule.ports or ():
                if isinstance(pr.port, int):
                    for n in (pr.port, pr.end_port or pr.port):
                        ports.update((n - 1, n, n + 1))
    for ep in endpoints:
        ports.update(x.port for x in ep.ports)
    return sorted(n for n in ports if 1 <= n <= 65535)


def assert_ranges_agree(engine: Engine, endpoints) -> None:
    """port_ranges must agree with evaluate on every pair, protocol and port
    where the verdict can change, and cover each protocol at most once."""
    endpoints = list(endpoints)
    got: dict[tuple[int, int, str], list[tuple[int, int]]] = {}
    seen = set()
    for d, protocol, segments in engine.port_ranges(endpoints):
        assert (d, protocol) not in seen
        seen.add((d, protocol))
        assert segments == sorted(segments) and all(lo <= hi for lo, hi, _ in segments)
        assert all(a[1] < b[0] for a, b in zip(segments, segments[1:])), "segments overlap"
        for bits, ranges in source_ranges(segments):
            assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:])), "adjacent ranges not merged"
            for s in range(len(endpoints)):
                if bits >> s & 1:
                    assert (s, d, protocol) not in got, "a source in two groups"
                    got[(s, d, protocol)] = ranges
    bad = []
    ports = _probe_ports(engine, endpoints)
    for s, src in enumerate(endpoints):
        for d, dst in enumerate(endpoints):
            for protocol in ("TCP", "UDP", "SCTP"):
                spans = got.get((s, d, protocol), [])
                for n in ports:
                    fast = any(lo <= n <= hi for lo, hi in spans)
                    if fast != engine.evaluate(src, dst, n, protocol).allowed:
                        bad.append(f"{src.key} -> {dst.key} {n}/{protocol}: port_ranges says "
                                   f"{'allowed' if fast else 'blocked'} ({spans})")
    assert not bad, f"port_ranges disagrees with evaluate on {len(bad)} edge(s):\n  " + "\n  ".join(bad[:20])


def check(policies, port_no: int, protocol: str = "TCP", *, default: bool, exceptions=frozenset(),
          namespaces: dict | None = None, pods: list[Endpoint] | None = None) -> Engine:
    """Assert the exact 9x9 truth table: ``default`` everywhere except ``exceptions``."""
    namespaces = make_namespaces() if namespaces is None else namespaces
    pods = make_pods() if pods is None else pods
    assert [p.key for p in pods] == list(KEYS)
    engine = Engine(namespaces, policies)
    table = {(s.key, d.key): engine.evaluate(s, d, port_no, protocol).allowed
             for s in pods for d in pods if s is not d}
    got = frozenset(pr for pr, ok in table.items() if ok != default)
    expected = frozenset(exceptions)
    if got != expected:
        want = {pr: (not default) if pr in expected else default for pr in table}
        flip = "blocked" if default else "allowed"
        pytest.fail(
            f"truth table on {port_no}/{protocol} (default {'allowed' if default else 'blocked'}):\n"
            f"  expected {flip} but not: {sorted(expected - got)}\n"
            f"  {flip} but not expected: {sorted(got - expected)}\n"
            f"expected:\n{render(want)}\ngot:\n{render(table)}")
    assert_paths_agree(engine, pods)
    return engine


def verdict(engine: Engine, src: str, dst: str, port_no: int, protocol: str = "TCP", pods=PODS):
    return engine.evaluate(pods[src], pods[dst], port_no, protocol)


# ==========================================================================
# Upstream e2e: "NetworkPolicy between server and client" (TCP)


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP"])
def test_default_deny_ingress(protocol):
    """should support a 'default-deny-ingress' policy (TCP, UDP and SCTP contexts)."""
    pol = netpol("x", "deny-ingress", {}, ingress=[])
    e = check([pol], 80, protocol, default=ALLOWED, exceptions=pairs("*", "x/*"))
    v = verdict(e, "y/a", "x/a", 80, protocol)
    assert not v.allowed and v.blocking_side() == ["ingress"]
    assert v.ingress.isolated and v.ingress.selecting == ("x/deny-ingress",) and v.ingress.allowing == ()
    assert v.egress.allowed and not v.egress.isolated and v.egress.selecting == ()


def test_default_deny_all():
    """should support a 'default-deny-all' policy."""
    pol = netpol("x", "deny-all", {}, ingress=[], egress=[])
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/*") | pairs("x/*", "*"))
    v = verdict(e, "x/a", "y/a", 80)
    assert v.blocking_side() == ["egress"] and v.egress.selecting == ("x/deny-all",)
    v = verdict(e, "x/a", "x/b", 80)
    assert v.blocking_side() == ["egress", "ingress"]


def test_allow_from_pods_within_server_namespace_by_pod_selector():
    """should enforce policy to allow traffic from pods within server namespace based on PodSelector."""
    pol = netpol("x", "x-a-allows-x-b", labels(pod="a"),
                 ingress=[{"from": [pod_peer(labels(pod="b"))]}])
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a")})
    v = verdict(e, "x/b", "x/a", 80)
    assert v.allowed and v.ingress.allowing == ("x/x-a-allows-x-b ingress rule 1",)
    v = verdict(e, "y/b", "x/a", 80)  # same labels, other namespace: not picked by a bare podSelector
    assert not v.allowed and v.ingress.selecting == ("x/x-a-allows-x-b",)


def test_allow_ingress_traffic_for_a_target():
    """should enforce policy to allow ingress traffic for a target."""
    deny = netpol("x", "deny-all", {}, ingress=[])
    allow = netpol("x", "allow-all-to-a", labels(pod="a"),
                   ingress=[{"from": [ns_pod_peer({}, {})]}])
    e = check([deny, allow], 80, default=ALLOWED, exceptions=pairs("*", ["x/b", "x/c"]))
    v = verdict(e, "z/c", "x/a", 80)
    assert v.allowed
    assert v.ingress.selecting == ("x/deny-all", "x/allow-all-to-a")
    assert v.ingress.allowing == ("x/allow-all-to-a ingress rule 1",)
    v = verdict(e, "x/a", "x/b", 80)
    assert not v.allowed and v.ingress.selecting == ("x/deny-all",) and v.ingress.allowing == ()


def test_allow_ingress_from_pods_in_all_namespaces():
    """should enforce policy to allow ingress traffic from pods in all namespaces."""
    pol = netpol("x", "allow-from-another-ns", labels(pod="a"), ingress=[{"from": [ns_peer({})]}])
    e = check([pol], 80, default=ALLOWED)
    # namespaceSelector {} is every pod in every namespace, not every address.
    assert not e.evaluate(external("out", "203.0.113.9"), PODS["x/a"], 80).allowed


def test_allow_only_from_a_different_namespace_by_namespace_selector():
    """should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector."""
    pol = netpol("x", "allow-client-a-via-ns-selector", labels(pod="a"),
                 ingress=[{"from": [ns_peer(ns_named("y"))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"))


def test_pod_selector_with_match_expressions():
    """should enforce policy based on PodSelector with MatchExpressions."""
    pol = netpol("x", "x-a-allows-x-b", labels(pod="a"),
                 ingress=[{"from": [pod_peer(exprs(req("pod", "In", "b")))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a")})


def test_namespace_selector_with_match_expressions():
    """should enforce policy based on NamespaceSelector with MatchExpressions."""
    pol = netpol("x", "allow-ns-y-match-selector", labels(pod="a"),
                 ingress=[{"from": [ns_peer(exprs(req(NS_NAME, "In", "y")))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"))


def test_pod_selector_or_namespace_selector():
    """should enforce policy based on PodSelector or NamespaceSelector (two peers: OR)."""
    pol = netpol("x", "allow-ns-y-match-selector", labels(pod="a"),
                 ingress=[{"from": [ns_peer(exprs(req(NS_NAME, "NotIn", "x"))),
                                    pod_peer(labels(pod="b"))]}])
    check([pol], 80, default=ALLOWED, exceptions={("x/c", "x/a")})


def test_pod_selector_and_namespace_selector():
    """should enforce policy based on PodSelector and NamespaceSelector (one peer: AND)."""
    pol = netpol("x", "allow-ns-y-podselector-and-nsselector", labels(pod="a"),
                 ingress=[{"from": [ns_pod_peer(exprs(req(NS_NAME, "NotIn", "x")), labels(pod="b"))]}])
    check([pol], 80, default=ALLOWED,
          exceptions=pairs("*", "x/a") - {("y/b", "x/a"), ("z/b", "x/a")})


def test_multiple_pod_selectors_and_namespace_selectors():
    """should enforce policy based on Multiple PodSelectors and NamespaceSelectors."""
    pol = netpol("x", "allow-ns-y-z-pod-b-c", labels(pod="a"),
                 ingress=[{"from": [ns_pod_peer(exprs(req(NS_NAME, "NotIn", "x")),
                                                exprs(req("pod", "In", "b", "c")))]}])
    check([pol], 80, default=ALLOWED,
          exceptions=pairs("*", "x/a") - pairs(["y/b", "y/c", "z/b", "z/c"], "x/a"))


def test_any_pod_selectors():
    """should enforce policy based on any PodSelectors (pod=b OR pod=c, own namespace only)."""
    pol = netpol("x", "allow-ns-x-pod-b-c", labels(pod="a"),
                 ingress=[{"from": [pod_peer(labels(pod="b")), pod_peer(labels(pod="c"))]}])
    check([pol], 80, default=ALLOWED,
          exceptions=pairs("*", "x/a") - {("x/b", "x/a"), ("x/c", "x/a")})


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP"])
def test_allow_only_from_a_pod_in_a_different_namespace(protocol):
    """should enforce policy to allow traffic only from a pod in a different namespace based on
    PodSelector and NamespaceSelector (TCP, UDP and SCTP contexts)."""
    pol = netpol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", labels(pod="a"),
                 ingress=[{"from": [ns_pod_peer(ns_named("y"), labels(pod="a"))]}])
    check([pol], 80, protocol, default=ALLOWED, exceptions=pairs("*", "x/a") - {("y/a", "x/a")})


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP"])
def test_policy_based_on_ports(protocol):
    """should enforce policy based on Ports (TCP, UDP and SCTP contexts)."""
    pol = netpol("x", "allow-client-a-via-ns-selector", labels(pod="a"),
                 ingress=[{"from": [ns_peer(ns_named("y"))], "ports": [port(81, protocol)]}])
    e = check([pol], 81, protocol, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"))
    v = verdict(e, "y/c", "x/a", 81, protocol)
    assert v.ingress.allowing == ("x/allow-client-a-via-ns-selector ingress rule 1",)
    check([pol], 80, protocol, default=ALLOWED, exceptions=pairs("*", "x/a"))
    other = {"TCP": "UDP", "UDP": "SCTP", "SCTP": "TCP"}[protocol]
    check([pol], 81, other, default=ALLOWED, exceptions=pairs("*", "x/a"))


def test_multiple_stacked_policies_with_overlapping_pod_selectors():
    """should enforce multiple, stacked policies with overlapping podSelectors (they add up)."""
    p81 = netpol("x", "allow-client-a-via-ns-selector", labels(pod="a"),
                 ingress=[{"from": [ns_peer(ns_named("y"))], "ports": [port(81, "TCP")]}])
    allow = pairs(["x/*", "z/*"], "x/a")
    check([p81], 81, default=ALLOWED, exceptions=allow)
    check([p81], 80, default=ALLOWED, exceptions=pairs("*", "x/a"))
    p80 = netpol("x", "allow-client-a-via-ns-selector-80", labels(pod="a"),
                 ingress=[{"from": [ns_peer(ns_named("y"))], "ports": [port(80, "TCP")]}])
    e = check([p81, p80], 80, default=ALLOWED, exceptions=allow)
    check([p81, p80], 81, default=ALLOWED, exceptions=allow)
    v = verdict(e, "y/a", "x/a", 80)
    assert v.ingress.selecting == ("x/allow-client-a-via-ns-selector", "x/allow-client-a-via-ns-selector-80")
    assert v.ingress.allowing == ("x/allow-client-a-via-ns-selector-80 ingress rule 1",)


@pytest.mark.parametrize("port_no,protocol", [(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "SCTP")])
def test_allow_all_policy(port_no, protocol):
    """should support allow-all policy."""
    pol = netpol("x", "allow-all", {}, ingress=[{}])
    e = check([pol], port_no, protocol, default=ALLOWED)
    v = verdict(e, "y/a", "x/b", port_no, protocol)
    assert v.ingress.isolated and v.ingress.allowing == ("x/allow-all ingress rule 1",)


def test_ingress_access_on_one_named_port():
    """should allow ingress access on one named port."""
    pol = netpol("x", "allow-all", {}, ingress=[{"ports": [port("serve-81-tcp")]}])
    check([pol], 81, default=ALLOWED)
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/*"))
    # The name resolves to 81/TCP: 81/UDP is not opened by it.
    check([pol], 81, "UDP", default=ALLOWED, exceptions=pairs("*", "x/*"))


def test_ingress_access_from_namespace_on_one_named_port():
    """should allow ingress access from namespace on one named port."""
    pol = netpol("x", "allow-client-a-via-ns-selector-80", labels(pod="a"),
                 ingress=[{"from": [ns_peer(ns_named("y"))], "ports": [port("serve-80-tcp", "TCP")]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"))
    check([pol], 81, default=ALLOWED, exceptions=pairs("*", "x/a"))


def test_egress_access_on_one_named_port():
    """should allow egress access on one named port (resolved on the destination pod)."""
    pol = netpol("x", "allow-egress", {}, egress=[{"ports": [port("serve-80-tcp")]}])
    e = check([pol], 80, default=ALLOWED)
    check([pol], 81, default=ALLOWED, exceptions=pairs("x/*", "*"))
    v = verdict(e, "x/a", "z/c", 80)
    assert v.egress.isolated and v.egress.allowing == ("x/allow-egress egress rule 1",)


def test_enforce_updated_policy():
    """should enforce updated policy: allow-all, then the same policy with ``ingress: []``."""
    pol = netpol("x", "allow-all-mutate-to-deny-all", {}, ingress=[{}])
    check([pol], 81, default=ALLOWED)
    pol["spec"]["ingress"] = []
    check([pol], 81, default=ALLOWED, exceptions=pairs("*", "x/*"))


def test_ingress_access_from_updated_namespace():
    """should allow ingress access from updated namespace (a label added to namespace y)."""
    pol = netpol("x", "allow-client-a-via-ns-selector", labels(pod="a"),
                 ingress=[{"from": [ns_peer(labels(ns2="updated"))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a"))
    check([pol], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"),
          namespaces=make_namespaces({"y": {"ns2": "updated"}}))


def test_ingress_access_from_updated_pod():
    """should allow ingress access from updated pod (labels added to x/b)."""
    pol = netpol("x", "allow-client-a-via-pod-selector", labels(pod="a"),
                 ingress=[{"from": [pod_peer(labels(pod="b", pod2="updated"))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a"))
    updated = make_pods(labels={"x/b": {"pod": "b", "pod2": "updated"}})
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a")}, pods=updated)


def test_deny_ingress_from_pods_on_other_namespaces():
    """should deny ingress from pods on other namespaces (podSelector {} is own namespace only)."""
    pol = netpol("x", "deny-empty-policy", {}, ingress=[{"from": [pod_peer({})]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs(["y/*", "z/*"], "x/*"))


def test_deny_ingress_access_to_updated_pod():
    """should deny ingress access to updated pod (x/a gains the label the policy selects)."""
    pol = netpol("x", "deny-ingress-via-label-selector", labels(target="isolated"), ingress=[])
    check([pol], 80, default=ALLOWED)
    updated = make_pods(labels={"x/a": {"pod": "a", "target": "isolated"}})
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a"), pods=updated)


def test_deny_egress_from_pods_based_on_pod_selector():
    """should deny egress from pods based on PodSelector."""
    pol = netpol("x", "deny-egress-pod-a", labels(pod="a"), egress=[])
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*"))
    v = verdict(e, "x/a", "y/a", 80)
    assert v.blocking_side() == ["egress"]
    assert v.egress.selecting == ("x/deny-egress-pod-a",) and v.egress.allowing == ()


def test_deny_egress_from_all_pods_in_a_namespace():
    """should deny egress from all pods in a namespace."""
    pol = netpol("x", "deny-egress-ns-x", {}, egress=[])
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/*", "*"))


def test_ingress_and_egress_specified_together():
    """should work with Ingress, Egress specified together."""
    pol = netpol("x", "allow-client-a-via-pod-selector", labels(pod="a"),
                 ingress=[{"from": [pod_peer(labels(pod="b"))]}],
                 egress=[{"ports": [port(80)]}], types=["Egress", "Ingress"])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a")})
    check([pol], 81, default=ALLOWED,
          exceptions=(pairs("*", "x/a") | pairs("x/a", "*")) - {("x/b", "x/a")})


def test_egress_denied_on_client_side_even_if_server_allows():
    """should support denying of egress traffic on the client side (even if the server explicitly
    allows this traffic)."""
    egress = netpol("x", "allow-to-ns-y-pod-a", labels(pod="a"),
                    egress=[{"to": [ns_pod_peer(ns_named("y"), labels(pod="a"))]}])
    from_xa = [{"from": [ns_pod_peer(ns_named("x"), labels(pod="a"))]}]
    in_a = netpol("y", "allow-from-xa-on-ya-match-selector", labels(pod="a"), ingress=from_xa)
    in_b = netpol("y", "allow-from-xa-on-yb-match-selector", labels(pod="b"), ingress=from_xa)
    e = check([egress, in_a, in_b], 80, default=ALLOWED,
              exceptions=(pairs("x/a", "*") | pairs("*", "y/a") | pairs("*", "y/b")) - {("x/a", "y/a")})
    v = verdict(e, "x/a", "y/b", 80)
    assert not v.allowed and v.blocking_side() == ["egress"]
    assert v.ingress.allowing == ("y/allow-from-xa-on-yb-match-selector ingress rule 1",)
    assert v.egress.selecting == ("x/allow-to-ns-y-pod-a",) and v.egress.allowing == ()
    v = verdict(e, "x/a", "y/a", 80)
    assert v.allowed and v.egress.allowing == ("x/allow-to-ns-y-pod-a egress rule 1",)


def test_egress_to_server_in_other_namespace_by_pod_and_namespace_selector():
    """should enforce egress policy allowing traffic to a server in a different namespace based on
    PodSelector and NamespaceSelector."""
    pol = netpol("x", "allow-to-ns-y-pod-a", labels(pod="a"),
                 egress=[{"to": [ns_pod_peer(ns_named("y"), labels(pod="a"))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*") - {("x/a", "y/a")})


@pytest.mark.parametrize("allowed_proto", ["TCP", "UDP", "SCTP"])
def test_ingress_any_port_on_a_specific_protocol(allowed_proto):
    """should enforce ingress policy allowing any port traffic to a server on a specific protocol."""
    pol = netpol("x", "allow-ingress-by-proto", labels(pod="a"),
                 ingress=[{"ports": [port(None, allowed_proto)]}])
    for proto in ("TCP", "UDP", "SCTP"):
        for p in (80, 81):
            check([pol], p, proto, default=ALLOWED,
                  exceptions=frozenset() if proto == allowed_proto else pairs("*", "x/a"))
    # Any port of that protocol, not only the declared ones.
    e = Engine(make_namespaces(), [pol])
    assert e.evaluate(PODS["y/a"], PODS["x/a"], 65535, allowed_proto).allowed


def test_multiple_ingress_policies_allow_all_takes_precedence():
    """should enforce multiple ingress policies with ingress allow-all policy taking precedence."""
    only80 = netpol("x", "allow-ingress-port-80", {}, ingress=[{"ports": [port(80)]}])
    check([only80], 81, default=ALLOWED, exceptions=pairs("*", "x/*"))
    allow_all = netpol("x", "allow-ingress", {}, ingress=[{}])
    e = check([only80, allow_all], 81, default=ALLOWED)
    v = verdict(e, "y/a", "x/a", 81)
    assert v.ingress.selecting == ("x/allow-ingress-port-80", "x/allow-ingress")
    assert v.ingress.allowing == ("x/allow-ingress ingress rule 1",)


def test_multiple_egress_policies_allow_all_takes_precedence():
    """should enforce multiple egress policies with egress allow-all policy taking precedence."""
    only80 = netpol("x", "allow-egress-port-80", {}, egress=[{"ports": [port(80)]}])
    check([only80], 81, default=ALLOWED, exceptions=pairs("x/*", "*"))
    allow_all = netpol("x", "allow-egress", {}, egress=[{}])
    check([only80, allow_all], 81, default=ALLOWED)


def test_stop_enforcing_policies_after_they_are_deleted():
    """should stop enforcing policies after they are deleted."""
    pol = netpol("x", "deny-all", {}, ingress=[], egress=[])
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/*", "*") | pairs("*", "x/*"))
    check([], 80, default=ALLOWED)


def test_egress_access_to_server_in_cidr_block():
    """should allow egress access to server in CIDR block (a pod IP /32)."""
    pods = make_pods(ips=True)
    pol = netpol("x", "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                 egress=[{"to": [ip_peer(f"{pod_ip('y/b')}/32")]}])
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*") - {("x/a", "y/b")}, pods=pods)
    v = verdict(e, "x/a", "y/b", 80, pods=PODS_WITH_IPS)
    assert v.egress.allowing == ("x/allow-client-a-via-cidr-egress-rule egress rule 1",)


def test_egress_ip_block_to_external_endpoint():
    """ipBlock allow to an address outside the cluster (an "external" endpoint)."""
    inside, outside = external("inside", "203.0.113.10"), external("outside", "198.51.100.7")
    pol = netpol("x", "allow-egress-cidr", labels(pod="a"), egress=[{"to": [ip_peer("203.0.113.0/24")]}])
    pods = make_pods(ips=True)
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*"), pods=pods)
    xa, xb = PODS_WITH_IPS["x/a"], PODS_WITH_IPS["x/b"]
    assert e.evaluate(xa, inside, 443).allowed
    v = e.evaluate(xa, outside, 443)
    assert not v.allowed and v.blocking_side() == ["egress"]
    assert e.evaluate(xb, outside, 443).allowed  # x/b is not selected
    # traffic from outside the cluster is decided by the destination's ingress only
    assert e.evaluate(outside, xa, 80).allowed
    assert_paths_agree(e, pods + [inside, outside])


def test_ingress_ip_block_from_external_endpoint():
    inside, outside = external("inside", "203.0.113.10"), external("outside", "198.51.100.7")
    pol = netpol("x", "allow-ingress-cidr", labels(pod="a"), ingress=[{"from": [ip_peer("203.0.113.0/24")]}])
    pods = make_pods(ips=True)
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a"), pods=pods)
    xa = PODS_WITH_IPS["x/a"]
    v = e.evaluate(inside, xa, 80)
    assert v.allowed and v.ingress.allowing == ("x/allow-ingress-cidr ingress rule 1",)
    assert not e.evaluate(outside, xa, 80).allowed
    assert_paths_agree(e, pods + [inside, outside])


def test_except_clause_while_egress_to_server_in_cidr_block():
    """should enforce except clause while egress access to server in CIDR block."""
    pods = make_pods(ips=True)
    # upstream makeLargeCIDRForIP: the /4 holding the pod IP
    pol = netpol("x", "allow-client-a-via-cidr-egress-rule", labels(pod="a"),
                 egress=[{"to": [ip_peer("0.0.0.0/4", f"{pod_ip('x/b')}/32")]}])
    check([pol], 80, default=ALLOWED, exceptions={("x/a", "x/b")}, pods=pods)


def test_ip_in_both_cidr_and_except_is_allowed_by_another_policy():
    """should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed."""
    pods = make_pods(ips=True)
    name = "allow-client-a-via-cidr-egress-rule"
    wide = netpol("x", name, labels(pod="a"), egress=[{"to": [ip_peer("0.0.0.0/4", f"{pod_ip('x/b')}/32")]}])
    check([wide], 80, default=ALLOWED, exceptions={("x/a", "x/b")}, pods=pods)
    # Upstream updates the policy of the same name: only x/b's /32 is left.
    narrow = netpol("x", name, labels(pod="a"), egress=[{"to": [ip_peer(f"{pod_ip('x/b')}/32")]}])
    check([narrow], 80, default=ALLOWED, exceptions=pairs("x/a", "*") - {("x/a", "x/b")}, pods=pods)
    # A second, separate policy allowing the excepted IP: policies add up.
    other = netpol("x", "allow-x-b", labels(pod="a"), egress=[{"to": [ip_peer(f"{pod_ip('x/b')}/32")]}])
    e = check([wide, other], 80, default=ALLOWED, pods=pods)
    v = verdict(e, "x/a", "x/b", 80, pods=PODS_WITH_IPS)
    assert v.egress.allowing == ("x/allow-x-b egress rule 1",)


def test_ingress_and_egress_controlled_independently():
    """should enforce policies to check ingress and egress policies can be controlled independently
    based on PodSelector."""
    allow_egress = netpol("x", "allow-egress-for-target", labels(pod="a"), egress=[{}])
    check([allow_egress], 80, default=ALLOWED)
    deny_ingress = netpol("x", "deny-ingress-via-label-selector", labels(pod="a"), ingress=[])
    e = check([allow_egress, deny_ingress], 80, default=ALLOWED, exceptions=pairs("*", "x/a"))
    v = verdict(e, "x/a", "x/b", 80)
    assert v.allowed and v.egress.allowing == ("x/allow-egress-for-target egress rule 1",)
    v = verdict(e, "x/b", "x/a", 80)
    assert not v.allowed and v.ingress.selecting == ("x/deny-ingress-via-label-selector",)


def test_sctp_is_not_treated_as_tcp():
    """should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP'."""
    deny = netpol("x", "deny-ingress", {}, ingress=[])
    sctp = netpol("x", "allow-only-sctp-ingress-on-port-81", labels(pod="a"),
                  ingress=[{"ports": [port(81, "SCTP")]}])
    check([deny, sctp], 81, "TCP", default=ALLOWED, exceptions=pairs("*", "x/*"))
    check([deny, sctp], 81, "SCTP", default=ALLOWED, exceptions=pairs("*", ["x/b", "x/c"]))


def test_pods_selected_by_an_sctp_policy_are_isolated():
    """should properly isolate pods that are selected by a policy allowing SCTP."""
    sctp = netpol("x", "allow-only-sctp-ingress-on-port-80", labels(pod="a"),
                  ingress=[{"ports": [port(80, "SCTP")]}])
    check([sctp], 81, "TCP", default=ALLOWED, exceptions=pairs("*", "x/a"))
    check([sctp], 80, "TCP", default=ALLOWED, exceptions=pairs("*", "x/a"))
    check([sctp], 80, "SCTP", default=ALLOWED)


def test_udp_only_policy_does_not_allow_tcp():
    """should not allow access by TCP when a policy specifies only UDP."""
    udp = netpol("x", "allow-only-udp-ingress-on-port-81", labels(pod="a"),
                 ingress=[{"ports": [port(81, "UDP")]}])
    check([udp], 81, "TCP", default=ALLOWED, exceptions=pairs("*", "x/a"))
    check([udp], 81, "UDP", default=ALLOWED)


def test_default_namespace_name_label_with_match_labels():
    """should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using
    default ns label (the namespaces carry no labels of their own here)."""
    pol = netpol("x", "allow-client-a-via-ns-selector-for-immutable-ns-label", labels(pod="a"),
                 ingress=[{"from": [ns_peer(ns_named("y"))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"),
          namespaces={ns: {} for ns in NAMESPACES})
    # The API server owns that label: a user value cannot fake it.
    check([pol], 80, default=ALLOWED, exceptions=pairs(["x/*", "z/*"], "x/a"),
          namespaces={"x": {NS_NAME: "y"}, "y": {}, "z": {NS_NAME: "y"}})


def test_default_namespace_name_label_with_match_expressions():
    """should enforce policy based on NamespaceSelector with MatchExpressions using default ns label
    (egress NotIn y)."""
    pol = netpol("x", "allow-ns-y-match-selector-for-immutable-ns-label", labels(pod="a"),
                 egress=[{"to": [ns_peer(exprs(req(NS_NAME, "NotIn", "y")))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "y/*"))


# ==========================================================================
# policy-assistant "ingress port allowed": only 80/UDP into x/a


@pytest.mark.parametrize("port_no,protocol,blocked", [
    (80, "TCP", True), (81, "TCP", True), (81, "UDP", True), (80, "UDP", False), (80, "SCTP", True)])
def test_policy_assistant_ingress_port_allowed(port_no, protocol, blocked):
    pol = netpol("x", "base", labels(pod="a"), ingress=[{"ports": [port(80, "UDP")]}])
    check([pol], port_no, protocol, default=ALLOWED, exceptions=pairs("*", "x/a") if blocked else ())


# ==========================================================================
# Selectors: matchExpressions operators, pods and namespaces without the key

TIERED = make_pods(labels={"x/b": {"pod": "b", "tier": "web"}, "y/b": {"pod": "b", "tier": "db"}})
ENV_NS = make_namespaces({"x": {"env": "prod"}, "y": {"env": "dev"}})  # z has no env label


@pytest.mark.parametrize("expr,allowed_from", [
    (req("tier", "In", "web", "db"), ["x/b", "y/b"]),
    (req("tier", "NotIn", "db"), [k for k in KEYS if k != "y/b"]),  # pods without the key match NotIn
    (req("tier", "Exists"), ["x/b", "y/b"]),
    (req("tier", "DoesNotExist"), [k for k in KEYS if k not in ("x/b", "y/b")]),
], ids=["In", "NotIn", "Exists", "DoesNotExist"])
def test_pod_selector_operators(expr, allowed_from):
    pol = netpol("x", "tiered", labels(pod="a"), ingress=[{"from": [ns_pod_peer({}, exprs(expr))]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - pairs(allowed_from, "x/a"),
          pods=TIERED)


@pytest.mark.parametrize("expr,allowed_ns", [
    (req("env", "In", "prod"), ["x"]),
    (req("env", "NotIn", "prod"), ["y", "z"]),  # z has no env label: NotIn matches it
    (req("env", "Exists"), ["x", "y"]),
    (req("env", "DoesNotExist"), ["z"]),
], ids=["In", "NotIn", "Exists", "DoesNotExist"])
def test_namespace_selector_operators(expr, allowed_ns):
    pol = netpol("x", "by-env", labels(pod="a"), ingress=[{"from": [ns_peer(exprs(expr))]}])
    check([pol], 80, default=ALLOWED,
          exceptions=pairs("*", "x/a") - pairs([f"{n}/*" for n in allowed_ns], "x/a"), namespaces=ENV_NS)


def test_match_labels_and_match_expressions_are_anded():
    sel = {"matchLabels": {"pod": "b"}, "matchExpressions": [req("tier", "Exists")]}
    pol = netpol("x", "anded", labels(pod="a"), ingress=[{"from": [ns_pod_peer({}, sel)]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a"), ("y/b", "x/a")},
          pods=TIERED)


def test_policy_pod_selector_with_expressions():
    """spec.podSelector uses the same selector semantics (NotIn picks pods without the key)."""
    pol = netpol("x", "deny-non-db", exprs(req("tier", "NotIn", "web")), ingress=[])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", ["x/a", "x/c"]), pods=TIERED)


def test_or_versus_and_of_pod_and_namespace_selectors():
    or_pol = netpol("x", "or", labels(pod="a"),
                    ingress=[{"from": [ns_peer(ns_named("y")), pod_peer(labels(pod="b"))]}])
    and_pol = netpol("x", "and", labels(pod="a"),
                     ingress=[{"from": [ns_pod_peer(ns_named("y"), labels(pod="b"))]}])
    check([or_pol], 80, default=ALLOWED,
          exceptions=pairs("*", "x/a") - pairs(["y/*", "x/b"], "x/a"))
    check([and_pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("y/b", "x/a")})


# ==========================================================================
# Ports: named ports, endPort


def test_named_port_with_other_protocol_opens_nothing():
    """serve-80-udp is 80/UDP: asked for with protocol TCP (the default) it opens nothing."""
    pol = netpol("x", "named-mismatch", labels(pod="a"), ingress=[{"ports": [port("serve-80-udp")]}])
    for p, proto in [(80, "TCP"), (80, "UDP"), (81, "UDP")]:
        check([pol], p, proto, default=ALLOWED, exceptions=pairs("*", "x/a"))
    right = netpol("x", "named-udp", labels(pod="a"), ingress=[{"ports": [port("serve-80-udp", "UDP")]}])
    check([right], 80, "UDP", default=ALLOWED)
    check([right], 80, "TCP", default=ALLOWED, exceptions=pairs("*", "x/a"))


def test_named_port_the_pod_does_not_declare_opens_nothing():
    ingress = netpol("x", "named-unknown", labels(pod="a"), ingress=[{"ports": [port("serve-82-tcp")]}])
    egress = netpol("x", "named-unknown-egress", labels(pod="a"), egress=[{"ports": [port("serve-82-tcp")]}])
    for p in (80, 81):
        check([ingress], p, default=ALLOWED, exceptions=pairs("*", "x/a"))
        check([egress], p, default=ALLOWED, exceptions=pairs("x/a", "*"))


def test_named_port_resolves_on_the_destination_pod():
    """The same name may be 80 on one pod and 81 on another: egress follows the destination."""
    def renamed(number):
        return tuple(Port("web", p.port, p.protocol) if (p.port, p.protocol) == (number, "TCP") else p
                     for p in CONTAINER_PORTS)
    pods = make_pods(ports={"y/b": renamed(80), "y/c": renamed(81)})
    pol = netpol("x", "to-web", labels(pod="a"), egress=[{"ports": [port("web")]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*") - {("x/a", "y/b")}, pods=pods)
    check([pol], 81, default=ALLOWED, exceptions=pairs("x/a", "*") - {("x/a", "y/c")}, pods=pods)


@pytest.mark.parametrize("start,end,open_ports", [
    (80, 81, {80, 81}),    # both inside
    (81, 90, {81}),        # 81 at the lower edge, 80 below
    (70, 80, {80}),        # 80 at the upper edge, 81 above
    (80, 80, {80}),        # a one-port range
    (82, 100, set()),      # both below
], ids=["80-81", "81-90", "70-80", "80-80", "82-100"])
def test_end_port_ranges(start, end, open_ports):
    pol = netpol("x", "range", labels(pod="a"), ingress=[{"ports": [port(start, "TCP", end)]}])
    for p in (80, 81):
        check([pol], p, default=ALLOWED, exceptions=() if p in open_ports else pairs("*", "x/a"))
        check([pol], p, "UDP", default=ALLOWED, exceptions=pairs("*", "x/a"))
    e = Engine(make_namespaces(), [pol])
    for p in (start - 1, start, (start + end) // 2, end, end + 1):
        assert e.evaluate(PODS["y/a"], PODS["x/a"], p).allowed == (start <= p <= end), p


def test_end_port_range_on_egress():
    pol = netpol("x", "egress-range", {}, egress=[{"ports": [port(81, "UDP", 1000)]}])
    check([pol], 81, "UDP", default=ALLOWED)
    check([pol], 80, "UDP", default=ALLOWED, exceptions=pairs("x/*", "*"))
    check([pol], 81, "TCP", default=ALLOWED, exceptions=pairs("x/*", "*"))


# ==========================================================================
# policyTypes defaulting (pkg/apis/networking/v1/defaults.go) and rule lists


def test_policy_types_absent_with_egress_rules_is_ingress_and_egress():
    pol = raw_policy("x", "defaulted", {"podSelector": labels(pod="a"),
                                        "egress": [{"to": [pod_peer(labels(pod="b"))]}]})
    compiled = compile_policy(pol)
    assert compiled.ingress == () and compiled.egress is not None and len(compiled.egress) == 1
    check([pol], 80, default=ALLOWED,
          exceptions=pairs("*", "x/a") | (pairs("x/a", "*") - {("x/a", "x/b")}))


@pytest.mark.parametrize("spec_extra", [{"egress": []}, {"egress": [], "policyTypes": []}, {}],
                         ids=["egress-empty", "policyTypes-empty-list", "nothing"])
def test_policy_types_absent_with_empty_egress_is_ingress_only(spec_extra):
    pol = raw_policy("x", "defaulted", {"podSelector": labels(pod="a"), **spec_extra})
    compiled = compile_policy(pol)
    assert compiled.ingress == () and compiled.egress is None
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a"))
    v = verdict(e, "x/a", "y/a", 80)
    assert v.allowed and not v.egress.isolated and v.egress.selecting == ()


def test_policy_types_absent_with_only_ingress_is_ingress_only():
    pol = raw_policy("x", "defaulted", {"podSelector": labels(pod="a"),
                                        "ingress": [{"from": [pod_peer(labels(pod="b"))]}]})
    assert compile_policy(pol).egress is None
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a")})


def test_explicit_policy_types_ignore_rules_of_unlisted_direction():
    pol = raw_policy("x", "egress-only", {"podSelector": labels(pod="a"), "policyTypes": ["Egress"],
                                          "ingress": [{"from": [pod_peer(labels(pod="b"))]}],
                                          "egress": [{"to": [pod_peer(labels(pod="b"))]}]})
    compiled = compile_policy(pol)
    assert compiled.ingress is None
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*") - {("x/a", "x/b")})


@pytest.mark.parametrize("spec", [
    {"policyTypes": ["Ingress"], "ingress": []},
    {"policyTypes": ["Ingress"]},
], ids=["ingress-empty-list", "ingress-absent"])
def test_empty_or_absent_ingress_rule_list_denies_all(spec):
    pol = raw_policy("x", "deny", {"podSelector": {}, **spec})
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/*"))


@pytest.mark.parametrize("rule", [{}, {"from": []}, {"from": [], "ports": []}, {"ports": []}, None],
                         ids=["empty-rule", "from-empty", "from-and-ports-empty", "ports-empty", "null-rule"])
def test_rule_with_no_peers_allows_every_peer_including_external(rule):
    pol = raw_policy("x", "open", {"podSelector": labels(pod="a"), "ingress": [rule]})
    e = check([pol], 80, default=ALLOWED)
    outside = external("outside", "198.51.100.7")
    v = e.evaluate(outside, PODS["x/a"], 81, "SCTP")
    assert v.allowed and v.ingress.allowing == ("x/open ingress rule 1",)


def test_from_empty_with_ports_allows_every_peer_on_those_ports_only():
    pol = raw_policy("x", "port-80", {"podSelector": labels(pod="a"),
                                      "ingress": [{"from": [], "ports": [port(80)]}]})
    check([pol], 80, default=ALLOWED)
    check([pol], 81, default=ALLOWED, exceptions=pairs("*", "x/a"))
    e = Engine(make_namespaces(), [pol])
    outside = external("outside", "198.51.100.7")
    assert e.evaluate(outside, PODS["x/a"], 80).allowed
    assert not e.evaluate(outside, PODS["x/a"], 81).allowed


def test_egress_rule_to_empty_allows_every_destination_including_external():
    pol = netpol("x", "open-egress", {}, egress=[{"to": [], "ports": [port(443)]}])
    e = Engine(make_namespaces(), [pol])
    assert e.evaluate(PODS["x/a"], external("outside", "198.51.100.7"), 443).allowed
    check([pol], 80, default=ALLOWED, exceptions=pairs("x/*", "*"))


def test_rule_numbering_names_each_allowing_rule():
    pol = netpol("x", "multi", labels(pod="a"), ingress=[
        {"from": [pod_peer(labels(pod="c"))]},
        {"from": [ns_peer(ns_named("y"))], "ports": [port(80)]},
        {"from": [pod_peer({})]},
    ])
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("z/*", "x/a"))
    assert verdict(e, "x/c", "x/a", 80).ingress.allowing == ("x/multi ingress rule 1", "x/multi ingress rule 3")
    assert verdict(e, "y/b", "x/a", 80).ingress.allowing == ("x/multi ingress rule 2",)
    assert verdict(e, "x/b", "x/a", 80).ingress.allowing == ("x/multi ingress rule 3",)
    check([pol], 81, default=ALLOWED, exceptions=pairs(["y/*", "z/*"], "x/a"))


def test_unselected_pods_stay_open():
    pol = netpol("x", "only-a", labels(pod="a"), ingress=[], egress=[])
    e = check([pol], 80, default=ALLOWED, exceptions=pairs("x/a", "*") | pairs("*", "x/a"))
    v = verdict(e, "x/b", "x/c", 80)
    assert v.allowed
    for side in (v.egress, v.ingress):
        assert not side.isolated and side.selecting == () and side.allowing == ()
    # a policy in another namespace never selects pods here
    y_pol = netpol("y", "deny-all-y", {}, ingress=[], egress=[])
    e = check([y_pol], 80, default=ALLOWED, exceptions=pairs("y/*", "*") | pairs("*", "y/*"))
    assert verdict(e, "x/a", "z/a", 80).ingress.selecting == ()


def test_policies_in_other_namespaces_do_not_select_pods_with_the_same_labels():
    pol = netpol("y", "deny-a", labels(pod="a"), ingress=[])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "y/a"))


# ==========================================================================
# The node, and pods whose IP is unknown


def test_traffic_from_host_is_always_allowed():
    """The node's traffic to its pods (probes, port-forward) is not subject to NetworkPolicy."""
    deny_all = [netpol(ns, "deny-all", {}, ingress=[], egress=[]) for ns in NAMESPACES]
    only_pods = netpol("x", "only-pods", {}, ingress=[{"from": [pod_peer({}), ns_peer({})]}])
    for policies in (deny_all, [only_pods]):
        e = Engine(make_namespaces(), policies)
        for ep in PODS.values():
            for p in CONTAINER_PORTS:
                v = e.evaluate(HOST, ep, p.port, p.protocol)
                assert v.allowed, v.lines()
                assert not v.ingress.isolated and v.ingress.note


def test_host_agrees_between_allowed_matrix_and_evaluate():
    """allowed_matrix must also treat traffic from the node as allowed under default deny."""
    e = Engine(make_namespaces(), [netpol("x", "deny-all", {}, ingress=[], egress=[])])
    assert_paths_agree(e, [HOST] + list(PODS.values()))


def test_pods_with_unknown_ip_are_not_matched_by_ip_block():
    world = [ip_peer("0.0.0.0/0")]
    ing = netpol("x", "from-world", labels(pod="a"), ingress=[{"from": world}])
    egr = netpol("x", "to-world", labels(pod="a"), egress=[{"to": world}])
    outside = external("outside", "198.51.100.7")
    # no pod IP known: no pod is in 0.0.0.0/0
    e = check([ing], 80, default=ALLOWED, exceptions=pairs("*", "x/a"))
    assert e.evaluate(outside, PODS["x/a"], 80).allowed
    check([egr], 80, default=ALLOWED, exceptions=pairs("x/a", "*"))
    # with IPs known, they are
    check([ing], 80, default=ALLOWED, pods=make_pods(ips=True))
    check([egr], 80, default=ALLOWED, pods=make_pods(ips=True))
    # one pod without an IP among pods with IPs
    mixed = [ep if ep.key != "y/c" else Endpoint(key=ep.key, namespace=ep.namespace, name=ep.name,
                                                 labels=ep.labels, ports=ep.ports, ip=None)
             for ep in make_pods(ips=True)]
    check([ing], 80, default=ALLOWED, exceptions={("y/c", "x/a")}, pods=mixed)


def test_ip_block_except_on_ingress():
    pods = make_pods(ips=True)
    # 10.42.0.0/29 holds .0-.7 (x/a..y/c, z/a); except .4/30 = .4-.7 (y/a, y/b, y/c, z/a)
    pol = netpol("x", "cidr-except", labels(pod="a"),
                 ingress=[{"from": [ip_peer("10.42.0.0/29", "10.42.0.4/30")]}])
    check([pol], 80, default=ALLOWED,
          exceptions=pairs(["y/*", "z/*"], "x/a"), pods=pods)


# ==========================================================================
# Invalid input: one-line ManifestError naming the policy and the file

SOURCE = "policies/bad-netpol.yaml"


def _with_from(peer):
    return {"podSelector": {}, "ingress": [{"from": [peer]}]}


def _with_port(p):
    return {"podSelector": {}, "ingress": [{"ports": [p]}]}


INVALID = {
    "invalid-operator": {"podSelector": exprs(req("pod", "Equals", "a"))},
    "invalid-operator-in-peer": _with_from(pod_peer(exprs(req("pod", "Equals", "a")))),
    "in-without-values": _with_from(pod_peer(exprs(req("pod", "In")))),
    "in-with-empty-values": _with_from(ns_peer(exprs({"key": "ns", "operator": "In", "values": []}))),
    "notin-without-values": {"podSelector": exprs(req("pod", "NotIn"))},
    "exists-with-values": _with_from(pod_peer(exprs(req("pod", "Exists", "a")))),
    "doesnotexist-with-values": _with_from(ns_peer(exprs(req("ns", "DoesNotExist", "x")))),
    "endport-below-port": _with_port(port(81, "TCP", 80)),
    "endport-above-65535": _with_port(port(80, "TCP", 65536)),
    "endport-with-named-port": _with_port(port("serve-80-tcp", "TCP", 81)),
    "endport-without-port": _with_port({"endPort": 81}),
    "invalid-protocol": _with_port(port(80, "ICMP")),
    "lowercase-protocol": _with_port(port(80, "tcp")),
    "ipblock-with-pod-selector": _with_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
    "ipblock-with-ns-selector": _with_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}),
    "empty-peer": _with_from({}),
    "empty-peer-egress": {"podSelector": {}, "egress": [{"to": [{}]}]},
    "except-outside-cidr": _with_from(ip_peer("10.0.0.0/24", "192.168.0.0/24")),
    "except-wider-than-cidr": _with_from(ip_peer("10.0.0.0/24", "10.0.0.0/16")),
    "except-other-family": _with_from(ip_peer("10.0.0.0/8", "fd00::/64")),
    "bad-cidr-prefix": _with_from(ip_peer("10.0.0.0/33")),
    "bad-cidr-text": _with_from(ip_peer("not-a-cidr")),
    "bad-cidr-octet": _with_from(ip_peer("300.0.0.0/8")),
    "bad-except": _with_from(ip_peer("10.0.0.0/8", "10.0.0.0/99")),
    "ipblock-without-cidr": _with_from({"ipBlock": {"except": ["10.0.0.0/24"]}}),
    "invalid-policy-type": {"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]},
    "lowercase-policy-type": {"podSelector": {}, "policyTypes": ["ingress"]},
    "port-zero": _with_port(port(0)),
    "port-out-of-range": _with_port(port(65536)),
    "port-negative": _with_port(port(-1)),
    "port-invalid-name": _with_port(port("Serve_80")),
    "port-name-too-long": _with_port(port("a-very-long-port-name")),
    "port-name-all-digits": _with_port(port("8080")),
    "unknown-peer-field": _with_from({"podSelectr": {}}),
    "unknown-rule-field": {"podSelector": {}, "ingress": [{"to": []}]},
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_policies_raise_one_line_manifest_error(name):
    pol = raw_policy("x", name, INVALID[name])
    with pytest.raises(ManifestError) as info:
        compile_policy(pol, SOURCE)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert f"NetworkPolicy x/{name}" in msg, msg
    assert SOURCE in msg, msg
    assert info.value.path == SOURCE and info.value.obj == f"NetworkPolicy x/{name}"


def test_engine_refuses_an_invalid_policy():
    with pytest.raises(ManifestError, match="NetworkPolicy y/broken"):
        Engine(make_namespaces(), [raw_policy("y", "broken", _with_port(port(80, "ICMP")))])


def test_valid_edge_values_compile():
    for spec in (_with_port(port(1)), _with_port(port(65535)), _with_port(port(1, "SCTP", 65535)),
                 _with_port(port(80, "UDP", 80)), _with_port(port("abcdefghijklmno")),
                 _with_from(ip_peer("10.0.0.0/8", "10.1.0.0/16", "10.2.3.4/32")),
                 _with_from(ip_peer("fd00::/48", "fd00::/64")),
                 _with_from(pod_peer(exprs(req("pod", "Exists"), req("ns", "DoesNotExist"))))):
        compile_policy(raw_policy("x", "ok", spec), SOURCE)


def test_except_equal_to_cidr_is_invalid():
    """The API server requires each except to be a STRICT subset of cidr
    (ValidateIPBlock: cidrMaskLen >= exceptMaskLen is "must be a strict subset of `cidr`")."""
    pol = raw_policy("x", "except-equals-cidr", _with_from(ip_peer("10.0.0.0/24", "10.0.0.0/24")))
    _assert_refused(pol, "ipBlock except 10.0.0.0/24 equal to cidr 10.0.0.0/24 was accepted; the API server "
                         "refuses it (\"must be a strict subset of `cidr`\")")


@pytest.mark.parametrize("name", ["a--b", "serve--80"])
def test_port_name_with_consecutive_hyphens_is_invalid(name):
    """IsValidPortName (apimachinery): "must not contain consecutive hyphens"."""
    pol = raw_policy("x", "double-hyphen", _with_port(port(name)))
    _assert_refused(pol, f"port name {name!r} was accepted; the API server refuses it "
                         "(\"must not contain consecutive hyphens\")")


def _assert_refused(pol: dict, why: str) -> None:
    try:
        compile_policy(pol, SOURCE)
    except ManifestError as err:
        msg = str(err)
        assert "\n" not in msg and f"NetworkPolicy x/{pol['metadata']['name']}" in msg and SOURCE in msg, msg
    else:
        pytest.fail(f"ENGINE BUG: {why}")


@pytest.mark.parametrize("peer", [{"podSelector": None}, {"namespaceSelector": None},
                                  {"podSelector": None, "namespaceSelector": None}],
                         ids=["podSelector-null", "namespaceSelector-null", "both-null"])
def test_peer_with_only_null_selectors_is_an_empty_peer(peer):
    """A null selector is "not set" (the engine's own docstring); a peer with nothing set is refused
    by the API server ("must specify a peer"), like ``{}``."""
    _assert_refused(raw_policy("x", "null-peer", _with_from(peer)),
                    f"peer {peer!r} (no selector set) was accepted and read as {{}} (match all); the API "
                    "server refuses it (\"must specify a peer\")")


def test_null_namespace_selector_means_own_namespace():
    """``namespaceSelector: null`` (e.g. a bare ``namespaceSelector:`` in YAML) is "not set": the
    podSelector then picks pods in the policy's own namespace, not in every namespace."""
    pol = netpol("x", "null-ns", labels(pod="a"),
                 ingress=[{"from": [{"podSelector": labels(pod="b"), "namespaceSelector": None}]}])
    check([pol], 80, default=ALLOWED, exceptions=pairs("*", "x/a") - {("x/b", "x/a")})


# ==========================================================================
# Randomized: the bitset path agrees with evaluate on random clusters

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


@pytest.mark.parametrize("seed", range(30))
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
