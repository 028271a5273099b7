"""Live probes: can this pod open a connection to that address and port?

One probe is one ``agnhost connect HOST:PORT`` exec'd in the source pod, as
the upstream e2e network policy tests do (the stand-ins run the agnhost
image). agnhost exits 0 when the connection is made, otherwise 1 with one
word on stderr (test/images/agnhost/connect/connect.go):

    TIMEOUT   nothing answered in time: a policy dropped it
    REFUSED   rejected: a policy that REJECTs (k3s's kube-router answers a
              denied packet with ICMP port-unreachable), or nothing listens
    DNS       the name did not resolve
    OTHER     another network error ("no route to host")
    UNKNOWN   bad arguments

UDP has no handshake: agnhost sends a payload ("hostname\\n") and waits for
a reply. A DNS server drops a 9-byte message without answering (it is
shorter than a DNS header), so against cluster DNS an allowed probe and a
dropped one both time out. A UDP timeout is therefore reported as
``unprobed``, never guessed; a UDP reply proves the path is open.

What a refusal means depends on the CNI, so it is read with the cluster's
deny behaviour, which the canary measures (``cluster.live.canary``):
``reject`` (kube-router, the policy controller built into k3s, answers a
denied packet with ICMP port-unreachable): every probed port has a listener,
so a refusal is a policy rejecting the packet, blocked. ``drop`` (Calico,
Cilium): a denied packet is dropped and times out, so a refusal means the
packet reached the pod and was turned away there: the path is open, and a
refusal where the policies block is a mismatch. ``unknown`` (never
measured): a refusal cannot be read either way.

``MatrixProber`` runs a whole matrix on a bounded thread pool (every probe of
every source is one job, so a matrix costs about ceil(probes / workers)
probe timeouts, not their sum), then re-polls only the probes that disagree
with the expectation, every ``poll_interval`` up to ``poll_timeout`` (1 s and
10 s, upstream e2e's numbers): CNIs program policies asynchronously, and a
probe right after an apply may see the old rules.
"""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping

from cluster.errors import DashiError, KubeError
from cluster.live.discovery import Target
from cluster.live.kube import Kube
from cluster.live.poll import poll_until
from cluster.policy.engine import Edge

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
               "behaviour was never measured (inv prepare, or inv cluster-up, runs the canary that measures it)",
}


def classify(returncode: int, stderr: str, protocol: str = "TCP", deny_behaviour: str = "reject") -> ProbeResult:
    """Turn agnhost connect's exit code and stderr into a ProbeResult."""
    text = (stderr or "").strip()
    first = text.splitlines()[0] if text else ""
    if returncode == 0:
        return ProbeResult(True, "connected", "reply received" if protocol.upper() == "UDP" else "")
    if returncode in (126, 127) or "executable file not found" in text:
        return ProbeResult(False, "other", "agnhost is not in this pod's image "
                                           f"(the stand-ins run e2e-test-images/agnhost): {first}")
    if first.startswith("TIMEOUT"):
        if protocol.upper() == "UDP":
            return ProbeResult(False, "unprobed",
                               "UDP: no reply in time; agnhost's payload gets no answer from a DNS server "
                               "even when allowed, so silence cannot tell dropped from allowed")
        return ProbeResult(False, "timeout", "no answer in time: dropped")
    if first.startswith("REFUSED"):
        if deny_behaviour not in DENY_BEHAVIOURS:
            raise DashiError(f"deny behaviour must be one of {', '.join(DENY_BEHAVIOURS)}, not {deny_behaviour!r}")
        return ProbeResult(False, "refused", _REFUSED[deny_behaviour], deny_behaviour)
    if first.startswith("DNS"):
        return ProbeResult(False, "dns", first)
    return ProbeResult(False, "other", first or f"exit {returncode} with no message")


def connect(kube: Kube, namespace: str, pod: str, host: str, port: int, protocol: str = "TCP",
            timeout_s: float = 1.0, deny_behaviour: str = "reject") -> ProbeResult:
    """Probe host:port from a pod with ``agnhost connect``.

    Raises KubeError when the exec itself fails (pod gone, API error); a
    failed connection is a result, not an error.
    """
    argv = connect_argv(host, port, protocol, timeout_s)
    res = kube.exec(namespace, pod, argv, timeout=timeout_s + EXEC_GRACE_S)
    return classify(res.returncode, res.stderr, protocol, deny_behaviour)


