"""Rollback you can trust, proven on the real test cluster.

* kill -9 of ``inv network-policies-up`` and of ``inv rollback`` at random
  moments across snapshot, apply, verify and restore; after each kill the
  next run of the same command must finish, leave the live NetworkPolicies of
  the profile's namespaces exactly the intended set (spec by spec), and leave
  a foreign NetworkPolicy placed beforehand byte-identical;
* the API server stopped in the middle of a step, then started again: a
  one-line error, no traceback, and the next run resumes and ends exact;
* two concurrent runs (two working directories sharing one state directory,
  and two state directories standing for two machines): exactly one
  proceeds, the other is refused naming the holder.

The kill tests use the ``environments`` profile (3 steps, 113 edges: one
verification costs a few seconds where dashi's full matrix costs ~10 s) and
mostly ``--until allow-dns``. ``DASHI_E2E_SEED`` repeats a run (the seed is
printed), ``DASHI_E2E_KILLS`` sets how many kills per command (default 20).
The API-server test needs root (tests/e2e/hostcluster/apiserver.sh stops and starts
the host process); it skips with the reason otherwise.

Test traffic goes only to pods of this cluster and its API server.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cluster.live.record.policies import canonical_spec
from cluster.policy.profile import load_profile

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
APISERVER = ROOT / "tests" / "e2e" / "hostcluster" / "apiserver.sh"
PROFILE = load_profile("environments")
NAMESPACES = PROFILE.profile_namespaces
SEED = int(os.environ.get("DASHI_E2E_SEED") or random.SystemRandom().randrange(2 ** 32))
KILLS = int(os.environ.get("DASHI_E2E_KILLS") or 20)
FOREIGN = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "team-foreign", "namespace": "develop", "labels": {"team": "platform"}},
           "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "nothing-here"}},
                    "policyTypes": ["Ingress"], "ingress": [{"ports": [{"protocol": "TCP", "port": 7777}]}]}}


# --------------------------------------------------------------------------
# Helpers: the cluster as the tests read it, runs that can be killed


def api_objects(cluster):
    from kubernetes import client

    api = cluster.api()
    return api, client.NetworkingV1Api(api), client.CoreV1Api(api)


def cluster_uid(cluster) -> str:
    _, _, core = api_objects(cluster)
    return core.read_namespace("kube-system").metadata.uid


def raw_foreign(cluster) -> bytes:
    """The foreign policy exactly as the API server serves it (resourceVersion,
    managedFields and all): byte-identical means nobody wrote to it."""
    _, net, _ = api_objects(cluster)
    return net.read_namespaced_network_policy("team-foreign", "develop", _preload_content=False).data


def live_policies(cluster) -> dict[tuple[str, str], dict]:
    api, net, _ = api_objects(cluster)
    out = {}
    for ns in NAMESPACES:
        for p in net.list_namespaced_network_policy(ns).items:
            out[(ns, p.metadata.name)] = api.sanitize_for_serialization(p)
    return out


def exact(cluster, k: int, foreign_before: bytes) -> list[str]:
    """How the live policies differ from the profile's first k steps plus the
    foreign one (empty: exact)."""
    live = live_policies(cluster)
    want = {(o["metadata"]["namespace"], o["metadata"]["name"]): canonical_spec(o["spec"])
            for o in PROFILE.policies_through(k)}
    ours = {key: p for key, p in live.items()
            if (p["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "dashi-cluster"}
    others = sorted(f"{ns}/{n}" for (ns, n) in live if (ns, n) not in ours and (ns, n) != ("develop", "team-foreign"))
    problems = [f"missing {ns}/{n}" for (ns, n) in want if (ns, n) not in ours]
    problems += [f"extra {ns}/{n}" for (ns, n) in ours if (ns, n) not in want]
    problems += [f"spec of {ns}/{n}" for (ns, n), spec in want.items()
                 if (ns, n) in ours and canonical_spec(ours[(ns, n)]["spec"]) != spec]
    problems += [f"unexpected policy {r}" for r in others]
    if raw_foreign(cluster) != foreign_before:
        problems.append("the foreign policy develop/team-foreign changed")
    return problems


def record_of(state_dir: Path, uid: str) -> dict:
    path = state_dir / "clusters" / uid / PROFILE.name / "state.yaml"
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def snapshot_count(state_dir: Path, uid: str) -> int:
    path = state_dir / "clusters" / uid / PROFILE.name / "snapshots" / "index.yaml"
    try:
        return len((yaml.safe_load(path.read_text()) or {}).get("snapshots") or [])
    except (OSError, yaml.YAMLError):
        return 0


def phase(state_dir: Path, uid: str) -> str | None:
    """The phase the step record says the run is in: applying, verifying,
    restoring, "verifying the restore" (a restore stays in progress until its
    verification has run), or None (between steps, snapshotting, done)."""
    ip = record_of(state_dir, uid).get("in_progress") or {}
    return "verifying the restore" if ip.get("restored") else ip.get("phase")


def inv_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]


class Started:
    """A run in the background. Its output goes to files, not pipes: a pipe
    nobody reads fills up (a verification prints its matrices) and the run
    would stall on it."""

    def __init__(self, args: list[str], env: dict, cwd: Path = ROOT):
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        # Its own session: kill -9 of the group takes every thread and child with it.
        self.proc = subprocess.Popen(inv_argv(*args), cwd=cwd, env=env, stdout=self.out, stderr=self.err,
                                     text=True, start_new_session=True)
        self.pid = self.proc.pid

    def poll(self):
        return self.proc.poll()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def finish(self, timeout: float = 600) -> tuple[int, str, str]:
        self.proc.wait(timeout=timeout)
        outputs = []
        for f in (self.out, self.err):
            if not f.closed:
                f.seek(0)
                outputs.append(f.read())
                f.close()
            else:
                outputs.append("")
        return self.proc.returncode, outputs[0], outputs[1]


def start(args: list[str], env: dict, cwd: Path = ROOT) -> Started:
    return Started(args, env, cwd)


def run(args: list[str], env: dict, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(inv_argv(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"$ inv {' '.join(args)} -> exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return proc


@dataclass
class Kill:
    n: int
    command: str
    trigger: str
    delay: float
    phase_at_kill: str | None = None
    killed: bool = False
    seconds: float = 0.0
    recovered: bool = False
    problems: list[str] = field(default_factory=list)


def kill_at(args: list[str], env: dict, state_dir: Path, uid: str, trigger: str, delay: float,
            timeout: float = 300) -> tuple[bool, str | None, float, str]:
    """Start a run, wait for the trigger, wait ``delay`` more, kill -9 it.
    Returns (killed, phase in the record at the kill, seconds, output)."""
    snaps = snapshot_count(state_dir, uid)
    proc = start(args, env)
    t0 = time.monotonic()
    fired = None
    while proc.poll() is None and time.monotonic() - t0 < timeout:
        now = time.monotonic()
        ph = phase(state_dir, uid)
        if fired is None and (
                (trigger == "time")
                or (trigger == "snapshot" and snapshot_count(state_dir, uid) > snaps)
                or (trigger == ph)):
            fired = now
        if fired is not None and now - fired >= delay:
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    proc.kill()
    _, out, err = proc.finish(timeout=60)
    # Read once the run is dead: the record as the killed run left it.
    return killed, phase(state_dir, uid), time.monotonic() - t0, out + err


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def prepared(e2e_cluster):
    """The environments stand-ins deployed (and the canary's deny behaviour
    measured into the session's state directory), a foreign policy placed,
    the profile's policies of ours at the baseline."""
    proc = e2e_cluster.inv("prepare", "--context", e2e_cluster.context, "--profile", "environments", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, net, _ = api_objects(e2e_cluster)
    try:
        net.create_namespaced_network_policy("develop", FOREIGN)
    except Exception as e:  # noqa: BLE001 - already there from an earlier run is fine
        if getattr(e, "status", None) != 409:
            raise
    proc = e2e_cluster.inv("rollback", "--profile", "environments", "--to", "baseline",
                           "--context", e2e_cluster.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return raw_foreign(e2e_cluster), cluster_uid(e2e_cluster)


# --------------------------------------------------------------------------
# kill -9 at random moments


# The moments a kill waits for, each with the longest random delay after it,
# and the draw of moments once each was tried (the short phases weighed up).
UP_MOMENTS = {"snapshot": 0.05, "applying": 0.08, "verifying": 3.0, "time": 6.0}
UP_DRAW = ["snapshot", "applying", "applying", "verifying", "verifying", "time"]
BACK_MOMENTS = {"snapshot": 0.05, "restoring": 0.1, "verifying the restore": 3.0, "time": 3.0}
BACK_DRAW = ["snapshot", "restoring", "restoring", "verifying the restore", "time"]


def test_kill_minus_9_at_random_moments_then_the_same_command_finishes_exact(e2e_cluster, prepared, say):
    foreign, uid = prepared
    rng = random.Random(SEED)
    say(f"\nkill tests: seed {SEED} (DASHI_E2E_SEED={SEED} repeats them), {KILLS} kills per command, "
        "profile environments")
    ctx = ["--profile", "environments", "--context", e2e_cluster.context, "--yes"]
    env, state = e2e_cluster.env, e2e_cluster.state_dir
    kills: list[Kill] = []
    t_start = time.monotonic()

    def tried(command: str) -> int:
        return sum(1 for k in kills if k.killed and k.command.startswith(command))

    def missing() -> list[str]:
        """The moments no kill has landed in yet."""
        seen = {k.phase_at_kill for k in kills if k.killed} | {
            "snapshot" for k in kills if k.killed and k.trigger == "snapshot"}
        return [m for m in ("applying", "verifying", "snapshot", "restoring") if m not in seen]

    def moment(moments: dict[str, float], draw: list[str], command: str) -> tuple[str, float]:
        """This round's trigger and delay. The first rounds try each kind of
        moment once, at once, so that every phase is covered with few kills
        too (DASHI_E2E_KILLS=4 on the other lanes in CI); once the command has its
        KILLS, a moment still missing, at once; else one at random."""
        kinds = tuple(moments)
        gap = [m for m in missing() if m in moments]
        trigger = (kinds[rounds - 1] if rounds <= len(kinds)
                   else gap[0] if gap and tried(command) >= KILLS else rng.choice(draw))
        if rounds <= len(kinds) and trigger != "time" or trigger in gap:
            return trigger, 0.0
        return trigger, {m: rng.uniform(0, most) for m, most in moments.items()}[trigger]

    rounds = 0
    # A run can finish before its moment comes, and a step applies in a few
    # tens of milliseconds: go on until each command was really killed KILLS
    # times and every moment was hit (at most 3 x KILLS rounds).
    while (tried("network") < KILLS or tried("rollback") < KILLS or missing()) and rounds < 3 * KILLS:
        rounds += 1
        # network-policies-up from the baseline, mostly --until allow-dns.
        until = rng.choice(["allow-dns"] * 3 + ["allow-from-ingress-controller"])
        k_up = PROFILE.step_index(until)
        trigger, delay = moment(UP_MOMENTS, UP_DRAW, "network")
        up = ["network-policies-up", "--until", until, *ctx]
        kill = Kill(len(kills) + 1, f"network-policies-up --until {until}", trigger, delay)
        kill.killed, kill.phase_at_kill, kill.seconds, _ = kill_at(up, env, state, uid, trigger, delay)
        again = run(up, env)
        kill.problems = ([f"the next run exited {again.returncode}: {again.stderr.strip()[-300:]}"]
                         if again.returncode else []) + exact(e2e_cluster, k_up, foreign)
        kill.recovered = not kill.problems
        kills.append(kill)

        # rollback from there: to the baseline, to default-deny, or one step back.
        to = rng.choice(["baseline", "baseline", "default-deny", None])
        k_back = 0 if to == "baseline" else 1 if to == "default-deny" else k_up - 1
        trigger, delay = moment(BACK_MOMENTS, BACK_DRAW, "rollback")
        back = ["rollback", *(["--to", to] if to else []), *ctx]
        kill = Kill(len(kills) + 1, f"rollback{' --to ' + to if to else ''}", trigger, delay)
        kill.killed, kill.phase_at_kill, kill.seconds, _ = kill_at(back, env, state, uid, trigger, delay)
        # "The next run of the same command". A plain `rollback` (one step
        # back) that had already finished before the kill landed would
        # rightly go one step further: then the target is named instead.
        rec = record_of(state, uid)
        done = (not rec.get("in_progress") and [e["name"] for e in rec.get("steps") or []]
                == [st.name for st in PROFILE.steps[:k_back]] and all(e["verified_at"] for e in rec["steps"]))
        target = to or (PROFILE.steps[k_back - 1].name if k_back else "baseline")
        again = run(["rollback", "--to", target, *ctx] if to is None and done else back, env)
        kill.problems = ([f"the next run exited {again.returncode}: {again.stderr.strip()[-300:]}"]
                         if again.returncode else []) + exact(e2e_cluster, k_back, foreign)
        kill.recovered = not kill.problems
        kills.append(kill)
        # back to the baseline for the next round (not killed; must be exact too)
        reset = run(["rollback", "--to", "baseline", *ctx], env)
        assert reset.returncode == 0 and not exact(e2e_cluster, 0, foreign), f"seed {SEED}: reset failed"

    lines = [f"{'#':>3} {'command':<46} {'trigger':<22} {'delay':>6} {'killed':<6} {'phase at kill':<14} result"]
    for k in kills:
        lines.append(f"{k.n:>3} {k.command:<46} {k.trigger:<22} {k.delay:>6.2f} {str(k.killed):<6} "
                     f"{k.phase_at_kill or '-':<14} {'exact' if k.recovered else '; '.join(k.problems)}")
    killed = [k for k in kills if k.killed]
    by_phase: dict[str, int] = {}
    for k in killed:
        by_phase[k.phase_at_kill or "none"] = by_phase.get(k.phase_at_kill or "none", 0) + 1
    summary = (f"seed {SEED}: {len(killed)} kill points tried ({tried('network')} network-policies-up, "
               f"{tried('rollback')} rollback; in the record at the kill: {json.dumps(by_phase)}; "
               f"{sum(1 for k in killed if k.trigger == 'snapshot')} right after a snapshot was written), "
               f"{sum(1 for k in kills if k.recovered)} of {len(kills)} runs recovered exactly, "
               f"{sum(1 for k in kills if not k.recovered)} lost; {time.monotonic() - t_start:.0f} s")
    say("\n".join(lines + [summary]))
    assert all(k.recovered for k in kills), summary
    assert tried("network") >= KILLS and tried("rollback") >= KILLS, summary
    # across snapshot, apply, verify and restore
    assert {"applying", "verifying", "restoring"} <= set(by_phase), summary
    assert any(k.trigger == "snapshot" for k in killed), summary


# --------------------------------------------------------------------------
# The API server goes away mid-step


def _wait_stable_ready(cluster, stable_s: float = 15.0, timeout_s: float = 240.0) -> None:
    """After an outage the controller manager finds the node's heartbeat
    stale and marks the node, and with it every pod, not Ready until the
    kubelet reports again, which can come some seconds after the API server
    answers. The tool rightly refuses to probe from pods that are not Ready;
    the test waits until the profile's pods have been Ready for ``stable_s``
    without a break."""
    from cluster.live.observe.poll import wait_until
    from cluster.live.observe.readiness import node_ready, workload_ready
    from cluster.seams.kubeclient import ClientKube

    kube = ClientKube(context=cluster.context, kubeconfig=cluster.kubeconfig)
    since: list[float] = []  # when the current unbroken Ready stretch began
    # The controller manager's watches come back after client-go's reflector
    # backoff (about a minute measured here): until then a new namespace gets
    # no default ServiceAccount, and the next test's canary could not start.
    probe_ns = f"dashi-e2e-recovered-{os.getpid()}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": probe_ns}})

    def stable() -> tuple[bool, str]:
        nodes = [d for ok, d in (node_ready(n) for n in kube.list("v1", "Node")) if not ok]
        if nodes or kube.get("v1", "ServiceAccount", "default", probe_ns) is None:
            since.clear()
            return False, f"control plane: {', '.join(nodes) or f'no default ServiceAccount in {probe_ns} yet'}"
        pods = [p for ns in NAMESPACES for p in kube.list("v1", "Pod", ns)]
        waiting = [d for ok, d in (workload_ready(p) for p in pods) if not ok]
        if waiting or not pods:
            since.clear()
            return False, f"not Ready: {', '.join(waiting) or 'no pods'}"
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] >= stable_s, f"Ready for {time.monotonic() - since[0]:.0f} s"

    try:
        wait_until(f"the node, the controller manager and the profile's pods Ready for {stable_s:.0f} s in a row "
                   "after the API server came back", stable,
                   timeout_s=timeout_s, interval_s=1.0, clock=time.monotonic, sleep=time.sleep, retry_api_errors=True)
    finally:
        kube.delete("v1", "Namespace", probe_ns)


