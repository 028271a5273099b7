"""The probe batch script, run for real by busybox sh on this machine.

``cluster.live.observe.probebatch.BATCH_SCRIPT`` runs inside the stand-in pods (the
agnhost image's busybox). Here the same argv runs under the host's busybox
against loopback: a TCP listener this test opens, a closed port, and a DNS
responder on 127.0.0.9:53 answering NXDOMAIN, so the script's quoting, its
concurrency and the ``@@ INDEX RC OUTPUT`` lines are checked as they really
are, and ``nslookup``'s answer, refusal and silence are classified from
busybox's own output. agnhost itself is stood in by a two-line script
around busybox ``nc`` (agnhost is not on this machine); it prints what
agnhost prints, except for SCTP (see ``FAKE_AGNHOST``).
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from cluster.live.observe.discovery import Target
from cluster.live.observe.probebatch import batch_argv, batch_tool, parse_batch
from cluster.seams.kube import ExecResult

BUSYBOX = shutil.which("busybox")
# The probe scripts run by busybox's shell against responders on loopback, their timeouts waited out.
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")]

FAKE_AGNHOST = """#!/bin/sh
# agnhost connect HOST:PORT --timeout=T --protocol=P: exit 0, or 1 with REFUSED
hp=$2; h=${hp%:*}; p=${hp##*:}
# Not agnhost's: its connect prints one line (test/images/agnhost/connect/
# connect.go, "OTHER: %v"). Two lines stand for whatever else a probe may
# print (a shell's or a runtime's message), which the script must fold.
case $4 in --protocol=sctp) printf 'OTHER: no route\nto host\n' >&2; exit 1;; esac
busybox nc -w 1 "$h" "$p" -e true </dev/null 2>/dev/null && exit 0
echo REFUSED >&2; exit 1
"""


def _dns_responder(addr, stop):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(0.1)
    while not stop.is_set():
        try:
            data, peer = s.recvfrom(512)
        except socket.timeout:
            continue
        # NXDOMAIN for whatever was asked: same id and question, QR=1, RCODE=3.
        s.sendto(data[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + data[12:], peer)
    s.close()


@pytest.fixture(params=["nc", "agnhost"])
def loopback(request, tmp_path):
    agnhost = tmp_path / "agnhost"
    agnhost.write_text(FAKE_AGNHOST)
    agnhost.chmod(0o755)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in ("sh", "timeout", "nslookup", "tr", "cut", "nc"):
        (bindir / applet).symlink_to(BUSYBOX)
    (bindir / "busybox").symlink_to(BUSYBOX)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    stop = threading.Event()
    try:
        dns = threading.Thread(target=_dns_responder, args=(("127.0.0.9", 53), stop), daemon=True)
        dns.start()
    except OSError as e:  # pragma: no cover - only where port 53 on loopback cannot be bound
        pytest.skip(f"cannot bind 127.0.0.9:53: {e}")
    yield {"agnhost": str(agnhost), "path": str(bindir), "tool": request.param, "open": listener.getsockname()[1],
           "closed": closed.getsockname()[1]}
    stop.set()
    dns.join()
    listener.close()
    closed.close()


def run(argv, path):
    t0 = time.monotonic()
    proc = subprocess.run([f"{path}/sh", *argv[1:]], capture_output=True, text=True, timeout=20,
                          env={"PATH": path})
    return ExecResult(proc.returncode, proc.stdout, proc.stderr), time.monotonic() - t0


def test_the_batch_script_runs_every_probe_concurrently_and_reports_each(loopback):
    targets = [Target("ns", "pod", "127.0.0.1", loopback["open"]),
               Target("ns", "pod", "127.0.0.1", loopback["closed"]),
               Target("ns", "pod", "127.0.0.9", 53, "UDP"),   # answers: allowed
               Target("ns", "pod", "127.0.0.10", 53, "UDP"),  # nobody: refused by the kernel
               ] + [Target("ns", "pod", "127.0.0.1", loopback["open"]) for _ in range(12)]
    # "auto" takes busybox nc (it passes the self-check); "agnhost" forces agnhost.
    argv = batch_argv(targets, 1.0, agnhost=loopback["agnhost"], tcp_tool="auto" if loopback["tool"] == "nc" else "agnhost")
    res, seconds = run(argv, loopback["path"])
    assert res.returncode == 0, res.stderr
    assert batch_tool(res) == loopback["tool"]
    assert len([line for line in res.stdout.splitlines() if line.startswith("@@ ") and "tool" not in line]) == 16
    kinds = [r.kind for r in parse_batch(targets, res)]
    assert kinds == ["connected", "refused", "connected", "refused"] + ["connected"] * 12
    # Sixteen probes, one of them held for the whole 1 s DNS timeout: run one
    # after another they would take over 1 s plus the rest; at once, about 1 s.
    assert seconds < 4.0


def test_silence_is_a_timeout(loopback, monkeypatch):
    # A UDP port on loopback that swallows queries: bound, never answering.
    mute = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mute.bind(("127.0.0.11", 53))
    try:
        targets = [Target("ns", "pod", "127.0.0.11", 53, "UDP")]
        res, seconds = run(batch_argv(targets, 1.0, agnhost=loopback["agnhost"]), loopback["path"])
        (result,) = parse_batch(targets, res)
        assert result.kind == "timeout" and 0.9 < seconds < 4.0
    finally:
        mute.close()


def test_an_output_that_is_not_one_word_is_folded_to_one_line(loopback):
    # SCTP goes through agnhost whatever the TCP tool; the fake prints two lines for it.
    targets = [Target("ns", "pod", "127.0.0.1", loopback["open"], "SCTP"),
               Target("ns", "pod", "127.0.0.1", loopback["closed"])]
    res, _ = run(batch_argv(targets, 1.0, agnhost=loopback["agnhost"]), loopback["path"])
    lines = sorted(line for line in res.stdout.splitlines() if line.startswith(("@@ 0 ", "@@ 1 ")))
    assert lines == ["@@ 0 1 OTHER: no route to host", "@@ 1 1 REFUSED"]
    assert [(r.kind, r.detail) for r in parse_batch(targets, res)][0] == ("other", "OTHER: no route to host")


@pytest.fixture
def silent_port():
    """A TCP port on loopback that never answers a SYN: a listener whose
    backlog is full and never accepted, so the kernel drops new SYNs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.1)
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the backlog did not fill: not silent"
    finally:
        probe.close()
    yield port
    for c in fillers:
        c.close()
    server.close()


