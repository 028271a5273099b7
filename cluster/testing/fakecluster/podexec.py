"""Exec in the fake cluster's pods: what the probe tools print.

``exec`` of ``agnhost connect`` answers like agnhost: exit 0 when the
connection is made, exit 1 and ``TIMEOUT`` when a policy drops it,
``REFUSED`` when it gets through but nothing listens, ``DNS`` when a name
does not resolve. The probe batch script (cluster.live.observe.probebatch) gets
its lines as the stand-ins' busybox ``nc`` and ``nslookup`` print them.
Whether a packet passes is network.py's answer. The knobs:

* ``shell=False``: a pod without ``/bin/sh``, only agnhost;
* ``exec_latency`` / ``time_scale``: make probes take (simulated) time, for
  the fan-out benchmark: each exec costs ``exec_latency`` seconds, and a
  dropped connection additionally waits ``time_scale`` x agnhost's timeout.
"""

from __future__ import annotations

import re
from typing import Callable

from cluster.errors import KubeError
from cluster.live.observe.probebatch import BATCH_NAME, BATCH_SCRIPT, SESSION_SCRIPT, SHELL
from cluster.seams.kube import ExecResult, LocalForward
from cluster.testing.fakecluster.network import Network
from cluster.testing.fakecluster.store import Call


