"""Probes: agnhost connect's answers, the live matrix, the pool and re-polling."""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest

from cluster.errors import DashiError, KubeUnreachable
from cluster.live.observe.discovery import Target, discover
from cluster.live.observe.probe import ProbeResult, classify, connect, connect_argv, go_duration
from cluster.live.observe.probebatch import BATCH_SCRIPT, NoShell, classify_dns, parse_batch
from cluster.live.observe.prober import DaemonPool, MatrixProber, agrees
from cluster.live.observe.settings import ProbeSettings
from cluster.live.record.policies import mark_ours
from cluster.policy.engine.model import Edge
from cluster.policy.engine.predictions import predict
from cluster.seams.kube import ExecResult
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from cluster.testing.fakecluster.network import API_ADDRESS


def apply_steps(kube, profile, k):
    for step in profile.steps[:k]:
        for obj in step.objects:
            kube.apply(mark_ours(obj, step.name))


# -- one probe ------------------------------------------------------------------


def test_go_duration():
    assert [go_duration(s) for s in (1.0, 2, 0.5, 1.25)] == ["1s", "2s", "500ms", "1250ms"]
    with pytest.raises(DashiError):
        go_duration(0)


def test_connect_argv_is_what_upstream_e2e_runs():
    assert connect_argv("10.42.0.7", 9000) == \
        ["/agnhost", "connect", "10.42.0.7:9000", "--timeout=1s", "--protocol=tcp"]
    assert connect_argv("fd00::7", 53, "UDP", 0.5) == \
        ["/agnhost", "connect", "[fd00::7]:53", "--timeout=500ms", "--protocol=udp"]


def test_connect_execs_agnhost_in_the_source_pod(dashi):
    kube, _ = dashi
    ip = kube.get("v1", "Pod", "rustfs-1", "dashi-platform")["status"]["podIP"]
    assert connect(kube, "dashi-data", "debug", ip, 9000) == ProbeResult(True, "connected", "")
    (call,) = kube.calls_of("exec")
    assert (call.namespace, call.name, call.argv) == \
        ("dashi-data", "debug", ("/agnhost", "connect", f"{ip}:9000", "--timeout=1s", "--protocol=tcp"))


def test_classify_agnhost_answers():
    cases = {
        (0, "", "TCP"): ("connected", True),
        (0, "", "UDP"): ("connected", True),
        (1, "TIMEOUT\n", "TCP"): ("timeout", False),
        (1, "TIMEOUT: read udp 10.42.0.9:4000->10.42.0.10:53: i/o timeout\n", "UDP"): ("unprobed", False),
        (1, "REFUSED\n", "TCP"): ("refused", False),
        (1, "REFUSED: read udp: connection refused\n", "UDP"): ("refused", False),
        (1, "DNS: lookup x: no such host\n", "TCP"): ("dns", False),
        (1, "OTHER: dial tcp: connect: no route to host\n", "TCP"): ("other", False),
        (1, "UNKNOWN: missing port in address\n", "TCP"): ("other", False),
        (127, 'exec: "/agnhost": executable file not found in $PATH', "TCP"): ("other", False),
        (1, "", "TCP"): ("other", False),
    }
    got = {k: (classify(*k).kind, classify(*k).ok) for k in cases}
    assert got == cases
    assert "agnhost is not in this pod's image" in classify(127, "not found", "TCP").detail
    assert classify(1, "", "TCP").detail == "exit 1 with no message"


def test_udp_silence_is_a_drop_only_where_the_server_answers_agnhost():
    silence = "TIMEOUT: read udp 10.42.0.9:4000->10.42.0.10:5353: i/o timeout\n"
    assert classify(1, silence, "UDP").allowed is None
    echo = classify(1, silence, "UDP", "drop", udp_echo=True)
    assert (echo.kind, echo.allowed) == ("timeout", False)
    assert classify(1, "TIMEOUT\n", "TCP", udp_echo=True).kind == "timeout"


