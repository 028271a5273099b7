"""Safe on a shared cluster, proven on the real test cluster.

* another team's policy made in the middle of a run under a name a later
  step writes: the run stops before that step, the policy stays byte for
  byte as it was, and a rollback leaves it alone;
* ``kubectl label`` and ``kubectl patch`` (as ``kubectl edit``, its own
  field manager) on one of our policies, then ``rollback``: the live policy
  is the snapshot's, spec for spec and label for label;
* a TCP listener that accepts and never answers, as the API server (every
  task) and, through a proxy that forwards everything else to the real API
  server, as the exec endpoint, and as an API server that goes silent in
  the middle of a run: every task ends non-zero within its bound in one
  line, and a run releases what it holds (the lease, when the API server
  answers; this machine's lock always);
* two runs whose clocks differ by more than the lease (the wall clock of
  one is the test's): exactly one changes the cluster.

They use the ``environments`` profile (one verification costs a few
seconds) from its baseline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from support.apiproxy import ApiProxy

from cluster.live.record.policies import clean_policy, is_ours
from cluster.policy.profile import load_profile

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PROFILE = load_profile("environments")
NP = "networking.k8s.io/v1"
THEIRS = {"apiVersion": NP, "kind": "NetworkPolicy",
          "metadata": {"name": "allow-dns", "namespace": "develop",
                       "labels": {"app.kubernetes.io/managed-by": "flux"}},
          "spec": {"podSelector": {"matchLabels": {"team": "dns"}}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}}
# What "within its bound" allows a task against a server that says nothing:
# the seam's bounds (5 s to connect, an exec stream 10 s to open; a read
# 30 s) plus starting Python and, where a run held the lease, releasing it
# (at most 5 s), on a loaded 2-core machine.
SILENT_API_S = 25.0
HELD_EXEC_S = 45.0
SILENT_MID_RUN_S = 75.0


# --------------------------------------------------------------------------
# The cluster as the tests read it


def api(cluster):
    from kubernetes import client

    return client.NetworkingV1Api(cluster.api()), client.CoordinationV1Api(cluster.api())


def raw(cluster, ns: str, name: str) -> bytes:
    """A policy exactly as the API server serves it (resourceVersion,
    managedFields and all): byte-identical means nobody wrote to it."""
    net, _ = api(cluster)
    return net.read_namespaced_network_policy(name, ns, _preload_content=False).data


def ours(cluster) -> dict[tuple[str, str], dict]:
    net, _ = api(cluster)
    out = {}
    for ns in PROFILE.profile_namespaces:
        for p in net.list_namespaced_network_policy(ns).items:
            obj = cluster.api().sanitize_for_serialization(p)
            if is_ours(obj):
                out[(ns, p.metadata.name)] = obj
    return out


def exact(cluster, k: int) -> list[str]:
    """How our live policies differ from the profile's first k steps (empty: exact)."""
    from cluster.live.record.policies import canonical_spec

    live = ours(cluster)
    want = {(o["metadata"]["namespace"], o["metadata"]["name"]): canonical_spec(o["spec"])
            for o in PROFILE.policies_through(k)}
    return ([f"missing {k}" for k in want if k not in live] + [f"extra {k}" for k in live if k not in want]
            + [f"spec of {k}" for k, spec in want.items() if k in live and canonical_spec(live[k]["spec"]) != spec])


def holder(cluster) -> str:
    _, coord = api(cluster)
    try:
        return coord.read_namespaced_lease("dashi-cluster", "kube-system").spec.holder_identity or ""
    except Exception:  # noqa: BLE001 - not created yet
        return ""


def record(cluster, state_dir: Path) -> dict:
    from kubernetes import client

    uid = client.CoreV1Api(cluster.api()).read_namespace("kube-system").metadata.uid
    path = state_dir / "clusters" / uid / PROFILE.name / "state.yaml"
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def kubectl(cluster, *args: str) -> None:
    """The test cluster's own kubectl (built with it), else the one on PATH."""
    cache = Path(os.environ.get("DASHI_E2E_CACHE", "/var/cache/dashi-cluster-e2e"))
    found = sorted(cache.glob("bin/kubernetes-*/kubectl")) or [Path(shutil.which("kubectl") or "kubectl")]
    subprocess.run([str(found[-1]), "--kubeconfig", cluster.kubeconfig, *args], check=True, capture_output=True,
                   timeout=60)


# --------------------------------------------------------------------------
# Runs


def inv_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]


