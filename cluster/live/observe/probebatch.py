"""Probes in batches: all probes from one source pod run in ONE exec, concurrently
inside the pod (``BATCH_SCRIPT``, a POSIX sh loop that backgrounds each
probe and waits), so a matrix costs one exec per source and about one probe
timeout, not one exec per edge. A pod without a shell falls back to one
exec per edge (``agnhost connect``; DNS over UDP is then unprobed), and the
report says which was used.

Single probes and how their results read: cluster.live.observe.probe.
"""

from __future__ import annotations

import math

from cluster.errors import DashiError, KubeError
from cluster.live.observe.discovery import Target
from cluster.live.observe.probe import (
    AGNHOST,
    EXEC_GRACE_S,
    ProbeResult,
    classify,
    go_duration,
    host_port,
    refusal_reading,
)
from cluster.seams.kube import ExecResult, Kube

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
        return ProbeResult(False, "refused", "DNS query refused: " + refusal_reading(deny_behaviour).split(": ", 1)[1],
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