# --------------------------------------------------------------------------
# Running a matrix


@dataclass(frozen=True)
class Observation:
    edge: Edge
    result: ProbeResult
    attempts: int = 1
    target: Target | None = None
    seconds: float = 0.0  # from the first probe of this edge to its last

    @property
    def allowed(self) -> bool | None:
        return self.result.allowed


def agrees(obs: Observation, predicted: bool | None) -> bool:
    """Whether an observation settles the edge: it matches the prediction, or
    it cannot be probed at all (re-polling would not change that)."""
    if obs.result.kind == "unprobed":
        return True
    if predicted is None:
        return obs.allowed is not None
    return obs.allowed is predicted


@dataclass
class MatrixRun:
    observations: dict[Edge, Observation]
    seconds: float  # wall time of the whole run, polls included
    first_pass_seconds: float
    probes: int  # execs made
    workers: int


class MatrixProber:
    """Probe many edges at once on a bounded pool; re-poll the disagreeing ones."""

    def __init__(self, kube: Kube, *, workers: int = 64, timeout_s: float = 1.0,
                 poll_interval: float = 1.0, poll_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 deny_behaviour: str = "reject"):
        if workers < 1:
            raise DashiError(f"probe workers must be at least 1, got {workers}")
        self.kube = kube
        self.workers = workers
        self.timeout_s = timeout_s
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self.clock = clock
        self.sleep = sleep
        self.deny_behaviour = deny_behaviour

    def _one(self, target: Target) -> ProbeResult:
        try:
            return connect(self.kube, target.namespace, target.pod, target.host, target.port,
                           target.protocol, self.timeout_s, self.deny_behaviour)
        except KubeError as e:
            return ProbeResult(False, "other", f"exec failed: {e}")

    def _round(self, pool: ThreadPoolExecutor, jobs: dict[Edge, Target]) -> dict[Edge, ProbeResult]:
        futures = {edge: pool.submit(self._one, t) for edge, t in jobs.items()}
        return {edge: f.result() for edge, f in futures.items()}

    def run(self, targets: Mapping[Edge, Target | str],
            predicted: Mapping[Edge, bool] | None = None) -> MatrixRun:
        """Probe every target; then re-poll those that disagree with ``predicted``
        (or gave no answer) until they agree or ``poll_timeout`` passes."""
        predicted = predicted or {}
        start = self.clock()
        obs: dict[Edge, Observation] = {}
        probable = {e: t for e, t in targets.items() if isinstance(t, Target)}
        for edge, why in targets.items():
            if not isinstance(why, Target):
                obs[edge] = Observation(edge, ProbeResult(False, "unprobed", why), 0, None)
        probes = 0
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="probe")
        try:
            for edge, res in self._round(pool, probable).items():
                obs[edge] = Observation(edge, res, 1, probable[edge], 0.0)
            probes += len(probable)
            first_pass = self.clock() - start
            pending = {e for e in probable if not agrees(obs[e], predicted.get(e))}
            rounds = 0

            def settled() -> tuple[bool, str]:
                # The first call only looks at the first pass; each later one
                # re-probes what still disagrees.
                nonlocal pending, probes, rounds
                if rounds:
                    again = self._round(pool, {e: probable[e] for e in sorted(pending, key=str)})
                    probes += len(again)
                    now = self.clock()
                    for edge, res in again.items():
                        prev = obs[edge]
                        obs[edge] = Observation(edge, res, prev.attempts + 1, prev.target, now - start)
                    pending = {e for e in pending if not agrees(obs[e], predicted.get(e))}
                rounds += 1
                return not pending, f"{len(pending)} edge(s) disagree"

            poll_until(settled, timeout_s=self.poll_timeout, interval_s=self.poll_interval, clock=self.clock,
                       sleep=self.sleep)
        finally:
            # On Ctrl-C, drop the queued probes instead of running them all;
            # the ones in flight end within one probe timeout.
            pool.shutdown(wait=True, cancel_futures=True)
        return MatrixRun(obs, self.clock() - start, first_pass, probes, self.workers)
