"""policyTypes defaulting (pkg/apis/networking/v1/defaults.go) and rule
lists: absent or empty rules, peers and ports, rule numbering, and which
pods a policy selects.
"""

from __future__ import annotations

import pytest

from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine
from support.engine_builders import (ALLOWED, PODS, check, external, labels, make_namespaces, netpol, ns_named, ns_peer, pairs,
                             pod_peer, port, raw_policy, verdict)


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
