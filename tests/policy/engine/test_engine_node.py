"""The node (its traffic to its own pods is always allowed, on both paths)
and pods whose IP is unknown (no ipBlock matches them).
"""

from __future__ import annotations

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import HOST, Endpoint
from support.engine_builders import (ALLOWED, CONTAINER_PORTS, NAMESPACES, PODS, assert_paths_agree, check, external, ip_peer,
                             labels, make_namespaces, make_pods, netpol, ns_peer, pairs, pod_peer)


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