class PodExec(Network):
    """The ``exec`` verb: test handlers first, then agnhost and the batch script."""

    def _init_podexec(self, *, shell: bool, exec_latency: float, time_scale: float,
                      sleep: Callable[[float], None]) -> None:
        # shell=False: the pods' image has no /bin/sh (only agnhost), so the
        # prober must fall back to one exec per edge.
        self.shell = shell
        self.exec_latency = exec_latency
        self.time_scale = time_scale
        self.sleep = sleep
        self._exec_handlers: list[tuple[Callable[[str, str, list[str]], bool], Callable]] = []
        # port_forward: (namespace, pod, port) -> the local address that
        # stands in for the pod's port (a FakeHubble for hubble-relay).
        self.forward_targets: dict[tuple[str, str, int], str] = {}

    def port_forward(self, namespace: str, pod: str, port: int) -> LocalForward:
        """A real local listener carrying each connection to the address a
        test registered for the pod's port (``forward_targets``)."""
        import socket

        self._record(Call("portforward", "v1", "Pod", namespace, pod, argv=(str(port),)))
        with self._lock:
            target = self._objects.get(("v1", "Pod", namespace, pod))
        if target is None:
            raise KubeError(f'pods "{pod}" not found in namespace {namespace}')
        address = self.forward_targets.get((namespace, pod, port))

        def open_remote():
            if address is None:
                raise ConnectionRefusedError(f"nothing listens on port {port} of {namespace}/{pod}")
            host, _, p = address.rpartition(":")
            sock = socket.create_connection((host, int(p)), timeout=5)
            sock.settimeout(None)  # a flow stream may be quiet for long
            return sock

        return LocalForward(open_remote, f"port-forward to {namespace}/{pod}:{port}")

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None,
             timeout: float = 10.0) -> ExecResult:
        self._record(Call("exec", "v1", "Pod", namespace, pod, argv=tuple(argv)))
        with self._lock:
            self._running_pod(namespace, pod)
            for match, handler in self._exec_handlers:
                if match(namespace, pod, list(argv)):
                    return handler(namespace, pod, list(argv))
        if len(argv) >= 2 and argv[0].rsplit("/", 1)[-1] == "agnhost" and argv[1] == "connect":
            result, waited = self._agnhost_connect(namespace, pod, list(argv[2:]))
            cost = self.exec_latency + waited * self.time_scale
            if cost > 0:
                self.sleep(min(cost, timeout))
            return result
        if len(argv) >= 3 and argv[:3] == [SHELL, "-c", BATCH_SCRIPT] and self.shell:
            result, waited = self._probe_batch(namespace, pod, list(argv[3:]))
            cost = self.exec_latency + waited * self.time_scale
            if cost > 0:
                self.sleep(min(cost, timeout))
            return result
        return ExecResult(127, "", f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH')

    def open_exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None) -> "FakeSession":
        """An exec with stdin open: the probe session script
        (``SESSION_SCRIPT``) answers each request line with the batch's lines
        and "@@ end ID", as the real shell does; in a pod without a shell the
        process ends at once, as an exec of a missing binary does."""
        self._record(Call("open_exec", "v1", "Pod", namespace, pod, argv=tuple(argv)))
        with self._lock:
            self._running_pod(namespace, pod)
        return FakeSession(self, namespace, pod, list(argv))

    def _running_pod(self, namespace: str, pod: str) -> None:
        """The API's refusals of an exec: no such pod, or a pod not running."""
        self._reap()
        target = self._objects.get(("v1", "Pod", namespace, pod))
        if target is None:
            raise KubeError(f'pods "{pod}" not found in namespace {namespace}')
        if (target.get("status") or {}).get("phase") != "Running":
            raise KubeError(f"cannot exec into pod {namespace}/{pod}: it is not running")

    def on_exec(self, match: Callable[[str, str, list[str]], bool],
                handler: Callable[[str, str, list[str]], ExecResult]) -> None:
        """Answer matching execs (namespace, pod, argv) with ``handler``."""
        self._exec_handlers.append((match, handler))

    def _probe_batch(self, namespace: str, pod_name: str, args: list[str]) -> tuple[ExecResult, float]:
        """cluster.live.observe.probebatch.BATCH_SCRIPT's behaviour: its probes run at once,
        each printing "@@ INDEX EXITCODE OUTPUT"; the exec takes as long as the
        slowest probe. DNS probes answer as busybox nslookup does (see
        ``_nslookup``)."""
        if len(args) < 6:
            return ExecResult(2, "", "sh: usage"), 0.0
        _name, agnhost, timeout, seconds, tcp_tool, deadline = args[:6]
        triples = args[6:]
        # The stand-ins' busybox nc passes the script's self-check. With nc
        # and a deadline, a probe still waiting at the deadline prints no
        # line; the watchdog prints "@@ deadline".
        nc = tcp_tool == "auto"
        watchdog = nc and deadline != "0"
        lines, waited = [f"@@ tool {'nc' if nc else 'agnhost'}"], 0.0
        for j in range(0, len(triples) - len(triples) % 3, 3):
            i, kind, target = triples[j:j + 3]
            if kind == "dns":
                rc, text, w = self._nslookup(namespace, pod_name, target, float(seconds))
            else:
                res, w = self._agnhost_connect(namespace, pod_name, [target, f"--timeout={timeout}",
                                                                     f"--protocol={kind}"])
                rc, text = res.returncode, " ".join((res.stdout + res.stderr).split())
            if watchdog and w:
                waited = max(waited, float(deadline))
                continue
            waited = max(waited, w)
            lines.append(f"@@ {i} {rc} {text[:300]}")
        if watchdog and waited:
            lines.append("@@ deadline")
        return ExecResult(0, "\n".join(lines) + ("\n" if lines else ""), ""), waited

    def _nslookup(self, namespace: str, pod_name: str, host: str, seconds: float) -> tuple[int, str, float]:
        """``timeout N nslookup -type=a kubernetes.default HOST`` (busybox 1.35),
        as measured on a real one: an answering server prints "Server:" and,
        for this name, NXDOMAIN, exit 1; a rejected query prints "nslookup:
        read: Connection refused" until timeout kills it (exit 143); silence
        is exit 143 with no output."""
        outcome, dns = self._path(namespace, pod_name, host, 53, "UDP")
        if outcome == "open" and dns:
            return 1, f"Server: {host} Address: {host}:53 ** server can't find kubernetes.default: NXDOMAIN", 0.0
        if outcome in ("rejected", "no-listener"):
            return 143, "nslookup: read: Connection refused", seconds
        return 143, "", seconds

    def _agnhost_connect(self, namespace: str, pod_name: str, args: list[str]) -> tuple[ExecResult, float]:
        """agnhost connect's behaviour (test/images/agnhost/connect): exit 0 on a
        connection; else exit 1 and one of TIMEOUT, REFUSED, DNS, OTHER, UNKNOWN
        on stderr. Returns the result and the seconds a real run would wait."""
        dest, timeout_s, protocol = None, 0.0, "tcp"
        for a in args:
            if a.startswith("--timeout="):
                m = re.match(r"^(\d+(?:\.\d+)?)(ms|s)$", a.split("=", 1)[1])
                if not m:
                    return ExecResult(1, "", f"Error: invalid argument {a!r}"), 0.0
                timeout_s = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            elif a.startswith("--protocol="):
                protocol = a.split("=", 1)[1]
            elif a.startswith("-"):
                return ExecResult(1, "", f"Error: unknown flag: {a}"), 0.0
            elif dest is None:
                dest = a
            else:
                return ExecResult(1, "", "Error: accepts 1 arg(s)"), 0.0
        if dest is None:
            return ExecResult(1, "", "Error: accepts 1 arg(s), received 0"), 0.0
        if protocol not in ("tcp", "udp", "sctp"):
            return ExecResult(1, "", f"Unsupported protocol\n{protocol}"), 0.0
        host, sep, port_s = dest.rpartition(":")
        host = host.strip("[]")
        if not sep or not port_s.isdigit():
            return ExecResult(1, "", f"UNKNOWN: address {dest}: missing port in address"), 0.0
        port, proto = int(port_s), protocol.upper()
        outcome, is_dns = self._path(namespace, pod_name, host, port, proto)
        src_ip = (self._objects[("v1", "Pod", namespace, pod_name)].get("status") or {}).get("podIP")
        if outcome == "nxdomain":
            return ExecResult(1, "", f"DNS: lookup {host}: no such host"), 0.0
        if outcome == "no-route":
            # Nothing routes to that address inside the fake: silence.
            return ExecResult(1, "", "TIMEOUT\n" if proto != "UDP" else "TIMEOUT: i/o timeout\n"), timeout_s
        if outcome == "rejected":
            return ExecResult(1, "", "REFUSED\n"), 0.0
        if outcome == "dropped":
            if proto == "UDP":
                return ExecResult(1, "", f"TIMEOUT: read udp {src_ip}:40000->{host}:{port}: i/o timeout\n"), timeout_s
            return ExecResult(1, "", "TIMEOUT\n"), timeout_s
        if outcome == "no-listener":
            if proto == "UDP":
                return ExecResult(1, "", f"REFUSED: read udp {src_ip}:40000->{host}:{port}: "
                                         "recvfrom: connection refused\n"), 0.0
            return ExecResult(1, "", "REFUSED\n"), 0.0
        if proto == "UDP" and is_dns:
            # agnhost sends "hostname\n" (9 bytes); a DNS server drops anything
            # shorter than a 12-byte header without answering, so an allowed
            # probe times out exactly like a dropped one.
            return ExecResult(1, "", f"TIMEOUT: read udp {src_ip}:40000->{host}:{port}: i/o timeout\n"), timeout_s
        return ExecResult(0, "", ""), 0.0


