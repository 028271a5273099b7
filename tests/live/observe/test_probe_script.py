"""The probe batch script, run for real by busybox sh on this machine.

``cluster.live.observe.probe.BATCH_SCRIPT`` runs inside the stand-in pods (the
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
from cluster.seams.kube import ExecResult
from cluster.live.observe.probe import batch_argv, batch_tool, parse_batch

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (apt-get install busybox-static)")

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
