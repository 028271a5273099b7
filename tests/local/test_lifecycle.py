"""The step engine, and cluster-up / cluster-down / status / prepare end to end
against the runner fake and the in-memory cluster."""

import dataclasses
import json

import pytest

from support import cli_process
from cluster import versions
from cluster.errors import CommandFailed, DashiError, GuardError, ToolMissing
from cluster.live.setup import prepare as live_prepare
from cluster.live.setup.canary import NotEnforced
from cluster.live.setup.pipeline import (
    Note,
    Stage,
    Run,
    Session,
    StageFailed,
    Wait,
    nothing_changed,
    print_plan,
    run_stages,
)
from cluster.local import k3d
from cluster.local import lifecycle as commands
from cluster.seams.runner import FakeRunner, Result
from support.local_world import (
    LocalWorld,
    add_flannel_annotation,
    fake_docker,
    free_port,
    recording_console,
    seed_calico,
)

# -- the engine ----------------------------------------------------------------


def _session(runner=None, **kw):
    console, buf = recording_console()
    return Session(runner=runner or FakeRunner(), console=console, **kw), buf


def test_steps_run_in_order_with_status_lines():
    s, buf = _session()
    order = []
    steps = [Stage("a", "First", run=lambda s: order.append("a") or "did a"),
             Stage("b", "Second", check=lambda s: "was done", run=lambda s: order.append("b")),
             Stage("c", "Third", actions=lambda s: [Run(["k3d", "version"])]),
             Stage("d", "Fourth", run=lambda s: (False, "idempotent apply, nothing new")),
             Stage("e", "Check", run=lambda s: "ok", verify=True)]
    outcomes = run_stages(steps, s)
    assert order == ["a"]
    assert [o.status for o in outcomes] == ["changed", "unchanged", "changed", "unchanged", "verified"]
    assert s.runner.argvs == [("k3d", "version")]
    out = buf.getvalue()
    assert "✓ [1/5] First — did a" in out
    assert "= [2/5] Second (no change) — was done" in out
    assert "= [4/5] Fourth (no change) — idempotent apply, nothing new" in out
    assert not nothing_changed(outcomes)
    assert nothing_changed(outcomes[1:2] + outcomes[3:])


def test_failed_command_reports_argv_and_tail_and_keeps_everything():
    r = FakeRunner().on("kubectl", returncode=1, stderr="line1\nError: the server is on fire")
    s, buf = _session(r)
    undone = []
    steps = [Stage("create", "Create", run=lambda s: "made", undo=lambda s: undone.append("create")),
             Stage("cni", "Install", actions=lambda s: [Run(["kubectl", "apply", "-f", "x.yaml"])])]
    with pytest.raises(StageFailed) as ei:
        run_stages(steps, s, after_failure="left for inspection: run cluster-down")
    assert undone == []
    assert "left for inspection" in str(ei.value)
    assert isinstance(ei.value.cause, CommandFailed)
    out = buf.getvalue()
    assert "✗ [2/2] Install — failed after" in out
    assert "command: kubectl apply -f x.yaml" in out
    assert "| Error: the server is on fire" in out


def test_cleanup_on_failure_undoes_in_reverse():
    s, buf = _session(cleanup_on_failure=True)
    undone = []

    def boom(s):
        raise DashiError("nope")

    steps = [Stage("a", "A", run=lambda s: "", undo=lambda s: undone.append("a")),
             Stage("b", "B", run=lambda s: "", undo=lambda s: undone.append("b")),
             Stage("c", "C", run=boom, undo=lambda s: undone.append("c"))]
    with pytest.raises(StageFailed) as ei:
        run_stages(steps, s, after_failure="kept")
    assert undone == ["c", "b", "a"]
    assert "kept" not in str(ei.value)


def test_wait_times_out_with_the_last_detail():
    t = {"now": 0.0}
    s, _ = _session(clock=lambda: t["now"], sleep=lambda d: t.__setitem__("now", t["now"] + d))
    w = Wait("the thing is ready", lambda s: (False, "2/3 ready"), timeout_s=10, interval_s=2)
    with pytest.raises(DashiError, match=r"timed out after 10s waiting until the thing is ready \(last seen: 2/3 ready\)"):
        w.execute(s)


