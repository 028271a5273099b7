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

Batches: all probes from one source pod run in ONE exec, concurrently
inside the pod (``BATCH_SCRIPT``, a POSIX sh loop that backgrounds each
probe and waits), so a matrix costs one exec per source and about one probe
timeout, not one exec per edge. A pod without a shell falls back to one
exec per edge (``agnhost connect``; DNS over UDP is then unprobed), and the
report says which was used.

``MatrixProber`` runs the sources on a bounded pool of daemon threads
(``DaemonPool``: Ctrl-C ends the run at once; an exec still in flight is
left to end with the process), then re-polls the probes that disagree with
the prediction (the whole matrix when it is small, ``WHOLE_PASS_MAX``) as
soon as a round returns (``poll_interval`` is the least time between the
starts of two rounds, 0.2 s by default: a round of probes takes longer, so
there is no fixed wait) up to ``poll_timeout`` (10 s, upstream e2e's
number): CNIs program policies asynchronously, and a probe right after an
apply may see the old rules. An edge that agreed in such a pass may have
agreed by the old rules (an allow the new policy takes away), so once the
re-polled edges agree the whole matrix is probed once more unless that
re-poll was a whole pass, and the run ends only on a whole pass that agrees,
as upstream e2e's full-matrix polling does. The run records when the
matrix first matched (time to enforce). A round in which no exec stream
opened at all (each one's opening bounded by the Kube seam) says nothing
about the policies: the run stops with ``KubeUnreachable``, an
interruption, instead of re-polling and counting every edge as failed.
"""

from __future__ import annotations

import ipaddress
import math
import queue
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Mapping

from cluster.errors import DashiError, KubeError, KubeUnreachable
from cluster.invoked import command
from cluster.live.observe.discovery import Target
from cluster.live.observe.poll import poll_until
from cluster.policy.engine.model import Edge
from cluster.seams.kube import ExecResult, Kube

KINDS = ("connected", "timeout", "refused", "dns", "other", "unprobed")
# The agnhost binary's path in registry.k8s.io/e2e-test-images/agnhost.
AGNHOST = "/agnhost"
# Exec round-trips (API server -> kubelet -> runtime) add to agnhost's own
# timeout; past this much extra the exec itself is considered hung.
EXEC_GRACE_S = 15.0


DENY_BEHAVIOURS = ("drop", "reject", "unknown")
# Up to this many probes, a re-poll probes the whole matrix, not only the
# edges that disagree: a wave costs about one probe timeout however many
# edges it holds, and a re-poll that agrees must be followed by a whole pass
# anyway (see MatrixProber.run), so for a small matrix this saves a wave. A
# probe is a process in the source pod (about 1.2 ms of CPU with nc): past
# this many, re-polling only what disagrees costs less.
WHOLE_PASS_MAX = 1000


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


def _refused(deny_behaviour: str) -> str:
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
        return ProbeResult(False, "refused", _refused(deny_behaviour), deny_behaviour)
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


# --------------------------------------------------------------------------
# One exec per source pod

SHELL = "/bin/sh"
# Arguments after the script: agnhost's path, agnhost's --timeout, the
# timeout in whole seconds for nc and nslookup (busybox takes integers),
# the TCP tool ("auto": nc when it passes the self-check below, or
# "agnhost"; DASHI_PROBE_TCP), the deadline (below), then one (index,
# kind, target) triple per probe: kind tcp or sctp with
# target HOST:PORT, or dns with target HOST. Every probe runs in the
# background; each prints one line "@@ INDEX EXITCODE OUTPUT" (one write, so
# lines from concurrent probes never interleave).
#
# TCP goes through busybox nc when the pod's nc passes a self-check (a
# connection to a closed port on the pod's own loopback must say "refused",
# and loopback is never subject to NetworkPolicy): an agnhost process costs
# about 40 ms of CPU, nc about 1.5 ms, and a matrix runs hundreds of them.
# nc's answers are rewritten to agnhost's words (TIMEOUT, REFUSED, OTHER).
# Otherwise, and for SCTP, agnhost connect, in waves of 32 so that a large
# batch cannot exhaust the pod's memory. Any DNS answer proves the path, so
# the name asked for (kubernetes.default) need not resolve. An output is
# folded to one line by a pipeline only when it is not already one of the
# words: that pipeline is three processes and a subshell, and skipping it
# halves a probe's CPU (busybox 1.35: 2.5 -> 1.2 ms per connected probe).
#
# The deadline (the fifth argument, seconds, 0 for none): busybox's nc and
# timeout count whole seconds, so with nc a watchdog ends the batch: T
# seconds after the last probe started, it makes one more connection itself
# (nc to a closed port on the pod's own loopback, refused at once and never
# subject to NetworkPolicy), and only once that is done prints "@@ deadline"
# and ends every probe still waiting. Such a probe has had at least T
# seconds without an answer (a timeout: dropped), and the pod was able to
# start a process and make a connection after them: a pod too busy to run
# its probes in time delays its own deadline as much. agnhost (SCTP, or no
# usable nc) takes the timeout itself, in milliseconds.
BATCH_SCRIPT = r"""a=$1; t=$2; d=$3; m=$4; T=$5; shift 5
n=agnhost
if [ "$m" = auto ]; then
  case "$(nc -w 1 127.0.0.1 1 -e true 2>&1 </dev/null)" in *efused*) n=nc;; esac
