"""Invalid input: a one-line ManifestError naming the policy and the file
for every value the API server refuses, and the edge values it accepts.
"""

from __future__ import annotations

import pytest

from cluster.errors import ManifestError
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine
from support.engine_builders import (ALLOWED, check, exprs, ip_peer, labels, make_namespaces, netpol, ns_peer, pairs, pod_peer,
                             port, raw_policy, req)


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