def test_titles_notes_plans_and_output_are_printed_as_text():
    r = FakeRunner().on("kubectl", returncode=1, stderr="error: [bold]x[/bold] rejected [nodes]")
    s, buf = _session(r)
    steps = [Stage("a", "Apply [green]values[/green]", run=lambda s: "kept [nodes] and [/]"),
             Stage("b", "Fail [x]", actions=lambda s: [Run(["kubectl", "apply", "-f", "[a].yaml"])])]
    with pytest.raises(StageFailed):
        run_stages(steps, s)
    print_plan([Stage("p", "Plan [p]", actions=lambda s: [Note("mode: [nodes]")])], s)
    out = buf.getvalue()
    for text in ["✓ [1/2] Apply [green]values[/green] — kept [nodes] and [/]", "✗ [2/2] Fail [x] — failed after",
                 "command: kubectl apply -f '[a].yaml'", "| error: [bold]x[/bold] rejected [nodes]",
                 "1. Plan [p]", "mode: [nodes]"]:
        assert text in out, text


def test_plan_is_numbered_and_shows_commands():
    s, buf = _session()
    print_plan([Stage("x", "Do x", actions=lambda s: [Run(["k3d", "cluster", "list"], env={"A": "1"})],
                     check=lambda s: None),
                Stage("y", "Do y", actions=lambda s: [Note("just a note")])], s)
    out = buf.getvalue()
    assert "1. Do x" in out and "$ A=1 k3d cluster list" in out and "2. Do y" in out and "just a note" in out


# -- cluster-up ---------------------------------------------------------------


def up(world, **kw):
    kw.setdefault("api_port", free_port())
    o = commands.UpOptions(**kw)
    console, buf = recording_console()
    summary = commands.cluster_up(o, runner=world.runner, console=console, docker=world.docker,
                                  kube_factory=world.kube_factory, sleep=world.clock.sleep, clock=world.clock)
    return summary, buf.getvalue()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHI_HOME", str(tmp_path / ".dashi"))


def _calico_world():
    w = LocalWorld()
    w.runner.on("kubectl", "--context", "k3d-dashi", "apply", "--server-side", "--force-conflicts",
                "--field-manager=dashi-cluster", respond=lambda c: (seed_calico(w.kube), Result(c.argv, 0))[1])
    return w


def test_calico_cluster_up_exact_invocations(tmp_path):
    w = _calico_world()
    port = free_port()
    summary, out = up(w, api_port=port)
    cfg = tmp_path / ".dashi" / "k3d-dashi.yaml"
    base = f"https://raw.githubusercontent.com/projectcalico/calico/{versions.CALICO_VERSION}/manifests"
    ctx = ["kubectl", "--context", "k3d-dashi"]
    assert [list(a) for a in w.runner.argvs] == [
        ["k3d", "version"],
        ["kubectl", "version", "--client", "-o", "json"],
        ["k3d", "cluster", "list", "-o", "json"],
        ["k3d", "cluster", "create", "--config", str(cfg)],
        ctx + ["apply", "--server-side", "--force-conflicts", "-f", f"{base}/operator-crds.yaml"],
        ctx + ["apply", "--server-side", "--force-conflicts", "-f", f"{base}/tigera-operator.yaml"],
        ctx + ["wait", "--for=condition=established", "--timeout=60s", "crd/installations.operator.tigera.io",
               "crd/apiservers.operator.tigera.io", "crd/tigerastatuses.operator.tigera.io"],
        ctx + ["apply", "--server-side", "--force-conflicts", "--field-manager=dashi-cluster", "-f",
               str(commands.calico.CUSTOM_RESOURCES)],
    ]
    assert w.runner.calls[3].env is None  # K3D_FIX_MOUNTS only for Cilium
    assert cfg.read_text() == k3d.render_config(k3d.config("dashi", "calico", 0, versions.K3S_VERSION, port))
    assert summary["cni"] == "Calico v3.32.2"
    assert summary["canary"].startswith("NetworkPolicy enforced by calico")
    assert summary["changed"]
    assert "Summary" in out and "kubeconfig context" in out and "k3d-dashi" in out


def test_rerun_on_a_healthy_cluster_changes_nothing():
    w = _calico_world()
    up(w)
    before = len(w.runner.calls)
    summary, out = up(w)
    new = [c.argv for c in w.runner.calls[before:]]
    assert ("k3d", "cluster", "create") not in [a[:3] for a in new]
    assert not any(a[:1] == ("kubectl",) and "apply" in a for a in new)
    assert not summary["changed"]
    assert "Cluster 'dashi' was already healthy: nothing changed." in out