fi
echo "@@ tool $n"
j=0; q=
while [ $# -ge 3 ]; do
  ( i=$1; k=$2; h=$3
    case $k in
      dns) o=$(timeout "$d" nslookup -type=a kubernetes.default "$h" 2>&1); c=$? ;;
      tcp) if [ "$n" = nc ]; then
             p=${h##*:}; h=${h%:*}; h=${h#\[}; h=${h%\]}
             o=$(nc -w "$d" "$h" "$p" -e true 2>&1 </dev/null); c=$?
             if [ "$c" != 0 ]; then
               case $o in *efused*) o=REFUSED;; *imed\ out*|*imeout*) o=TIMEOUT;; *) o="OTHER: $o";; esac
             fi
           else o=$("$a" connect "$h" --timeout="$t" --protocol=tcp 2>&1); c=$?; fi ;;
      *) o=$("$a" connect "$h" --timeout="$t" --protocol="$k" 2>&1); c=$? ;;
    esac
    case $o in ''|REFUSED|TIMEOUT) ;; *) o=$(printf '%s' "$o" | tr '\n' ' ' | cut -c1-300) ;; esac
    printf '@@ %s %s %s\n' "$i" "$c" "$o" ) &
  q="$q $!"
  shift 3
  j=$((j + 1))
  if [ "$n" = agnhost ] && [ "$j" -ge 32 ]; then wait; j=0; q=; fi
done
if [ "$n" = nc ] && [ "$T" != 0 ]; then
  ( sleep "$T" </dev/null >/dev/null 2>&1; nc -w 1 127.0.0.1 1 -e true </dev/null >/dev/null 2>&1
    echo "@@ deadline"; kill $q 2>/dev/null ) &
  w=$!
  wait $q
  kill $w 2>/dev/null
fi
wait
"""
BATCH_NAME = "dashi-probe"  # $0 of the script, so it is recognisable in ps

# The same batch, run again and again by one shell that stays in the source
# pod for a whole rollout: each line on its stdin is "ID" and the batch's
# arguments; it answers with the batch's lines and "@@ end ID". Starting an
# exec (API server, kubelet, the runtime's exec of a new process) costs
# about as much as a whole round of probes; a shell kept open pays it once
# per pod. Words are split on spaces with globbing off (an IPv6 target is
# "[addr]:port"); the probes' stdin is /dev/null, so none of them can read
# the next request.
SESSION_SCRIPT = "set -f\nb() {\n" + BATCH_SCRIPT + """}
while read -r line; do
  set -- $line; id=$1; shift
  b "$@" </dev/null
  echo "@@ end $id"