def test_what_a_result_says_about_the_path():
    allowed = {kind: ProbeResult(kind == "connected", kind).allowed
               for kind in ("connected", "refused", "timeout", "dns", "other", "unprobed")}
    assert allowed == {"connected": True, "refused": False, "timeout": False,
                       "dns": None, "other": None, "unprobed": None}


# -- the live matrix --------------------------------------------------------------


def test_discover_finds_pods_and_live_addresses(dashi):
    kube, profile = dashi
    live = discover(kube, profile)
    assert len(live.targets) == len(profile.edges()) == 240
    assert all(isinstance(t, Target) for t in live.targets.values())
    ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in kube.pods()}
    rustfs_self = live.targets[Edge("dashi-platform/rustfs", "dashi-platform/rustfs", 9000)]
    assert (rustfs_self.pod, rustfs_self.host) == ("rustfs-0", ip["rustfs-1"])  # another replica
    api = live.targets[Edge("dashi-data/prefect-worker", "external/kube-api", 6443)]
    assert (api.host, api.port, api.note) == (API_ADDRESS, 6443, "")
    debug = live.targets[Edge("dashi-serving/debug", "kube-system/kube-dns", 53, "UDP")]
    assert (debug.namespace, debug.pod, debug.protocol) == ("dashi-serving", "debug", "UDP")
    eps = {e.key: e.ip for e in live.endpoints}
    assert eps["external/kube-api"] == API_ADDRESS  # not the profile's offline 192.0.2.10
    assert eps["dashi-data/debug"] == kube.get("v1", "Pod", "debug", "dashi-data")["status"]["podIP"]
    assert eps["dashi-platform/rustfs"] == ip["rustfs-0"]
    assert live.notes == []


def test_discover_uses_legacy_endpoints_and_notes_a_different_api_port(dashi):
    kube, profile = dashi
    kube.delete("discovery.k8s.io/v1", "EndpointSlice", "kubernetes", "default")
    kube.apply({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": "192.0.2.30"}],
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}]})
    t = discover(kube, profile).targets[Edge("dashi-data/prefect-worker", "external/kube-api", 6443)]
    assert (t.host, t.port, t.note) == ("192.0.2.30", 443, "live port 443 (profile says 6443)")