# A run whose lease sees the wall clock shifted by argv[1] seconds: another
# machine whose clock is off. Only the lease reads the wall clock to decide
# anything (the times it writes, and whether a holder looks stale).
SKEWED = """
import sys, time
from cluster.cli.common import make_console
from cluster.errors import DashiError
from cluster.live.rollout.rollout import Rollout
from cluster.policy.profile import load_profile
from cluster.seams.kubeclient import ClientKube

skew, context, until = float(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    Rollout(ClientKube(context=context), load_profile("environments"), out=make_console(), explicit_context=context,
            yes=True, lease={"now": lambda: time.time() + skew}).up(until)
except DashiError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)
"""


class Run:
    """A command in the background, its output in files (a pipe nobody reads would stall it)."""

    def __init__(self, argv: list[str], env: dict):
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.out, stderr=self.err, text=True,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.seconds = 0.0

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        """Wait for the run (kill it after ``timeout``); its exit code and output."""
        if self.out.closed:
            return self.proc.returncode, "", ""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.seconds = time.monotonic() - self.t0
        self.out.seek(0)
        self.err.seek(0)
        out, err = self.out.read(), self.err.read()
        self.out.close()
        self.err.close()
        print(f"$ {' '.join(self.proc.args[-8:])} -> exit {self.proc.returncode} in {self.seconds:.1f} s\n{out}\n{err}")
        return self.proc.returncode, out, err


def run(args: list[str], env: dict, timeout: float = 300) -> tuple[int, str, str]:
    return Run(inv_argv(*args), env).finish(timeout)


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err