done
"""
SESSION_NAME = "dashi-probes"


def deadline_arg(timeout_s: float) -> str:
    """The batch deadline for ``timeout_s``: none (0) when it is whole
    seconds, which nc and nslookup keep themselves."""
    return "0" if float(timeout_s).is_integer() else f"{timeout_s:g}"


def is_dns_udp(target: Target) -> bool:
    """UDP to port 53 is a DNS probe: asked with a real query."""
    return target.protocol.upper() == "UDP" and target.port == 53


TCP_TOOLS = ("auto", "agnhost")


def batch_argv(targets: list[Target], timeout_s: float = 1.0, agnhost: str = AGNHOST,
               tcp_tool: str = "auto") -> list[str]:
    """One exec that probes every target from the same pod concurrently."""
    if tcp_tool not in TCP_TOOLS:
        raise DashiError(f"unknown TCP probe tool {tcp_tool!r} (DASHI_PROBE_TCP: {', '.join(TCP_TOOLS)})")
    return [SHELL, "-c", BATCH_SCRIPT, BATCH_NAME, *batch_args(targets, timeout_s, agnhost, tcp_tool)]


def batch_args(targets: list[Target], timeout_s: float = 1.0, agnhost: str = AGNHOST,
               tcp_tool: str = "auto") -> list[str]:
    """The batch script's arguments: its settings, then one triple per target."""
    args = [agnhost, go_duration(timeout_s), str(max(1, math.ceil(timeout_s))), tcp_tool, deadline_arg(timeout_s)]
    for i, t in enumerate(targets):
        if is_dns_udp(t):
            args += [str(i), "dns", t.host]
        else:
            args += [str(i), t.protocol.lower(), host_port(t.host, t.port)]
    return args


def classify_dns(returncode: int, output: str, deny_behaviour: str = "reject") -> ProbeResult:
    """busybox nslookup under timeout: an answer (any, NXDOMAIN too) means the
    UDP path is open; "Connection refused" is read with the deny behaviour,
    as a TCP refusal is; silence until timeout kills it (exit 143, or 124
    from coreutils) a dropping policy."""
    text = " ".join((output or "").split())
    if returncode == 0 or "Server:" in text or "can't find" in text:
        return ProbeResult(True, "connected", "DNS answered over UDP")
    if "onnection refused" in text:
        return ProbeResult(False, "refused", "DNS query refused: " + _refused(deny_behaviour).split(": ", 1)[1],
                           deny_behaviour)
    if returncode in (124, 137, 143) or "timed out" in text or "no servers could be reached" in text:
        return ProbeResult(False, "timeout", "no DNS answer in time: dropped")
    if returncode in (126, 127) or "not found" in text:
        return ProbeResult(False, "other", f"nslookup or timeout is missing in this pod's image: {text[:120]}")
    return ProbeResult(False, "other", text[:200] or f"exit {returncode} with no message")


class NoShell(Exception):
    """The source pod has no shell: probe it one exec per edge instead."""


def parse_batch(targets: list[Target], res: ExecResult, deny_behaviour: str = "reject",
                udp_echo: bool = False) -> list[ProbeResult]:
    """The per-probe results of one batch exec, in the order of ``targets``."""
    lines: dict[int, tuple[int, str]] = {}
    deadline = False
    for line in res.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0] == "@@" and parts[1].isdigit() and parts[2].lstrip("-").isdigit():
            lines[int(parts[1])] = (int(parts[2]), parts[3] if len(parts) > 3 else "")
        elif line == "@@ deadline":
            deadline = True
    if not lines and (res.returncode in (126, 127) or "executable file not found" in res.stderr
                      or "no such file" in res.stderr.lower()):
        raise NoShell(res.stderr.strip()[:200])
    out = []
    for i, t in enumerate(targets):
        if i not in lines and deadline:
            out.append(ProbeResult(False, "timeout", "no answer by the batch deadline: dropped"))
            continue
        if i not in lines:
            why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exec exit {res.returncode}"
            out.append(ProbeResult(False, "other", f"no result from the probe batch: {why[:160]}"))
            continue
        rc, text = lines[i]
        out.append(classify_dns(rc, text, deny_behaviour) if is_dns_udp(t)
                   else classify(rc, text, t.protocol, deny_behaviour, udp_echo))
    return out


def batch_tool(res: ExecResult) -> str | None:
    """Which program the batch used for TCP ("nc" or "agnhost")."""
    for line in res.stdout.splitlines():
        if line.startswith("@@ tool "):
            return line.split()[2] if len(line.split()) > 2 else None
    return None


