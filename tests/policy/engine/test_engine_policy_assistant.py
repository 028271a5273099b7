"""policy-assistant's (cyclonus) "ingress port allowed" truth tables
(integration_test.go): only 80/UDP into x/a.
"""

from __future__ import annotations

import pytest

from support.engine_builders import ALLOWED, check, labels, netpol, pairs, port


@pytest.mark.parametrize("port_no,protocol,blocked", [
    (80, "TCP", True), (81, "TCP", True), (81, "UDP", True), (80, "UDP", False), (80, "SCTP", True)])
def test_policy_assistant_ingress_port_allowed(port_no, protocol, blocked):
    pol = netpol("x", "base", labels(pod="a"), ingress=[{"ports": [port(80, "UDP")]}])
    check([pol], port_no, protocol, default=ALLOWED, exceptions=pairs("*", "x/a") if blocked else ())