def test_the_api_server_stopped_mid_step_gives_one_line_and_the_next_run_ends_exact(e2e_cluster, prepared, say):
    if os.geteuid() != 0:
        pytest.skip("stopping the test cluster's API server needs root (tests/e2e/hostcluster/apiserver.sh)")
    foreign, uid = prepared
    ctx = ["--profile", "environments", "--context", e2e_cluster.context, "--yes"]
    env, state = e2e_cluster.env, e2e_cluster.state_dir
    up = ["network-policies-up", "--until", "allow-dns", *ctx]
    for moment in ("verifying", "applying"):
        proc = start(up, env)
        t0 = time.monotonic()
        while proc.poll() is None and phase(state, uid) != moment and time.monotonic() - t0 < 120:
            time.sleep(0.005)
        assert proc.poll() is None, f"the run ended before phase {moment}"
        try:
            subprocess.run([str(APISERVER), "stop"], check=True, timeout=120)
            code, out, err = proc.finish(timeout=300)
        finally:
            proc.kill()
            subprocess.run([str(APISERVER), "start"], check=True, timeout=200)
            _wait_stable_ready(e2e_cluster)
        say(f"\nAPI server stopped while {moment}: exit {code}; stderr: {err.strip()}")
        assert code != 0
        assert "Traceback" not in out + err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        again = run(up, env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "was cut off" in again.stdout
        assert not exact(e2e_cluster, 2, foreign)
        assert run(["rollback", "--to", "baseline", *ctx], env).returncode == 0


# --------------------------------------------------------------------------
# Two runs at once


def _wait_holding(started: Started, cluster, timeout=120.0) -> None:
    """Until the run holds the cluster's lease (its holder names its pid)."""
    from kubernetes import client

    coord = client.CoordinationV1Api(cluster.api())
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and started.poll() is None:
        try:
            lease = coord.read_namespaced_lease("dashi-cluster", "kube-system")
            if lease.spec.holder_identity and f" pid {started.pid} " in lease.spec.holder_identity:
                return
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.02)
    raise AssertionError("the first run never held the lease")