class ProbeSession:
    """A shell kept open in one source pod (``SESSION_SCRIPT``) that runs
    one batch per request. Raises KubeError when the session fails; it is
    then closed and the caller falls back to one exec."""

    def __init__(self, kube: Kube, namespace: str, pod: str):
        self.session = kube.open_exec(namespace, pod, [SHELL, "-c", SESSION_SCRIPT, SESSION_NAME])
        self.requests = 0

    def batch(self, targets: list[Target], timeout_s: float, tcp_tool: str,
              deny_behaviour: str, udp_echo: bool = False) -> tuple[list[ProbeResult], str | None]:
        self.requests += 1
        rid = str(self.requests)
        self.session.send(" ".join([rid, *batch_args(targets, timeout_s, tcp_tool=tcp_tool)]) + "\n")
        text = self.session.read_until(f"@@ end {rid}", timeout_s + EXEC_GRACE_S)
        res = ExecResult(0, text, "")
        if not any(line.startswith("@@ tool ") for line in text.splitlines()):
            raise KubeError("the probe session answered without running its batch")
        return parse_batch(targets, res, deny_behaviour, udp_echo), batch_tool(res)

    def close(self) -> None:
        self.session.close()


def connect_batch(kube: Kube, namespace: str, pod: str, targets: list[Target],
                  timeout_s: float = 1.0, tcp_tool: str = "auto",
                  deny_behaviour: str = "reject", udp_echo: bool = False) -> tuple[list[ProbeResult], str | None]:
    """Probe every target from one pod in one exec; the results and the TCP
    tool used. Raises NoShell when the pod cannot run the batch, KubeError
    when the exec itself fails."""
    res = kube.exec(namespace, pod, batch_argv(targets, timeout_s, tcp_tool=tcp_tool), timeout=timeout_s + EXEC_GRACE_S)
    return parse_batch(targets, res, deny_behaviour, udp_echo), batch_tool(res)


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
    probes: int  # edges probed, re-polls included
    workers: int
    execs: int = 0  # exec calls made (one per source per round when batched)
    # When every edge first agreed with the prediction (the time to enforce,
    # measured from the start of the run); None when it never did.
    matched_seconds: float | None = None
    started: float = 0.0  # the prober's clock when the run began
    batched_sources: int = 0  # sources probed with one exec each
    per_edge_sources: int = 0  # sources without a shell: one exec per edge
    tools: tuple[str, ...] = ()  # what the batches used for TCP
    sessions: int = 0  # source pods whose batches ran in a shell kept open

    @property
    def mode(self) -> str:
        if self.per_edge_sources and self.batched_sources:
            return f"one exec per source ({self.batched_sources} pods), per edge for {self.per_edge_sources} without a shell"
        if self.per_edge_sources:
            return "one exec per edge (no shell in the source pods)"
        how = "one exec per source pod"
        if self.sessions:
            how = ("one shell per source pod, kept open across rounds" if self.sessions == self.batched_sources
                   else f"one exec per source pod ({self.sessions} of {self.batched_sources} in a shell kept open)")
        return how + (f" (TCP by {', '.join(self.tools)})" if self.tools else "")


def _close_sessions(sessions: dict) -> None:
    for session in list(sessions.values()):
        try:
            session.close()
        except KubeError:
            pass  # a stream that already dropped
    sessions.clear()