def test_a_rerun_reads_the_image_name_not_its_id_and_warns_of_nothing():
    # k3d's listing reports the node image as its sha256 ID; read from the
    # container's config, the name matches what was asked for.
    w = _calico_world()
    up(w)
    listing = json.loads(w.runner.run(["k3d", "cluster", "list", "-o", "json"]).stdout)
    assert all(n["image"].startswith("sha256:") for n in listing[0]["nodes"])
    _, out = up(w)
    assert "sha256" not in out and "asked for" not in out
    assert "Cluster 'dashi' was already healthy: nothing changed." in out


def test_enforcement_lost_after_a_k3d_restart_is_caught_on_the_next_cluster_up():
    # k3d-io/k3d #1513: after `k3d cluster stop/start`, k3s's kube-router was
    # seen to stop enforcing. cluster-up starts the stopped cluster, runs the
    # canary again and fails with exit 3 and what to do.
    from cluster.testing.fakecluster.clock import FakeClock
    from support.local_world import SSAKube

    clock = FakeClock()
    w = LocalWorld(kube=SSAKube(clock=clock, sleep=clock.sleep))
    w.clock = clock
    add_flannel_annotation(w.kube)
    up(w, cni="k3s")
    w.docker.containers = [dataclasses.replace(c, running=False) for c in w.docker.containers]
    w.kube.enforce = False  # what the restarted cluster does
    with pytest.raises(StageFailed) as ei:
        up(w, cni="k3s")
    assert ("k3d", "cluster", "start", "dashi") in w.runner.argvs
    assert isinstance(ei.value.cause, NotEnforced) and ei.value.exit_code == 3
    assert "NETWORK POLICIES ARE NOT ENFORCED on this cluster (CNI k3s)" in str(ei.value)


def test_existing_cluster_with_another_cni_is_not_recreated():
    w = LocalWorld()
    w.add_cluster("dashi", "cilium")
    with pytest.raises(StageFailed) as ei:
        up(w, cni="calico")
    msg = str(ei.value)
    assert "exists with CNI cilium, not calico" in msg and "will not be recreated silently" in msg
    assert "inv cluster-down --name dashi && inv cluster-up --name dashi --cni calico" in msg
    assert not any(a[:3] == ("k3d", "cluster", "delete") or a[:3] == ("k3d", "cluster", "create")
                   for a in w.runner.argvs)


def test_unlabelled_cluster_is_checked_live():
    w = LocalWorld()
    w.add_cluster("dashi", None, ours=False)
    add_flannel_annotation(w.kube)  # a plain k3d cluster: flannel
    with pytest.raises(StageFailed, match="runs k3s, not calico"):
        up(w, cni="calico")


def test_the_node_image_is_pulled_before_k3d_starts_its_timer():
    w = _calico_world()
    summary, out = up(w)
    assert w.docker.pulls == [versions.k3s_image()]
    assert w.pulled_by_k3d == []  # k3d found the image: its create timeout covered no pull
    assert f"✓ [3/8] Pull the node image {versions.k3s_image()} — pulled" in out


def test_a_present_node_image_is_not_pulled_again():
    w = _calico_world()
    w.docker.images.add(versions.k3s_image())
    _, out = up(w)
    assert w.docker.pulls == []
    assert f"= [3/8] Pull the node image {versions.k3s_image()} (no change) — {versions.k3s_image()} is already" in out


def test_a_rate_limited_pull_says_what_to_do_and_creates_nothing():
    w = _calico_world()
    # What dockerd passes on from Docker Hub's 429 (TOOMANYREQUESTS, distribution error codes).
    w.docker.pull_error = ("toomanyrequests: You have reached your unauthenticated pull rate limit. "
                           "https://www.docker.com/increase-rate-limit")
    with pytest.raises(StageFailed) as ei:
        up(w)
    msg = str(ei.value)
    assert "stage 'image' failed: docker could not pull rancher/k3s:v1.33.4-k3s1: toomanyrequests" in msg
    assert "docker login" in msg and "registry-mirrors" in msg
    assert "No cluster was created" in msg and "cluster-down" not in msg
    assert not any(a[:3] == ("k3d", "cluster", "create") for a in w.runner.argvs)