def test_the_api_address_comes_from_the_kubernetes_services_own_endpointslice(dashi):
    """Anyone who may write EndpointSlices in default can label one
    kubernetes.io/service-name=kubernetes; the API server's own (named after
    the Service, written by kube-apiserver, as on the test cluster) or one a
    control-plane controller manages is what counts."""
    kube, profile = dashi
    edge = Edge("dashi-data/prefect-worker", "external/kube-api", 6443)

    def look_alike(name, address, labels=None, manager="kubectl-create"):
        kube.as_manager(manager).create({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes", **(labels or {})}},
            "addressType": "IPv4", "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}]})

    look_alike("aaa-kubernetes", "192.0.2.66")  # listed first, by name
    look_alike("bbb-kubernetes", "192.0.2.67", {"endpointslice.kubernetes.io/managed-by": "someone"})
    assert discover(kube, profile).targets[edge].host == API_ADDRESS
    kube.delete("discovery.k8s.io/v1", "EndpointSlice", "kubernetes", "default")
    # Without the API server's own slice: the legacy Endpoints object of the Service, never a look-alike.
    assert discover(kube, profile).targets[edge].host == API_ADDRESS
    look_alike("ccc-kubernetes", "192.0.2.68", {"endpointslice.kubernetes.io/managed-by":
                                                "endpointslicemirroring-controller.k8s.io"})
    assert discover(kube, profile).targets[edge].host == "192.0.2.68"  # the mirroring controller's


def test_discover_refuses_a_half_deployed_profile(dashi):
    kube, profile = dashi
    kube.delete("apps/v1", "Deployment", "flow-run", "dashi-data")
    kube.delete("v1", "Pod", "debug", "dashi-serving")
    with pytest.raises(DashiError) as err:
        discover(kube, profile)
    msg = str(err.value)
    assert "dashi-data/flow-run (no Running, Ready pods -n dashi-data -l app.kubernetes.io/name=flow-run)" in msg
    assert "dashi-serving/debug (no Running, Ready pod dashi-serving/debug)" in msg


def test_a_lone_replica_leaves_its_pod_to_pod_edge_unprobed(dashi):
    kube, profile = dashi
    kube.patch_status("v1", "Pod", "rustfs-1", "dashi-platform", {"conditions": [{"type": "Ready", "status": "False"}]})
    live = discover(kube, profile)
    assert live.notes == ["dashi-platform/rustfs: 1 of 2 replicas ready; its pod-to-pod edge is unprobed"]
    assert live.targets[Edge("dashi-platform/rustfs", "dashi-platform/rustfs", 9000)] == \
        "a pod's traffic to itself never reaches the network, so policy cannot be probed"


# -- the pool -----------------------------------------------------------------------


class CountingKube:
    """Our seam, recording how many execs run at once (delegates to a FakeKube)."""

    def __init__(self, inner, hold=0.05):
        self.inner, self.hold = inner, hold
        self.active = self.peak = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def exec(self, *args, **kw):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.hold)
            return self.inner.exec(*args, **kw)
        finally:
            with self._lock:
                self.active -= 1


def test_the_pool_is_bounded(dashi):
    kube, profile = dashi
    kube.shell = False  # one exec per edge: 24 execs for 6 workers
    counting = CountingKube(kube)
    targets = dict(list(discover(kube, profile).targets.items())[:24])
    run = MatrixProber(counting, workers=6, poll_timeout=0).run(targets)
    assert counting.peak == 6
    assert run.probes == 24 and len(run.observations) == 24


def test_the_pool_starts_a_thread_only_for_a_job_no_idle_thread_takes():
    """Execs that answer at once are run by the threads already there: no
    thread per job up to the bound (the cost a fast cluster paid per round)."""
    pool = DaemonPool(8)
    try:
        for i in range(20):
            deadline = time.monotonic() + 5
            while pool._idle < len(pool._threads) and time.monotonic() < deadline:
                time.sleep(0.001)  # the last job's thread back at the queue
            assert pool.submit(lambda x: x * 2, i).result(timeout=5) == i * 2
        assert len(pool._threads) == 1
    finally:
        pool.shutdown()


def _mask() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_helper_threads_leave_ctrl_c_to_the_main_thread():
    """A Ctrl-C the kernel hands to a helper thread would leave the main one
    asleep in its wait for a result (seen once under load: a matrix whose
    execs never end still probing 20 s after Ctrl-C). Probe threads and the
    concurrent reads block SIGINT and SIGTERM, so only the main thread takes them."""
    from cluster.live.observe.discovery import all_at_once
    from cluster.live.record.policies import live_policies

    stop = {signal.SIGINT, signal.SIGTERM}
    pool = DaemonPool(2)
    try:
        assert stop <= pool.submit(_mask).result(timeout=5)
    finally:
        pool.shutdown()
    assert stop <= all_at_once({"a": _mask, "b": _mask})["a"]

    class Masks(FakeKube):
        def list(self, *a, **kw):
            seen.append(_mask())
            return super().list(*a, **kw)

    seen: list = []
    live_policies(Masks(), ["a", "b"])
    assert len(seen) > 1 and all(stop <= m for m in seen)
    assert not stop & _mask()  # and the main thread still takes them


def _blocked_in(thread: threading.Thread) -> set:
    """The signals ``thread`` blocks, as the kernel reports them (SigBlk)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    bits = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
    return {s for s in signal.Signals if bits >> (s - 1) & 1}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread masks from /proc (Linux)")
def test_the_lease_and_port_forward_threads_leave_ctrl_c_to_the_main_thread():
    """The threads alive for a whole run: the lease's renewal, and a
    port-forward's listener and its per-connection threads."""
    import socket

    from cluster.live.safety.lease import ClusterLease
    from cluster.seams.kube import LocalForward

    stop = {signal.SIGINT, signal.SIGTERM}
    lease = ClusterLease(FakeKube(), "up", renew_every_s=60)
    lease.acquire()
    lease.start_renewing()
    try:
        assert stop <= _blocked_in(lease._thread)
    finally:
        lease.release()

    a, b = socket.socketpair()
    forward = LocalForward(lambda: a, "test")
    try:
        host, port = forward.address.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"x")
            assert b.recv(1) == b"x"  # carried: the per-connection threads run
            # The listener and the connection's carrier ("forward test"), and its pump back.
            forwarding = [t for t in threading.enumerate()
                          if t.name == "forward test" or (t.name.endswith("(pump)") and t.is_alive())]
            assert len([t for t in forwarding if t.name == "forward test"]) == 2 and len(forwarding) >= 3
            assert all(stop <= _blocked_in(t) for t in forwarding)
    finally:
        forward.close()
        b.close()


