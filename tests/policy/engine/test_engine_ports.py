"""Ports: named ports (resolved on the destination pod, by name AND
protocol) and endPort ranges, on ingress and egress.
"""

from __future__ import annotations

import pytest

from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import Port
from support.engine_builders import (ALLOWED, CONTAINER_PORTS, PODS, check, labels, make_namespaces, make_pods, netpol, pairs,
                             port)


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
