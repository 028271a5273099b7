"""The upstream e2e suite's "NetworkPolicy between server and client" cases
(kubernetes test/e2e/network/netpol/network_policy.go), on TCP and, where
upstream runs them too, UDP and SCTP: each an exact truth table over the
universe of tests/support/engine_builders.py, and the verdicts naming the policies
and rules that decided.

Upstream "updated policy / namespace / pod" cases become: evaluate, change the
policy set or the labels, evaluate again.
"""

from __future__ import annotations

import pytest

from cluster.policy.engine.evaluate import Engine
from support.engine_builders import (ALLOWED, NAMESPACES, NS_NAME, PODS, PODS_WITH_IPS, assert_paths_agree, check, exprs,
                             external, ip_peer, labels, make_namespaces, make_pods, netpol, ns_named, ns_peer,
                             ns_pod_peer, pairs, pod_ip, pod_peer, port, req, verdict)


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