def wait_for(what: str, check, timeout: float = 120.0, proc: Run | None = None) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return
        if proc is not None and proc.proc.poll() is not None:
            proc.finish()
            raise AssertionError(f"the run ended before {what}")
        time.sleep(0.02)
    raise AssertionError(f"never: {what}")


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def env(e2e_cluster):
    """The environments stand-ins deployed, their deny behaviour measured,
    our policies at the baseline; the arguments every command takes."""
    ctx = ["--profile", "environments", "--context", e2e_cluster.context, "--yes"]
    proc = e2e_cluster.inv("prepare", "--context", e2e_cluster.context, "--profile", "environments", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run(["rollback", "--to", "baseline", *ctx], e2e_cluster.env)[0] == 0
    return ctx


@pytest.fixture
def proxy(e2e_cluster, tmp_path):
    p = ApiProxy(e2e_cluster.kubeconfig, tmp_path / "proxy", e2e_cluster.context)
    yield p
    p.close()


# --------------------------------------------------------------------------
# Not ours


def test_a_policy_made_mid_run_under_a_later_steps_name_stops_the_run_and_is_never_touched(e2e_cluster, env, say):
    net, _ = api(e2e_cluster)
    up = Run(inv_argv("network-policies-up", *env), e2e_cluster.env)
    try:
        wait_for("step default-deny being verified",
                 lambda: (record(e2e_cluster, e2e_cluster.state_dir).get("in_progress") or {}).get("phase")
                 == "verifying", proc=up)
        # Another team's GitOps controller, while the run verifies step 1.
        net.create_namespaced_network_policy("develop", THEIRS, field_manager="kustomize-controller")
        before = raw(e2e_cluster, "develop", "allow-dns")
    finally:
        code, out, err = up.finish()
    say(f"\nforeign policy mid-run: exit {code} in {up.seconds:.1f} s: {err.strip()}")
    try:
        assert code == 1 and one_line(err), err
        assert err.startswith("error: step allow-dns: develop/allow-dns (managed by flux; field managers "
                              "kustomize-controller): a policy that is not ours already has the name; nothing of "
                              "this step was changed")
        rec = record(e2e_cluster, e2e_cluster.state_dir)
        assert [s["name"] for s in rec["steps"]] == ["default-deny"] and rec["in_progress"] is None
        assert not exact(e2e_cluster, 1)
        assert raw(e2e_cluster, "develop", "allow-dns") == before
        code, out, err = run(["rollback", "--to", "baseline", *env], e2e_cluster.env)
        assert code == 0, out + err
        assert "not ours, never touched: develop/allow-dns" in out
        assert not exact(e2e_cluster, 0)
        assert raw(e2e_cluster, "develop", "allow-dns") == before
    finally:
        net.delete_namespaced_network_policy("allow-dns", "develop")


def test_kubectl_label_and_edit_of_our_policy_then_rollback_restores_the_snapshot_exactly(e2e_cluster, env, say):
    code, out, err = run(["network-policies-up", *env], e2e_cluster.env)
    assert code == 0, out + err
    kubectl(e2e_cluster, "-n", "develop", "label", "networkpolicy", "allow-dns", "owner=team-b")
    kubectl(e2e_cluster, "-n", "develop", "patch", "networkpolicy", "allow-dns", "--field-manager", "kubectl-edit",
            "--type", "merge", "-p", '{"spec": {"podSelector": {"matchLabels": {"tier": "any"}}}}')
    edited = ours(e2e_cluster)[("develop", "allow-dns")]
    assert edited["metadata"]["labels"]["owner"] == "team-b"
    assert {f["manager"] for f in edited["metadata"]["managedFields"]} >= {"kubectl-label", "kubectl-edit"}
    code, out, err = run(["rollback", *env], e2e_cluster.env)  # one step back: the state after allow-dns
    say(f"\nkubectl label + patch, then rollback: exit {code}: {out.strip().splitlines()[-1] if out else err}")
    assert code == 0, out + err
    snap_file = sorted((e2e_cluster.state_dir / "clusters").glob(
        "*/environments/snapshots/*-before-allow-from-ingress-controller.yaml"))[-1]  # the newest holds step 2
    snap = {(p["metadata"]["namespace"], p["metadata"]["name"]): p
            for p in yaml.safe_load(snap_file.read_text())["policies"]}
    live = ours(e2e_cluster)
    assert set(live) == set(snap)
    for key, want in snap.items():
        got = clean_policy(live[key])
        assert got["spec"] == want["spec"], key  # spec for spec, as the API server serves it
        assert got["metadata"].get("labels") == want["metadata"].get("labels"), key  # label for label
        assert got["metadata"].get("annotations") == want["metadata"].get("annotations"), key
    assert {f["manager"] for f in live[("develop", "allow-dns")]["metadata"]["managedFields"]} == {"dashi-cluster"}
    assert run(["rollback", "--to", "baseline", *env], e2e_cluster.env)[0] == 0


# --------------------------------------------------------------------------
# An API server that says nothing


def test_every_task_against_a_silent_api_server_ends_within_its_bound_in_one_line(e2e_cluster, tmp_path, say):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    kubeconfig = tmp_path / "silent.yaml"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "silent",
        "clusters": [{"name": "silent", "cluster": {"server": f"https://127.0.0.1:{listener.getsockname()[1]}"}}],
        "users": [{"name": "silent", "user": {"token": "t"}}],
        "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "silent"}}]}))
    silent_env = {**e2e_cluster.env, "KUBECONFIG": str(kubeconfig), "DASHI_STATE_DIR": str(tmp_path / "state")}
    ctx = ["--context", "silent"]
    tasks = {"status": ["status", *ctx], "smoke": ["smoke", "-p", "environments", *ctx],
             "network-policies-up": ["network-policies-up", "-p", "environments", *ctx, "--yes"],
             "rollback": ["rollback", "-p", "environments", *ctx, "--yes"],
             "history": ["history", *ctx], "prepare": ["prepare", "-p", "environments", *ctx, "--yes"]}
    try:
        runs = {name: Run(inv_argv(*args), silent_env) for name, args in tasks.items()}  # at once: one bound, not six
        results = {name: r.finish(timeout=120) for name, r in runs.items()}
    finally:
        listener.close()
        for conn in held:
            conn.close()
    say("\nsilent API server: " + "; ".join(f"{n} exit {c} in {runs[n].seconds:.1f} s" for n, (c, _, _) in
                                              results.items()))
    for name, (code, out, err) in results.items():
        assert code != 0 and one_line(err), (name, err)
        assert "cannot reach the API server of silent" in err, (name, err)
        assert runs[name].seconds < SILENT_API_S, (name, runs[name].seconds)


def test_exec_streams_that_never_open_end_the_run_in_one_line_and_its_lease_is_released(e2e_cluster, env, proxy,
                                                                                       tmp_path, say):
    proxy.set_mode("hold-exec")
    held_env = {**e2e_cluster.env, "KUBECONFIG": proxy.kubeconfig(tmp_path / "held.yaml", "held-exec")}
    ctx = ["--profile", "environments", "--context", "held-exec", "--yes"]
    up = Run(inv_argv("network-policies-up", "--until", "default-deny", *ctx), held_env)
    wait_for("the run holding the lease", lambda: f" pid {up.pid} " in holder(e2e_cluster), proc=up)
    code, out, err = up.finish()
    say(f"\nexec streams that never open: exit {code} in {up.seconds:.1f} s: {err.strip()}")
    assert code != 0 and one_line(err), err
    assert "cannot probe: not one of " in err and "the exec stream did not open within 10s" in err
    assert up.seconds < HELD_EXEC_S
    assert holder(e2e_cluster) == ""  # released: the API server itself answered
    assert (record(e2e_cluster, e2e_cluster.state_dir).get("in_progress") or {}).get("phase") == "verifying"
    smoke = Run(inv_argv("smoke", "--profile", "environments", "--context", "held-exec"), held_env)
    code, out, err = smoke.finish()
    say(f"smoke, the same: exit {code} in {smoke.seconds:.1f} s")
    assert code != 0 and one_line(err) and smoke.seconds < HELD_EXEC_S, err
    code, out, err = run(["network-policies-up", "--until", "default-deny", *env], e2e_cluster.env)
    assert code == 0 and "cut off while verifying step default-deny" in out, out + err
    assert not exact(e2e_cluster, 1)
    assert run(["rollback", "--to", "baseline", *env], e2e_cluster.env)[0] == 0


def test_an_api_server_that_goes_silent_mid_run_ends_it_in_one_line_and_this_machines_lock_is_free(
        e2e_cluster, env, proxy, tmp_path, say):
    held_env = {**e2e_cluster.env, "KUBECONFIG": proxy.kubeconfig(tmp_path / "held.yaml", "held-all")}
    ctx = ["--profile", "environments", "--context", "held-all", "--yes"]
    up = Run(inv_argv("network-policies-up", "--until", "default-deny", *ctx), held_env)
    wait_for("step default-deny being verified",
             lambda: (record(e2e_cluster, e2e_cluster.state_dir).get("in_progress") or {}).get("phase")
             == "verifying", proc=up)
    proxy.set_mode("hold-all")
    code, out, err = up.finish()
    say(f"\nAPI server silent mid-run: exit {code} in {up.seconds:.1f} s: {err.strip()}")
    assert code != 0 and one_line(err), err
    assert up.seconds < SILENT_MID_RUN_S
    # This machine's lock is free, and the lease, which could not be cleared,
    # is taken over at once: its holder is a process of this machine that ended.
    code, out, err = run(["network-policies-up", "--until", "default-deny", *env], e2e_cluster.env)
    assert code == 0, out + err
    assert "belongs to a process that has ended; taken over" in out
    assert "cut off while verifying step default-deny" in out
    assert not exact(e2e_cluster, 1)
    assert run(["rollback", "--to", "baseline", *env], e2e_cluster.env)[0] == 0


# --------------------------------------------------------------------------
# Clocks that disagree


@pytest.mark.parametrize("skewed", ["the second run", "the first run"])
def test_two_runs_whose_clocks_differ_by_more_than_the_lease_exactly_one_changes_the_cluster(
        e2e_cluster, env, tmp_path, skewed, say):
    """Two machines (two state directories), one 120 s ahead of the other:
    the lease lasts 60 s. The first run holds the cluster; the second is
    refused, whichever clock is ahead, and never reaches its first step."""
    # Each machine ran prepare before (what the canary measured is known).
    for i in (1, 2):
        shutil.copytree(e2e_cluster.state_dir, tmp_path / f"machine-{i}")
    machines = [{**e2e_cluster.env, "DASHI_STATE_DIR": str(tmp_path / f"machine-{i}")} for i in (1, 2)]
    ctx = e2e_cluster.context

    def snapshots(i: int) -> list[Path]:
        return sorted((tmp_path / f"machine-{i}").glob("clusters/*/environments/snapshots/*.yaml"))

    before = snapshots(2)

    def start(i: int, skew: float) -> Run:
        if skew:
            return Run([sys.executable, "-c", SKEWED, str(skew), ctx, "allow-dns"], machines[i])
        return Run(inv_argv("network-policies-up", "--until", "allow-dns", *env), machines[i])

    first = start(0, 120.0 if skewed == "the first run" else 0.0)
    try:
        wait_for("the first run holding the lease", lambda: f" pid {first.pid} " in holder(e2e_cluster), proc=first)
        second = start(1, 120.0 if skewed == "the second run" else 0.0)
        code2, out2, err2 = second.finish()
    finally:
        code1, out1, err1 = first.finish()
    say(f"\nclocks 120 s apart ({skewed} ahead): first exit {code1} in {first.seconds:.1f} s; second exit {code2} "
        f"in {second.seconds:.1f} s: {err2.strip()}")
    assert code1 == 0, out1 + err1
    assert code2 == 1 and one_line(err2), err2
    assert ("another run is changing this cluster: " in err2
            or "released it while this run waited for its lease to run out" in err2), err2
    # The second never reached a step: not even a snapshot.
    assert snapshots(2) == before and len(snapshots(1)) > len(before)
    assert not exact(e2e_cluster, 2)
    assert run(["rollback", "--to", "baseline", *env], machines[0])[0] == 0