def test_a_matrix_costs_rounds_of_timeouts_not_their_sum(dashi):
    kube, profile = dashi
    apply_steps(kube, profile, 1)  # default-deny: every TCP probe waits out its timeout
    kube.time_scale = 0.05  # a 1 s agnhost timeout takes 50 ms here
    targets = dict(list(discover(kube, profile).targets.items())[:40])
    run = MatrixProber(kube, workers=40, poll_timeout=0).run(targets)
    assert {o.result.kind for o in run.observations.values()} <= {"timeout", "unprobed"}
    # Sequential would be 2 s; batched per source and run at once, a fraction
    # of that even on a loaded machine.
    assert run.first_pass_seconds < 40 * 0.05 / 2


def test_disagreeing_probes_are_re_polled_until_the_cni_catches_up(dashi):
    kube, profile = dashi
    kube.shell = False  # one exec per edge (a pod without a shell): UDP to DNS cannot be told
    clock = FakeClock()
    kube.clock, kube.lag_seconds = clock, 3.0
    apply_steps(kube, profile, 1)
    live = discover(kube, profile)
    expected = {e: False for e in live.targets}  # default-deny: everything blocked
    run = MatrixProber(kube, clock=clock, sleep=clock.sleep).run(live.targets, expected)
    attempts = {}
    for o in run.observations.values():
        attempts.setdefault((o.result.kind, o.attempts), 0)
        attempts[(o.result.kind, o.attempts)] += 1
    # TCP edges saw the old, open network three times, then the drop (each
    # re-poll a whole pass: nothing to confirm); UDP to DNS is unprobed and
    # never re-polled.
    assert attempts == {("timeout", 4): 226, ("unprobed", 1): 14}
    assert clock.slept == [1.0, 1.0, 1.0]


def test_an_edge_that_agreed_before_the_cni_caught_up_is_probed_again(dashi):
    """Right after an apply, the old rules answer: an edge the new policies
    block but the engine says is open (a dataplane departure) agrees with
    the prediction in that first pass. It must be probed again once the CNI
    has caught up, not taken from the stale pass."""
    kube, profile = dashi
    clock = FakeClock()
    kube.clock, kube.lag_seconds = clock, 3.0
    apply_steps(kube, profile, 1)
    live = discover(kube, profile)
    tcp = [e for e, t in live.targets.items() if e.protocol == "TCP"]
    stale = tcp[0]  # the engine is wrong about this one: say it is open
    expected = {e: e == stale for e in live.targets}
    run = MatrixProber(kube, clock=clock, sleep=clock.sleep).run(live.targets, expected)
    assert run.observations[stale].allowed is False  # what the CNI does once caught up
    assert not agrees(run.observations[stale], expected[stale])
    assert all(agrees(run.observations[e], expected[e]) for e in tcp[1:])
    # Once seen to disagree it is re-polled like any other, to the poll
    # timeout, and the matrix never counts as matched.
    assert run.matched_seconds is None and run.observations[stale].seconds >= 10.0