def test_no_docker_lists_the_problems_and_does_not_pretend_a_cluster_exists():
    w = LocalWorld(docker=fake_docker(error="Cannot connect to the Docker daemon at unix:///var/run/docker.sock"))
    with pytest.raises(StageFailed) as ei:
        up(w)
    msg = str(ei.value)
    assert "docker: daemon not reachable (Cannot connect" in msg
    assert "No cluster was created by this run: there is nothing to clean up." in msg
    assert "left as it is" not in msg and "cluster-down" not in msg


def test_an_old_kernel_is_a_warning_for_calico_and_cilium():
    w = _calico_world()
    w.docker.engine_version["KernelVersion"] = "5.4.0-216-generic"
    _, out = up(w)
    assert "! kernel: the Docker engine runs Linux 5.4.0-216-generic, older than v5.10.0, the minimum of " \
           "calico v3.32.2" in out


def test_stopped_cluster_is_started():
    w = _calico_world()
    w.add_cluster("dashi", "calico", running=False)
    up(w)
    assert ("k3d", "cluster", "start", "dashi") in w.runner.argvs
    assert not any(a[:3] == ("k3d", "cluster", "create") for a in w.runner.argvs)


def test_cilium_cluster_up_invocations():
    w = LocalWorld()
    summary, _ = up(w, cni="cilium", agents=1)
    argvs = w.runner.argvs
    create = next(c for c in w.runner.calls if c.argv[:3] == ("k3d", "cluster", "create"))
    assert create.env == {"K3D_FIX_MOUNTS": "1"}
    mounts = [a for a in argvs if a[:2] == ("docker", "exec")]
    assert [m[2] for m in mounts] == ["k3d-dashi-server-0", "k3d-dashi-agent-0"]
    assert ("helm", "version", "--short") in argvs
    assert tuple(commands.cilium.helm_argv("k3d-dashi")) in argvs
    i_mount = argvs.index(mounts[0])
    i_helm = argvs.index(tuple(commands.cilium.helm_argv("k3d-dashi")))
    assert argvs.index(create.argv) < i_mount < i_helm  # mounts before the chart
    assert summary["cni"] == "Cilium 1.20.2"


def test_cilium_nodes_ready_waits_for_the_agents(monkeypatch):
    w = LocalWorld(start_agents=False)
    monkeypatch.setattr(commands, "NODES_TIMEOUT_S", 6)
    with pytest.raises(StageFailed, match=r"timed out after 6s waiting until 2 node\(s\) are Ready \(last seen: 1/2"):
        up(w, cni="cilium", agents=1)


def test_k3s_cni_relies_on_the_builtin_controller():
    w = LocalWorld()
    add_flannel_annotation(w.kube)
    summary, _ = up(w, cni="k3s")
    assert not any(a[0] in ("helm",) or (a[0] == "kubectl" and "apply" in a) for a in w.runner.argvs)
    assert summary["canary"].startswith("NetworkPolicy enforced by k3s")


def test_not_enforcing_cluster_fails_loudly_with_exit_3():
    from cluster.testing.fakecluster.clock import FakeClock
    from support.local_world import SSAKube

    clock = FakeClock()
    w = LocalWorld(kube=SSAKube(clock=clock, sleep=clock.sleep, enforce=False))
    w.clock = clock
    add_flannel_annotation(w.kube, disable_policy=True)
    with pytest.raises(StageFailed) as ei:
        up(w, cni="k3s")
    assert isinstance(ei.value.cause, NotEnforced)
    assert ei.value.exit_code == 3
    assert "documentation only" in str(ei.value)


def test_failure_leaves_the_cluster_unless_cleanup_requested():
    w = LocalWorld()
    w.runner.on("kubectl", "--context", "k3d-dashi", "apply", returncode=1, stderr="error: no route to host")
    with pytest.raises(StageFailed) as ei:
        up(w)
    assert "The cluster is left as it is for inspection" in str(ei.value)
    assert "inv cluster-down --name dashi" in str(ei.value)
    assert not any(a[:3] == ("k3d", "cluster", "delete") for a in w.runner.argvs)

    w2 = LocalWorld()
    w2.runner.on("kubectl", "--context", "k3d-dashi", "apply", returncode=1, stderr="error: no route to host")
    with pytest.raises(StageFailed):
        up(w2, cleanup_on_failure=True)
    assert w2.runner.argvs[-1] == ("k3d", "cluster", "delete", "dashi")


