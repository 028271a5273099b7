"""Live probes: can this pod open a connection to that address and port?

A probe of TCP or SCTP is ``agnhost connect HOST:PORT`` in the source pod,
as the upstream e2e network policy tests do (the stand-ins run the agnhost
image). agnhost exits 0 when the connection is made, otherwise 1 with one
word on stderr (test/images/agnhost/connect/connect.go):

    TIMEOUT   nothing answered in time: a policy dropped it
    REFUSED   rejected: a policy that REJECTs (k3s's kube-router answers a
              denied packet with ICMP port-unreachable), or nothing listens
    DNS       the name did not resolve
    OTHER     another network error ("no route to host")
    UNKNOWN   bad arguments

DNS over UDP is probed with a real DNS query, ``nslookup`` (busybox, in the
agnhost image) against the DNS pod's address under ``timeout``: any answer,
even NXDOMAIN, means the path is open; silence until the timeout means a
policy dropped it. (agnhost's own UDP payload, "hostname\n", is shorter
than a DNS header, so a DNS server never answers it: allowed and dropped
would look the same.) Other UDP ports are probed with ``agnhost connect``;
its silence is read as dropped only when the caller says the servers answer
that payload (``udp_echo``: ``agnhost netexec`` answers "hostname"), and is
otherwise unprobed.

What a refusal means depends on the CNI, so it is read with the cluster's
deny behaviour, which the canary measures (``cluster.live.setup.canary``):
``reject`` (kube-router, the policy controller built into k3s, answers a
denied packet with ICMP port-unreachable): every probed port has a listener,
so a refusal is a policy rejecting the packet, blocked. ``drop`` (Calico,
Cilium): a denied packet is dropped and times out, so a refusal means the
packet reached the pod and was turned away there: the path is open, and a
refusal where the policies block is a mismatch. ``unknown`` (never
measured): a refusal cannot be read either way.

Many probes at once: cluster.live.observe.probebatch (one exec per source
pod) and cluster.live.observe.prober (a whole matrix, re-polled).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cluster.errors import DashiError
from cluster.invoked import command
from cluster.seams.kube import Kube

KINDS = ("connected", "timeout", "refused", "dns", "other", "unprobed")
# The agnhost binary's path in registry.k8s.io/e2e-test-images/agnhost.
AGNHOST = "/agnhost"
# Exec round-trips (API server -> kubelet -> runtime) add to agnhost's own
# timeout; past this much extra the exec itself is considered hung.
EXEC_GRACE_S = 15.0


DENY_BEHAVIOURS = ("drop", "reject", "unknown")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    kind: str  # one of KINDS
    detail: str = ""
    deny_behaviour: str = "reject"  # how a refusal reads: see the module docstring

    @property
    def allowed(self) -> bool | None:
        """What the probe says about the network path: True (connected, or
        refused under a CNI that drops), False (dropped, or refused under one
        that rejects), None (cannot tell: DNS, other errors, unprobed, a
        refusal under an unknown CNI)."""
        if self.kind == "connected":
            return True
        if self.kind == "timeout":
            return False
        if self.kind == "refused":
            return {"reject": False, "drop": True}.get(self.deny_behaviour)
        return None


def go_duration(seconds: float) -> str:
    """A Go duration string agnhost's --timeout accepts (1s, 500ms)."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise DashiError(f"probe timeout must be positive, got {seconds}")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def host_port(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def connect_argv(host: str, port: int, protocol: str = "TCP", timeout_s: float = 1.0) -> list[str]:
    return [AGNHOST, "connect", host_port(host, port), f"--timeout={go_duration(timeout_s)}",
            f"--protocol={protocol.lower()}"]


_REFUSED = {
    "reject": "connection refused: rejected by a policy (this cluster's CNI rejects denied packets)",
    "drop": "connection refused: the packet reached the pod (this cluster's CNI drops denied packets, "
            "so no policy stopped it) and nothing accepted it",
    "unknown": "connection refused: whether that is a policy depends on the CNI, and this cluster's deny "
               "behaviour was never measured ({prepare}, or {cluster_up}, runs the canary that measures it)",
}


def refusal_reading(deny_behaviour: str) -> str:
    return _REFUSED[deny_behaviour].format(prepare=command("prepare"), cluster_up=command("cluster-up"))


def classify(returncode: int, stderr: str, protocol: str = "TCP", deny_behaviour: str = "reject",
             udp_echo: bool = False) -> ProbeResult:
    """Turn agnhost connect's exit code and stderr into a ProbeResult
    (``udp_echo``: the UDP server answers agnhost's payload, so silence is a drop)."""
    text = (stderr or "").strip()
    first = text.splitlines()[0] if text else ""
    if returncode == 0:
        return ProbeResult(True, "connected", "reply received" if protocol.upper() == "UDP" else "")
    if returncode in (126, 127) or "executable file not found" in text:
        return ProbeResult(False, "other", "agnhost is not in this pod's image "
                                           f"(the stand-ins run e2e-test-images/agnhost): {first}")
    if first.startswith("TIMEOUT"):
        if protocol.upper() == "UDP" and not udp_echo:
            return ProbeResult(False, "unprobed",
                               "UDP: no reply in time; agnhost's payload gets no answer from a DNS server "
                               "even when allowed, so silence cannot tell dropped from allowed")
        return ProbeResult(False, "timeout", "no answer in time: dropped")
    if first.startswith("REFUSED"):
        if deny_behaviour not in DENY_BEHAVIOURS:
            raise DashiError(f"deny behaviour must be one of {', '.join(DENY_BEHAVIOURS)}, not {deny_behaviour!r}")
        return ProbeResult(False, "refused", refusal_reading(deny_behaviour), deny_behaviour)
    if first.startswith("DNS"):
        return ProbeResult(False, "dns", first)
    return ProbeResult(False, "other", first or f"exit {returncode} with no message")


def connect(kube: Kube, namespace: str, pod: str, host: str, port: int, protocol: str = "TCP",
            timeout_s: float = 1.0, deny_behaviour: str = "reject", udp_echo: bool = False) -> ProbeResult:
    """Probe host:port from a pod with ``agnhost connect``.

    Raises KubeError when the exec itself fails (pod gone, API error); a
    failed connection is a result, not an error.
    """
    argv = connect_argv(host, port, protocol, timeout_s)
    res = kube.exec(namespace, pod, argv, timeout=timeout_s + EXEC_GRACE_S)
    return classify(res.returncode, res.stderr, protocol, deny_behaviour, udp_echo)