def test_re_polling_is_bounded(dashi):
    kube, profile = dashi
    kube.enforce = False
    clock = FakeClock()
    live = discover(kube, profile)
    edge = Edge("dashi-data/debug", "dashi-catalog/pgstac", 5432)
    run = MatrixProber(kube, clock=clock, sleep=clock.sleep, poll_interval=1.0, poll_timeout=10.0).run(
        {edge: live.targets[edge]}, {edge: False})
    obs = run.observations[edge]
    assert (obs.result.kind, obs.attempts, obs.seconds) == ("connected", 11, 10.0)
    assert clock.slept == [1.0] * 10 and run.probes == 11


def test_exec_failures_are_results_and_are_re_polled(dashi):
    kube, profile = dashi
    clock = FakeClock()
    live = discover(kube, profile)
    edge = Edge("dashi-data/debug", "dashi-catalog/pgstac", 5432)
    kube.fail("exec", times=1)
    run = MatrixProber(kube, clock=clock, sleep=clock.sleep).run({edge: live.targets[edge]}, {edge: True})
    obs = run.observations[edge]
    assert (obs.result.kind, obs.attempts) == ("connected", 2)


def test_a_round_in_which_no_exec_reaches_its_pod_is_an_interruption(dashi):
    """Every exec stream failing to open (the API server answers, its exec
    streams hang) says nothing about the policies: the run stops at once
    instead of re-polling and reporting every edge as failed."""
    kube, profile = dashi
    clock = FakeClock()
    live = discover(kube, profile)
    kube.fail("exec", times=None, exc=lambda call: KubeUnreachable(
        f"exec in {call.namespace}/{call.name}: cannot reach the API server of k3d-dashi (https://0.0.0.0:6550): "
        "the exec stream did not open within 10s"))
    with pytest.raises(KubeUnreachable, match=r"^cannot probe: not one of 14 exec\(s\) reached its pod \(exec in "
                                              r".*: the exec stream did not open within 10s\)$"):
        MatrixProber(kube, clock=clock, sleep=clock.sleep).run(live.targets, {e: True for e in live.targets})
    assert clock.slept == []  # not re-polled