def test_cleanup_never_deletes_a_cluster_this_run_did_not_create():
    w = LocalWorld()
    w.add_cluster("dashi", "calico")
    w.runner.on("kubectl", "--context", "k3d-dashi", "apply", returncode=1, stderr="boom")
    with pytest.raises(StageFailed):
        up(w, cleanup_on_failure=True)
    assert not any(a[:3] == ("k3d", "cluster", "delete") for a in w.runner.argvs)


def test_port_in_use_is_reported_before_creating():
    import socket

    w = LocalWorld()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(StageFailed, match=f"port 127.0.0.1:{s.getsockname()[1]} is in use"):
            up(w, api_port=s.getsockname()[1])


@pytest.mark.parametrize("kw,msg", [
    ({"cni": "flannel"}, "unknown CNI 'flannel'"), ({"name": "Bad_Name"}, "invalid cluster name"),
    ({"agents": 9}, "--agents must be between 0 and 5"), ({"k3s_version": "1.33"}, "invalid --k3s-version"),
    ({"profile": "prod"}, "unknown profile"), ({"api_port": 80}, "--api-port")])
def test_bad_input_is_one_line(kw, msg):
    with pytest.raises(DashiError, match=msg) as ei:
        commands.UpOptions(**kw).validate()
    assert "\n" not in str(ei.value)


# -- dry run ------------------------------------------------------------------


def test_dry_run_without_any_tools_prints_the_plan_and_touches_nothing(tmp_path):
    w = LocalWorld(tools=())
    console, buf = recording_console()
    o = commands.UpOptions(cni="cilium", agents=1, dry_run=True)
    res = commands.cluster_up(o, runner=w.runner, console=console,
                              docker=fake_docker(error="Cannot connect to the Docker daemon"),
                              kube_factory=lambda c: pytest.fail("dry run must not talk to a cluster"))
    out = buf.getvalue()
    assert res["dry_run"] and len(res["problems"]) == 5
    assert w.runner.calls == []
    assert not (tmp_path / ".dashi").exists()
    assert "docker: daemon not reachable (Cannot connect to the Docker daemon)" in out
    assert "k3d: not found — run `inv tools`" in out
    for needle in ["1. Preflight", "$ k3d cluster list -o json", "apiVersion: k3d.io/v1alpha5",
                   "--flannel-backend=none", "K3D_FIX_MOUNTS=1 k3d cluster create --config",
                   "$ docker exec k3d-dashi-agent-0 sh -c", " ".join(commands.cilium.helm_argv("k3d-dashi")),
                   "ipam:", "kind: Deployment", "name: canary-default-deny", "9. Prove NetworkPolicy enforcement",
                   "3. Pull the node image rancher/k3s:v1.33.4-k3s1", "inside its create timeout (180s)"]:
        assert needle in out, needle
    # The plan is printed as text: rich markup would swallow "[nodes]" (values.yaml).
    assert "policyCIDRMatchMode: [nodes]" in out
    assert "policyCIDRMatchMode: \n" not in out


def test_dry_run_via_invoke_exits_zero():
    import os

    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock", PATH="/usr/bin:/bin")
    p = cli_process.run("cluster-up", "--dry-run", "--cni", "calico", env=env)
    assert p.returncode == 0, p.stderr
    assert "Install Calico v3.32.2" in p.stdout and "operator-crds.yaml" in p.stdout


# -- cluster-down, status, prepare ---------------------------------------------


def test_cluster_down_deletes_ours_and_guards_others():
    console, buf = recording_console()
    w = LocalWorld()
    w.add_cluster("dashi", "calico")
    assert commands.cluster_down("dashi", runner=w.runner, docker=w.docker, console=console)
    assert w.runner.argvs[-1] == ("k3d", "cluster", "delete", "dashi")
    assert "deleting k3d cluster 'dashi'" in buf.getvalue()

    w2 = LocalWorld()
    w2.add_cluster("dashi", None, ours=False)
    with pytest.raises(GuardError, match="not created by dashi-cluster .*app.kubernetes.io/managed-by=dashi-cluster"):
        commands.cluster_down("dashi", runner=w2.runner, docker=w2.docker, console=console)
    assert not any(a[:3] == ("k3d", "cluster", "delete") for a in w2.runner.argvs)
    commands.cluster_down("dashi", runner=w2.runner, docker=w2.docker, console=console, force=True)
    assert w2.runner.argvs[-1] == ("k3d", "cluster", "delete", "dashi")

    assert not commands.cluster_down("dashi", runner=LocalWorld().runner, docker=LocalWorld().docker, console=console)
    assert "nothing to delete" in buf.getvalue()