@pytest.mark.parametrize("layout", ["two working directories", "two state directories"])
def test_two_concurrent_runs_exactly_one_proceeds(e2e_cluster, prepared, tmp_path, layout, say):
    foreign, _ = prepared
    ctx = ["--profile", "environments", "--context", e2e_cluster.context, "--yes"]
    base = {k: v for k, v in e2e_cluster.env.items() if k != "DASHI_STATE_DIR"}
    dirs = [tmp_path / "one", tmp_path / "two"]
    for d in dirs:
        d.mkdir()
    if layout == "two working directories":
        # One user, two shells in two directories: the default state place.
        envs = [{**base, "XDG_STATE_HOME": str(tmp_path / "xdg")}] * 2
    else:
        # Two machines: nothing shared but the cluster.
        envs = [{**base, "DASHI_STATE_DIR": str(tmp_path / f"machine-{i}")} for i in (1, 2)]
    first = start(["network-policies-up", "--until", "allow-dns", *ctx], envs[0], cwd=dirs[0])
    try:
        _wait_holding(first, e2e_cluster)
        second = subprocess.run(inv_argv("network-policies-up", "--until", "allow-dns", *ctx), cwd=dirs[1],
                                env=envs[1], capture_output=True, text=True, timeout=300)
        code1, out1, err1 = first.finish(timeout=600)
    finally:
        first.kill()
    say(f"\n{layout}: first exit {code1}; second exit {second.returncode}: {second.stderr.strip()}")
    assert code1 == 0, out1 + err1
    assert second.returncode == 1
    assert second.stderr.startswith("error: another run is changing this cluster: ")
    assert f"pid {first.pid}" in second.stderr and " since 20" in second.stderr
    assert not exact(e2e_cluster, 2, foreign)
    assert run(["rollback", "--to", "baseline", *ctx], envs[0], cwd=dirs[0]).returncode == 0