CTRL_C = """
import faulthandler, signal, sys, threading, time
faulthandler.register(signal.SIGUSR1, all_threads=True)  # where it hangs, should it not end
from cluster.live.observe.discovery import discover
from cluster.live.observe.prober import MatrixProber
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.kube import FakeKube

kube = FakeKube()
profile = load_profile("dashi")
for obj in profile.namespace_objects + profile.workload_objects:
    kube.apply(obj)
targets = discover(kube, profile).targets
kube.exec = lambda *a, **kw: threading.Event().wait()  # an exec that never ends
print("probing", flush=True)
try:
    MatrixProber(kube, workers=4).run(targets)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


@pytest.mark.integration  # a process of its own, signalled as a terminal would
def test_ctrl_c_during_a_matrix_ends_the_process_within_seconds(tmp_path):
    """The probes in flight are not waited for: Python joins a
    ThreadPoolExecutor's threads at exit, and an exec that hangs would hold
    the process (and the cluster's lease) for as long as it hangs."""
    import signal
    import subprocess
    import sys

    from support import ROOT

    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "probing\n"
    time.sleep(0.5)  # the pool's threads are in their execs
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack, on stderr
        time.sleep(1)
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running 20 s after Ctrl-C; its threads:\n{err}")
    finally:
        proc.kill()
    took = time.monotonic() - t0
    assert (proc.returncode, out, err) == (130, "interrupted\n", "")
    assert took < 3, took


def test_unprobeable_edges_are_reported_not_probed(dashi):
    kube, _ = dashi
    edge = Edge("a/x", "a/x", 80)
    run = MatrixProber(kube).run({edge: "a pod's traffic to itself never reaches the network"})
    obs = run.observations[edge]
    assert (obs.result.kind, obs.attempts, run.probes) == ("unprobed", 0, 0)
    assert kube.calls_of("exec") == []


def test_workers_must_be_positive():
    with pytest.raises(DashiError, match="at least 1"):
        MatrixProber(FakeKube(), workers=0)


def test_exec_result_shape_from_any_kube():
    # The prober only needs exec's returncode and stderr: a minimal seam works.
    class Minimal:
        def exec(self, namespace, pod, argv, container=None, timeout=10.0):
            if argv[0] == "/bin/sh":  # the batch: one line per probe
                return ExecResult(0, "@@ 0 1 REFUSED\n", "")
            return ExecResult(1, "", "REFUSED\n")

    edge = Edge("a/x", "b/y", 80)
    clock = FakeClock()  # the disagreeing probe is re-polled for 10 s: on a fake clock
    run = MatrixProber(Minimal(), clock=clock, sleep=clock.sleep).run({edge: Target("a", "x", "10.0.0.1", 80)},
                                                                      {edge: True})
    assert run.observations[edge].result.kind == "refused"


def test_ctrl_c_drops_the_queued_probes(dashi):
    kube, profile = dashi
    counting = CountingKube(kube, hold=0.05)
    targets = dict(list(discover(kube, profile).targets.items())[:40])
    kube.fail("exec", exc=KeyboardInterrupt, times=1)
    with pytest.raises(KeyboardInterrupt):
        MatrixProber(counting, workers=2).run(targets)
    assert len(kube.calls_of("exec")) < 10  # not all 40: the queue was cancelled


# -- one exec per source pod -----------------------------------------------------


def test_a_batch_is_one_exec_per_source_running_every_probe_of_it(dashi):
    kube, profile = dashi
    live = discover(kube, profile)
    run = MatrixProber(kube, poll_timeout=0).run(live.targets)
    sources = {(t.namespace, t.pod) for t in live.targets.values() if isinstance(t, Target)}
    execs = kube.calls_of("exec")
    assert len(execs) == len(sources) == run.execs == run.batched_sources == 14
    assert run.mode == "one exec per source pod (TCP by nc)" and run.per_edge_sources == 0
    argv = execs[0].argv
    assert argv[:4] == ("/bin/sh", "-c", BATCH_SCRIPT, "dashi-probe") and argv[4:8] == ("/agnhost", "1s", "1", "auto")
    # every probe of the matrix is in one of the batches, as (index, kind, target)
    assert sum((len(c.argv) - 8) // 3 for c in execs) == len(run.observations) == 240
    assert {o.result.kind for o in run.observations.values()} == {"connected"}


def test_udp_dns_is_probed_with_a_real_query_allowed_and_blocked(dashi):
    kube, profile = dashi
    live = discover(kube, profile)
    dns = {e: t for e, t in live.targets.items() if e.protocol == "UDP" and e.port == 53}
    assert len(dns) == 14
    open_run = MatrixProber(kube, poll_timeout=0).run(dns)
    assert {(o.result.kind, o.result.detail) for o in open_run.observations.values()} == \
        {("connected", "DNS answered over UDP")}
    apply_steps(kube, profile, 1)  # default-deny: DNS dropped
    closed = MatrixProber(kube, poll_timeout=0).run(dns)
    assert {o.result.kind for o in closed.observations.values()} == {"timeout"}
    kube.reject = True  # kube-router REJECTs: the query is refused
    rejected = MatrixProber(kube, poll_timeout=0).run(dns)
    assert {o.result.kind for o in rejected.observations.values()} == {"refused"}


def test_a_pod_without_a_shell_falls_back_to_one_exec_per_edge(dashi):
    kube, profile = dashi
    kube.shell = False
    live = discover(kube, profile)
    targets = {e: t for e, t in live.targets.items() if isinstance(t, Target) and t.pod == "debug"
               and t.namespace == "dashi-data"}
    run = MatrixProber(kube, poll_timeout=0).run(targets)
    assert run.mode == "one exec per edge (no shell in the source pods)"
    assert run.execs == 1 + len(targets)  # the failed batch, then one per edge
    kinds = {e.protocol: o.result.kind for e, o in run.observations.items()}
    assert kinds["TCP"] == "connected" and kinds["UDP"] == "unprobed"


def test_only_disagreeing_edges_are_re_polled_and_the_time_to_enforce_is_kept(dashi):
    kube, profile = dashi
    clock = FakeClock()
    kube.clock, kube.lag_seconds = clock, 2.0  # the CNI takes 2 s to program default-deny
    apply_steps(kube, profile, 1)
    live = discover(kube, profile)
    predicted = {e: False for e in live.targets}
    run = MatrixProber(kube, clock=clock, sleep=clock.sleep).run(live.targets, predicted)
    assert run.matched_seconds == 2.0 and clock.slept == [1.0, 1.0]
    assert run.execs == 14 * 3  # three rounds, one exec per source each
    assert {o.result.kind for o in run.observations.values()} == {"timeout"}


def test_batch_results_parse_by_index_and_missing_lines_are_errors():
    t = [Target("a", "x", "10.0.0.1", 80), Target("a", "x", "10.0.0.2", 53, "UDP"), Target("a", "x", "10.0.0.3", 81)]
    res = ExecResult(0, "@@ 1 143 \n@@ 0 0 \n", "")
    out = parse_batch(t, res)
    assert [r.kind for r in out] == ["connected", "timeout", "other"]
    mdns = [Target("a", "x", "10.0.0.1", 5353, "UDP")]
    quiet = ExecResult(0, "@@ 0 1 TIMEOUT: read udp: i/o timeout\n", "")
    assert [r.kind for r in parse_batch(mdns, quiet)] == ["unprobed"]
    assert [r.kind for r in parse_batch(mdns, quiet, "drop", udp_echo=True)] == ["timeout"]
    with pytest.raises(NoShell):
        parse_batch(t, ExecResult(126, "", 'exec: "/bin/sh": stat /bin/sh: no such file or directory'))


def test_classify_dns_reads_busybox_nslookup():
    # The three shapes measured with busybox 1.35 nslookup under timeout 1.
    answered = "Server: 10.0.0.2 Address: 10.0.0.2:53 ** server can't find kubernetes.default: NXDOMAIN"
    assert classify_dns(1, answered).kind == "connected"
    assert classify_dns(143, "").kind == "timeout"
    assert classify_dns(143, "nslookup: read: Connection refused").kind == "refused"


def test_a_probe_ended_by_the_batch_deadline_is_a_timeout():
    targets = [Target("ns", "p", "10.42.0.9", 80), Target("ns", "p", "10.42.0.10", 80)]
    res = ExecResult(0, "@@ tool nc\n@@ 1 0 \n@@ deadline\n", "")
    assert [r.kind for r in parse_batch(targets, res)] == ["timeout", "connected"]
    # Without the deadline's line a missing result is an error, as before.
    assert parse_batch(targets, ExecResult(0, "@@ tool nc\n@@ 1 0 \n", ""))[0].kind == "other"


@pytest.mark.parametrize("whole_pass_max", [1000, 10])
def test_a_small_matrix_is_re_polled_whole_and_a_large_one_by_its_disagreements(dashi, whole_pass_max):
    """One step's change seen late by the CNI: the first pass disagrees on the
    edges it changes. A small matrix is re-polled whole, and the re-poll that
    agrees is the whole pass that proves it (two rounds of one exec per
    source); past ``whole_pass_max`` only the disagreeing edges' sources are
    re-polled, then the whole matrix once more. Either way every edge is probed
    after the CNI caught up, and no round waits between (poll interval 0)."""
    kube, profile = dashi
    clock = FakeClock()
    apply_steps(kube, profile, 1)
    kube.lag_probes = 100  # allow-dns: the first 100 probes after it still see default-deny
    apply_steps(kube, profile, 2)
    live = discover(kube, profile)
    expected = {e: v.allowed for e, v in predict(profile, profile.policies_through(2), live.endpoints).items()}
    prober = MatrixProber(kube, clock=clock, sleep=clock.sleep, poll_interval=0.0, whole_pass_max=whole_pass_max)
    run = prober.run(live.targets, expected)
    assert any(o.attempts > 1 for o in run.observations.values())
    assert all(agrees(o, expected[o.edge]) for o in run.observations.values())
    re_polled = {(o.target.namespace, o.target.pod) for o in run.observations.values() if o.attempts == 3}
    if whole_pass_max >= len(run.observations):
        assert run.execs == 14 * 2 and not re_polled
    else:
        assert run.execs == 14 * 2 + len(re_polled) and 0 < len(re_polled) < 14
    assert clock.slept == []  # each round follows the last at once


def test_probe_shells_stay_open_across_rounds_and_runs(dashi):
    """Settings' prober keeps one shell per source pod open: the second
    round and the second verification send requests to them instead of
    starting execs; every batch still runs (and is recorded) in the pod."""
    kube, profile = dashi
    clock = FakeClock()
    settings = ProbeSettings(clock=clock, sleep=clock.sleep)
    live = discover(kube, profile)
    prober = settings.prober(kube)
    first = prober.run(live.targets, {e: True for e in live.targets})
    apply_steps(kube, profile, 1)
    expected = {e: v.allowed for e, v in predict(profile, profile.policies_through(1), live.endpoints).items()}
    assert settings.prober(kube) is prober
    second = prober.run(live.targets, expected)
    assert all(agrees(o, expected[o.edge]) for o in second.observations.values())
    assert len(kube.calls_of("open_exec")) == 14  # one shell per source pod, opened once
    assert len(kube.calls_of("exec")) == first.execs + second.execs  # each batch ran in its pod
    assert second.mode.startswith("one shell per source pod, kept open")


def test_a_probe_shell_that_fails_is_replaced_by_an_exec_for_that_batch(dashi):
    kube, profile = dashi
    clock = FakeClock()
    prober = ProbeSettings(clock=clock, sleep=clock.sleep).prober(kube)
    live = discover(kube, profile)
    prober.run(live.targets, {e: True for e in live.targets})
    kube.fail("exec", times=1)  # one request through a shell fails: the stream dropped
    run = prober.run(live.targets, {e: True for e in live.targets})
    assert {o.result.kind for o in run.observations.values() if o.target} >= {"connected"}
    assert all(o.attempts == 1 for o in run.observations.values() if o.result.kind != "unprobed")
    assert len(kube.calls_of("open_exec")) == 14
    prober.run(live.targets, {e: True for e in live.targets})
    assert len(kube.calls_of("open_exec")) == 15  # the failed shell was closed, and opened again next time


@pytest.mark.parametrize("path", ["per edge", "one exec per source", "shell kept open"])
def test_udp_echo_reads_silence_as_a_drop_on_every_probe_path(dashi, path):
    """A UDP probe to a port whose server echoes agnhost's payload: dropped
    by default-deny, it is silence, read as a drop with ``udp_echo`` and as
    unprobed without, whether probed per edge, in one exec or through a
    shell kept open."""
    kube, profile = dashi
    apply_steps(kube, profile, 1)  # default-deny
    kube.shell = path != "per edge"
    clock = FakeClock()
    ip = kube.get("v1", "Pod", "rustfs-1", "dashi-platform")["status"]["podIP"]
    edge = Edge("dashi-data/debug", "dashi-platform/rustfs", 5353, "UDP")
    targets = {edge: Target("dashi-data", "debug", ip, 5353, "UDP")}
    kinds = {}
    for echo in (False, True):
        prober = MatrixProber(kube, clock=clock, sleep=clock.sleep, poll_interval=0.0, poll_timeout=0.0,
                              sessions=path == "shell kept open", udp_echo=echo)
        kinds[echo] = prober.run(targets, {edge: False}).observations[edge].result.kind
        prober.close()
    assert kinds == {False: "unprobed", True: "timeout"}
    assert bool(kube.calls_of("open_exec")) == (path == "shell kept open")