class DaemonPool:
    """At most ``workers`` daemon threads running what is submitted, in order.

    concurrent.futures' threads are joined when the interpreter exits, so a
    Ctrl-C during a matrix would wait for every exec in flight (each bounded,
    but by up to a probe timeout plus the exec bounds); these are left to end
    with the process. ``shutdown`` cancels what has not started."""

    def __init__(self, workers: int, prefix: str = "probe"):
        self.workers, self.prefix = workers, prefix
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        if len(self._threads) < self.workers:
            worker = threading.Thread(target=self._work, name=f"{self.prefix}_{len(self._threads)}", daemon=True)
            self._threads.append(worker)
            worker.start()
        return future

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(e)

    def shutdown(self) -> None:
        """Cancel the jobs not started; the threads end once their job does."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)


class MatrixProber:
    """Probe many edges at once on a bounded pool; re-poll the disagreeing ones."""

    def __init__(self, kube: Kube, *, workers: int = 16, timeout_s: float = 1.0,
                 poll_interval: float = 1.0, poll_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 tcp_tool: str = "auto", deny_behaviour: str = "reject", whole_pass_max: int = WHOLE_PASS_MAX,
                 sessions: bool = False, udp_echo: bool = False):
        if workers < 1:
            raise DashiError(f"probe workers must be at least 1, got {workers}")
        self.kube = kube
        self.tcp_tool = tcp_tool
        self.workers = workers
        self.timeout_s = timeout_s
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self.clock = clock
        self.sleep = sleep
        # Source pods found to have no shell: probed one exec per edge.
        self.no_shell: set[tuple[str, str]] = set()
        self.no_session: set[tuple[str, str]] = set()  # pods whose session failed
        self.execs = 0
        self.tools: set[str] = set()  # what the batches used for TCP: nc, agnhost
        self.deny_behaviour = deny_behaviour
        self.udp_echo = udp_echo  # the probed UDP servers answer agnhost's payload: silence is a drop
        # This round's execs, and those of them that reached no pod.
        self._attempts: list = []
        self._unreachable: list[KubeUnreachable] = []
        self.whole_pass_max = whole_pass_max
        # With sessions, each source pod keeps one shell open across rounds
        # and runs (``ProbeSession``); a session that fails is closed and
        # that batch runs as one exec, as without sessions.
        self.sessions = sessions and hasattr(kube, "open_exec")
        self._open: dict[tuple[str, str], ProbeSession] = {}
        self._open_lock = threading.Lock()
        # A prober dropped without close() still ends its pods' shells.
        weakref.finalize(self, _close_sessions, self._open)

    def _one(self, target: Target) -> ProbeResult:
        self._attempts.append(target)
        try:
            return connect(self.kube, target.namespace, target.pod, target.host, target.port,
                           target.protocol, self.timeout_s, self.deny_behaviour, self.udp_echo)
        except KubeUnreachable as e:
            self._unreachable.append(e)
            return ProbeResult(False, "other", f"exec failed: {e}")
        except KubeError as e:
            return ProbeResult(False, "other", f"exec failed: {e}")

    def _session_batch(self, source: tuple[str, str], targets: list[Target]) -> list[ProbeResult] | None:
        """One source's probes through its session (opened on first use);
        None when it fails (it is closed; a pod whose first session fails,
        e.g. without a shell, gets none again)."""
        with self._open_lock:
            session = self._open.pop(source, None)
        fresh = session is None
        try:
            if session is None:
                session = ProbeSession(self.kube, *source)
            results, tool = session.batch(targets, self.timeout_s, self.tcp_tool, self.deny_behaviour,
                                          self.udp_echo)
        except KubeError:
            if session is not None:
                try:
                    session.close()
                except KubeError:
                    pass
            if fresh:
                self.no_session.add(source)
            return None
        with self._open_lock:
            self._open[source] = session
        if tool:
            self.tools.add(tool)
        return results

    def close(self) -> None:
        """Close every open session (their shells see stdin close and end)."""
        with self._open_lock:
            _close_sessions(self._open)

    def _batch(self, source: tuple[str, str], targets: list[Target]) -> list[ProbeResult] | None:
        """One source's probes in one exec; None when the pod has no shell."""
        self._attempts.append(source)
        if self.sessions and source not in self.no_session:
            results = self._session_batch(source, targets)
            if results is not None:
                return results
        try:
            results, tool = connect_batch(self.kube, source[0], source[1], targets, self.timeout_s, self.tcp_tool,
                                          self.deny_behaviour, self.udp_echo)
            if tool:
                self.tools.add(tool)
            return results
        except NoShell:
            return None
        except KubeError as e:
            # One failed exec (a dropped websocket, a pod restarting) spoils
            # only this source's probes, and the re-poll tries them again.
            if isinstance(e, KubeUnreachable):
                self._unreachable.append(e)
            return [ProbeResult(False, "other", f"exec failed: {e}") for _ in targets]

    def _round(self, pool: DaemonPool, jobs: dict[Edge, Target]) -> dict[Edge, ProbeResult]:
        """Probe ``jobs``; KubeUnreachable when not one exec of the round
        reached its pod (the API server, or its exec streams, gone)."""
        self._unreachable, self._attempts = [], []
        out = self._probe_round(pool, jobs)
        if self._attempts and len(self._unreachable) == len(self._attempts):
            first = self._unreachable[0]
            raise KubeUnreachable(f"cannot probe: not one of {len(self._attempts)} exec(s) reached its pod "
                                  f"({first})") from first
        return out

    def _probe_round(self, pool: DaemonPool, jobs: dict[Edge, Target]) -> dict[Edge, ProbeResult]:
        by_source: dict[tuple[str, str], list[Edge]] = {}
        for edge, t in jobs.items():
            by_source.setdefault((t.namespace, t.pod), []).append(edge)
        out: dict[Edge, ProbeResult] = {}
        singles: dict[Edge, object] = {}
        batches = {}
        for source, edges in by_source.items():
            if source in self.no_shell:
                singles.update({e: pool.submit(self._one, jobs[e]) for e in edges})
            else:
                batches[source] = (edges, pool.submit(self._batch, source, [jobs[e] for e in edges]))
        self.execs += len(batches)
        for source, (edges, future) in batches.items():
            results = future.result()
            if results is None:
                self.no_shell.add(source)
                singles.update({e: pool.submit(self._one, jobs[e]) for e in edges})
            else:
                out.update(zip(edges, results))
        self.execs += len(singles)
        out.update({e: f.result() for e, f in singles.items()})
        return out

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
        self.execs = 0
        matched_at: float | None = None
        pool = DaemonPool(self.workers)
        try:
            for edge, res in self._round(pool, probable).items():
                obs[edge] = Observation(edge, res, 1, probable[edge], 0.0)
            probes += len(probable)
            first_pass = self.clock() - start
            pending = {e for e in probable if not agrees(obs[e], predicted.get(e))}
            rounds = 0
            # Set when a re-poll ran: then the edges that agreed early were
            # seen before the CNI caught up (a stale allow can match the
            # prediction), so agreement counts only once one whole pass
            # agrees, as upstream e2e's full-matrix polling has it.
            unconfirmed = bool(pending)
            confirmable = {e for e in probable if obs[e].result.kind != "unprobed"}

            def probe(edges) -> None:
                nonlocal probes
                again = self._round(pool, {e: probable[e] for e in sorted(edges, key=str)})
                probes += len(again)
                now = self.clock()
                for edge, res in again.items():
                    prev = obs[edge]
                    obs[edge] = Observation(edge, res, prev.attempts + 1, prev.target, now - start)

            def settled() -> tuple[bool, str]:
                # The first call only looks at the first pass; each later one
                # re-probes what still disagrees (the whole matrix, where that
                # is cheap: then the re-poll that agrees is itself the whole
                # pass), and once nothing does, every edge once more in the
                # same call.
                nonlocal pending, rounds, matched_at, unconfirmed
                if rounds:
                    again = pending | confirmable if len(confirmable) <= self.whole_pass_max else pending
                    probe(again)
                    whole = again >= confirmable  # this re-poll was itself a whole pass
                    # After a whole pass, an edge that agreed before may not now.
                    pending = {e for e in (probable if whole else pending) if not agrees(obs[e], predicted.get(e))}
                    if not pending and unconfirmed and not whole:
                        probe(confirmable)
                        pending = {e for e in probable if not agrees(obs[e], predicted.get(e))}
                    unconfirmed = bool(pending)
                rounds += 1
                if not pending and matched_at is None:
                    matched_at = self.clock() - start
                return not pending, f"{len(pending)} edge(s) disagree"

            poll_until(settled, timeout_s=self.poll_timeout, interval_s=self.poll_interval, clock=self.clock,
                       sleep=self.sleep, spacing=True)
        finally:
            # On Ctrl-C, drop the queued probes instead of running them all,
            # and leave the ones in flight to end with the process.
            pool.shutdown()
        sources = {(t.namespace, t.pod) for t in probable.values()}
        return MatrixRun(obs, self.clock() - start, first_pass, probes, self.workers, execs=self.execs, started=start,
                         tools=tuple(sorted(self.tools)),
                         matched_seconds=matched_at, batched_sources=len(sources - self.no_shell),
                         per_edge_sources=len(sources & self.no_shell),
                         sessions=len(sources & set(self._open)))