# The deadline is nc's: agnhost takes --timeout in milliseconds itself.
@pytest.mark.parametrize("loopback", ["nc"], indirect=True)
def test_a_sub_second_timeout_ends_the_batch_at_its_deadline(loopback, silent_port):
    """nc and timeout count whole seconds; a 0.3 s probe timeout ends the
    batch by its watchdog: the silent port reads as a timeout, the rest as
    they are, and the batch takes well under nc's own second."""
    targets = [Target("ns", "pod", "127.0.0.1", silent_port), Target("ns", "pod", "127.0.0.1", loopback["open"]),
               Target("ns", "pod", "127.0.0.1", loopback["closed"]), Target("ns", "pod", "127.0.0.9", 53, "UDP")]
    res, seconds = run(batch_argv(targets, 0.3, agnhost=loopback["agnhost"]), loopback["path"])
    assert "@@ deadline" in res.stdout, res.stdout
    assert [r.kind for r in parse_batch(targets, res)] == ["timeout", "connected", "refused", "connected"]
    assert seconds < 0.9, seconds


@pytest.mark.parametrize("loopback", ["nc"], indirect=True)
def test_a_batch_whose_probes_all_answer_does_not_wait_for_its_deadline(loopback):
    targets = [Target("ns", "pod", "127.0.0.1", loopback["open"]) for _ in range(8)]
    res, seconds = run(batch_argv(targets, 0.9, agnhost=loopback["agnhost"]), loopback["path"])
    assert "@@ deadline" not in res.stdout
    assert {r.kind for r in parse_batch(targets, res)} == {"connected"}
    assert seconds < 0.8, seconds


@pytest.mark.parametrize("loopback", ["nc"], indirect=True)
def test_the_session_script_answers_each_request_line_in_turn(loopback, silent_port):
    """SESSION_SCRIPT, as the probe shell kept open in a pod runs it: each
    line on stdin is one batch, answered with its lines and "@@ end ID"; the
    probes cannot read the requests that follow; a closed stdin ends it."""
    from cluster.live.observe.probebatch import SESSION_NAME, SESSION_SCRIPT, batch_args

    first = [Target("ns", "pod", "127.0.0.1", loopback["open"]), Target("ns", "pod", "127.0.0.9", 53, "UDP")]
    second = [Target("ns", "pod", "127.0.0.1", silent_port), Target("ns", "pod", "127.0.0.1", loopback["closed"])]
    requests = "".join(" ".join([rid, *batch_args(t, 0.3, agnhost=loopback["agnhost"])]) + "\n"
                       for rid, t in (("1", first), ("2", second)))
    t0 = time.monotonic()
    proc = subprocess.run([f"{loopback['path']}/sh", "-c", SESSION_SCRIPT, SESSION_NAME], input=requests,
                          capture_output=True, text=True, timeout=20, env={"PATH": loopback["path"]})
    seconds = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    one, _, rest = proc.stdout.partition("@@ end 1\n")
    two, _, tail = rest.partition("@@ end 2\n")
    assert tail == ""
    assert [r.kind for r in parse_batch(first, ExecResult(0, one, ""))] == ["connected", "connected"]
    assert [r.kind for r in parse_batch(second, ExecResult(0, two, ""))] == ["timeout", "refused"]
    assert seconds < 1.5, seconds
