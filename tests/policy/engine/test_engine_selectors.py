"""Selectors in policies: the matchExpressions operators on pods and on
namespaces (NotIn and DoesNotExist match those without the key),
matchLabels AND matchExpressions, and a peer's two selectors (AND) against
two peers (OR).
"""

from __future__ import annotations

import pytest

from support.engine_builders import (ALLOWED, KEYS, check, exprs, labels, make_namespaces, make_pods, netpol, ns_named,
                             ns_peer, ns_pod_peer, pairs, pod_peer, req)


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