def test_cluster_down_deletes_what_cluster_up_created():
    """The round trip k3d's label filtering broke: the labels cluster-up asks
    k3d for are found again on the node containers, not in k3d's listing."""
    w = _calico_world()
    up(w, cni="calico", agents=1)
    listing = w.runner.run(["k3d", "cluster", "list", "-o", "json"]).stdout
    assert "dashi-cluster" not in listing  # k3d never reports our labels ...
    console, _ = recording_console()
    assert commands.cluster_down("dashi", runner=w.runner, docker=w.docker, console=console)  # ... Docker does
    assert w.runner.argvs[-1] == ("k3d", "cluster", "delete", "dashi")


def test_status_reports_cni_standins_and_rollout_step(tmp_path, monkeypatch):
    w = _calico_world()
    up(w)
    monkeypatch.setenv("DASHI_STATE_DIR", str(tmp_path / "state"))
    console, buf = recording_console()
    st = commands.status("dashi", runner=w.runner, docker=w.docker, console=console, kube_factory=w.kube_factory)
    out = buf.getvalue()
    assert st["cni"] == "calico" and st["cni_healthy"]
    assert st["labelled_cni"] == "calico" and st["image"] == versions.k3s_image()
    assert st["standins"][0] == st["standins"][1] > 0
    assert "policy rollout (dashi)" in st["rollout"]
    assert "CNI: calico — healthy" in out
    assert f"image {versions.k3s_image()}, CNI label calico" in out


def test_status_of_a_missing_cluster_is_an_error():
    console, _ = recording_console()
    w = LocalWorld()
    with pytest.raises(DashiError, match=r"no k3d cluster named 'dashi' .*inv cluster-up --name dashi") as ei:
        commands.status("dashi", runner=w.runner, docker=w.docker, console=console,
                        kube_factory=lambda c: pytest.fail("no cluster"))
    assert "\n" not in str(ei.value)


def test_status_without_k3d_is_an_error():
    console, buf = recording_console()
    w = LocalWorld(tools=("kubectl",))
    with pytest.raises(ToolMissing, match=r"k3d: not found, so cluster 'dashi' cannot be looked up .*--context"):
        commands.status("dashi", runner=w.runner, docker=w.docker, console=console,
                        kube_factory=lambda c: pytest.fail("no cluster"))
    assert "not found (create it" not in buf.getvalue()


def test_status_task_without_k3d_exits_non_zero(tmp_path):
    import os
    import sys

    env = dict(os.environ, DASHI_HOME=str(tmp_path), PATH=os.path.dirname(sys.executable))
    p = cli_process.run("status", env=env)
    assert p.returncode == 1, p.stdout
    assert p.stderr.strip().startswith("error: k3d: not found") and len(p.stderr.strip().splitlines()) == 1
    assert "Traceback" not in p.stderr


def test_prepare_deploys_and_runs_the_canary_without_k3d():
    w = LocalWorld(tools=())
    seed_calico(w.kube)
    console, buf = recording_console()
    res = live_prepare.prepare("prod-ctx", profile="environments", console=console, kube_factory=w.kube_factory,
                           runner=w.runner, sleep=w.clock.sleep, clock=w.clock, yes=True)
    assert w.runner.calls == []
    assert res["cni"] == "calico" and res["canary"].startswith("NetworkPolicy enforced by calico")
    assert w.kube.get("v1", "Namespace", "production") is not None


def test_prepare_requires_a_named_context_and_respects_foreign_namespaces():
    console, _ = recording_console()
    with pytest.raises(DashiError, match="prepare needs --context"):
        live_prepare.prepare(None, profile="dashi", console=console, kube_factory=lambda c: None)
    w = LocalWorld()
    w.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "staging"}})
    with pytest.raises(StageFailed, match="staging already exist and are not managed"):
        live_prepare.prepare("prod", profile="environments", console=console, kube_factory=w.kube_factory,
                         runner=w.runner, sleep=w.clock.sleep, clock=w.clock, yes=True)