class FakeSession:
    """The fake cluster's ``ExecSession``: the probe session script's
    answers, one request line at a time, each costing what the exec of the
    same batch would (``exec_latency`` aside: the exec is already open)."""

    def __init__(self, kube: PodExec, namespace: str, pod: str, argv: list[str]):
        self.kube, self.namespace, self.pod, self.argv = kube, namespace, pod, argv
        self.running = argv[:3] == [SHELL, "-c", SESSION_SCRIPT] and kube.shell
        self.stdin = ""
        self.stdout = ""

    def send(self, text: str) -> None:
        if not self.running:
            raise KubeError(f"exec in {self.namespace}/{self.pod}: the process ended")
        self.stdin += text
        *lines, self.stdin = self.stdin.split("\n")
        for line in lines:
            rid, *args = line.split()
            # Each request runs the batch in the pod: recorded (and open to
            # injected faults) as the exec of that batch would be.
            self.kube._record(Call("exec", "v1", "Pod", self.namespace, self.pod,
                                   argv=(SHELL, "-c", BATCH_SCRIPT, BATCH_NAME, *args)))
            result, waited = self.kube._probe_batch(self.namespace, self.pod, [self.argv[3], *args])
            if waited * self.kube.time_scale > 0:
                self.kube.sleep(waited * self.kube.time_scale)
            self.stdout += result.stdout + f"@@ end {rid}\n"

    def read_until(self, marker: str, timeout: float) -> str:
        if not self.running:
            raise KubeError(f'exec in {self.namespace}/{self.pod}: the process ended: exec: "{self.argv[0]}": '
                            "executable file not found in $PATH")
        at = self.stdout.find(marker + "\n")
        if at < 0:
            raise KubeError(f"exec in {self.namespace}/{self.pod}: no answer within {timeout:g}s")
        out, self.stdout = self.stdout[:at + len(marker) + 1], self.stdout[at + len(marker) + 1:]
        return out

    def close(self) -> None:
        self.running = False
