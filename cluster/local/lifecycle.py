"""The local k3d cluster's lifecycle: cluster-up, cluster-down, status.

``up_stages`` is the whole of ``inv cluster-up`` read top to bottom:

    preflight → find an existing cluster → pull the node image → create it
    from the generated k3d config → (Cilium: node mounts) → install the CNI
    and wait for it → nodes Ready → stand-ins applied and Ready → enforcement
    canary → summary

Every external effect goes through the Runner (k3d, kubectl, helm, docker
exec), the Docker seam (labels, image pulls) or the Kube seam, so
``--dry-run`` can print the plan and tests can assert every invocation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cluster import versions
from cluster.errors import DashiError, GuardError, ToolMissing
from cluster.invoked import command
from cluster.live.observe import readiness
from cluster.live.observe.cni import detect_cni, k3s_policy_controller_disabled
from cluster.live.rollout import overview as live_status
from cluster.live.setup.pipeline import (
    Note,
    Run,
    Session,
    SetupContext,
    Stage,
    StageFailed,
    Wait,
    WriteFile,
    nothing_changed,
    print_plan,
    run_stages,
)
from cluster.live.setup.prepare import NODES_TIMEOUT_S, PROFILES, canary_stage, nodes_ready, standins_stage
from cluster.local import calico, cilium, k3d, preflight
from cluster.policy.profile import load_profile
from cluster.seams.docker_engine import DockerAPI, PullFailed
from cluster.seams.kube import Kube
from cluster.seams.runner import Runner, install_hint

CNIS = ("calico", "cilium", "k3s")
DEFAULT_NAME = "dashi"
DEFAULT_API_PORT = 6550  # the port k3d's own docs use in --api-port examples
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_K3S_RE = re.compile(r"^v\d+\.\d+\.\d+-k3s\d+$")


@dataclass
class UpContext(SetupContext):
    """What cluster-up's own stages hand on, beside what it shares with prepare."""

    tools: dict[str, str] = field(default_factory=dict)  # the tools preflight found, with their versions
    existing: k3d.ClusterInfo | None = None  # the cluster of that name k3d knew before this run
    created: bool = False  # this run created the cluster (what --cleanup-on-failure may delete)
    live_cni: str | None = None  # the policy engine detected on an existing cluster


@dataclass(frozen=True)
class UpOptions:
    name: str = DEFAULT_NAME
    cni: str = "calico"
    agents: int = 0
    k3s_version: str = versions.K3S_VERSION
    profile: str = "dashi"
    api_port: int = DEFAULT_API_PORT
    dry_run: bool = False
    cleanup_on_failure: bool = False
    traffic: bool = False  # the stand-ins carry traffic (cluster.live.setup.traffic)

    @property
    def context(self) -> str:
        return k3d.context_name(self.name)

    def validate(self) -> "UpOptions":
        # 32: the name reappears in container names (k3d-<name>-server-0,
        # k3d-<name>-serverlb) that must stay valid 63-character hostnames.
        if not _NAME_RE.match(self.name) or len(self.name) > 32:
            raise DashiError(f"invalid cluster name {self.name!r}: use lowercase letters, digits and '-', "
                             "at most 32 characters, starting and ending with a letter or digit")
        if self.cni not in CNIS:
            raise DashiError(f"unknown CNI {self.cni!r}: choose one of {', '.join(CNIS)}")
        # 0..5 agents: each node is a full k3s container (~500 MB); more does
        # not fit a laptop and adds nothing to policy testing.
        if not 0 <= int(self.agents) <= 5:
            raise DashiError(f"--agents must be between 0 and 5, got {self.agents}")
        if not _K3S_RE.match(self.k3s_version):
            raise DashiError(f"invalid --k3s-version {self.k3s_version!r}: use a rancher/k3s image tag like "
                             f"{versions.K3S_VERSION}")
        if not 1024 <= int(self.api_port) <= 65535:
            raise DashiError(f"--api-port must be between 1024 and 65535, got {self.api_port}")
        if self.profile not in PROFILES:
            raise DashiError(f"unknown profile {self.profile!r}: choose one of {', '.join(PROFILES)}")
        if self.cni == "k3s" and load_profile(self.profile).cluster_policy_steps:
            raise DashiError(f"profile {self.profile} needs ClusterNetworkPolicy, which k3s's policy controller "
                             "(kube-router) does not enforce: use --cni cilium (or calico)")
        k3d.registry_config()  # a bad $DASHI_K3D_REGISTRY_CONFIG fails before anything runs
        return self

    @property
    def image(self) -> str:
        return versions.k3s_image(self.k3s_version)


def _recreate_hint(o: UpOptions) -> str:
    return (f"to recreate it: {command(f'cluster-down --name {o.name}')} && "
            f"{command(f'cluster-up --name {o.name} --cni {o.cni} --agents {o.agents}')}")


# --------------------------------------------------------------------------
# cluster-up


def _warn(console: Console, text: str) -> None:
    console.print(Text.assemble(("! ", "yellow"), text))


def _pull_hint(e: PullFailed) -> str:
    if e.rate_limited:
        return ("Docker Hub limits anonymous pulls per address: `docker login`, or give the Docker engine a "
                "registry mirror (\"registry-mirrors\" in /etc/docker/daemon.json), then re-run")
    return f"check the network and the registry, or `docker pull {e.ref}` yourself, then re-run"


def up_stages(o: UpOptions, docker: DockerAPI | None, connect=None) -> list[Stage]:
    nodes = k3d.node_containers(o.name, o.agents)
    cfg_path = k3d.config_path(o.name)
    needs = preflight.needs_for(o.cni)

    def do_preflight(s: Session) -> str:
        rep = preflight.check(s.runner, docker, needs, cni=o.cni)
        rep.raise_if_problems()
        for w in rep.warnings:
            _warn(s.console, w)
        s.ctx.tools = rep.found
        return ", ".join(f"{k} {v}" for k, v in rep.found.items())

    def inspect(s: Session) -> str:
        info = k3d.find(s.runner, docker, o.name)
        s.ctx.existing = info
        if info is None:
            if not preflight.port_free(o.api_port):
                raise DashiError(f"port 127.0.0.1:{o.api_port} is in use — free it or pass --api-port with "
                                 "a free port")
            return f"no cluster '{o.name}' yet; API port {o.api_port} is free"
        diffs = k3d.differences(info, o.cni, o.agents, o.k3s_version)
        if info.cni and info.cni != o.cni:
            raise DashiError(f"cluster '{o.name}' exists with CNI {info.cni}, not {o.cni} "
                             f"({'; '.join(diffs)}); it will not be recreated silently — {_recreate_hint(o)}")
        for d in diffs:
            _warn(s.console, f"existing cluster '{o.name}' differs from the request: {d} ({_recreate_hint(o)})")
        owner = "created by dashi-cluster" if info.ours else "not created by dashi-cluster"
        return f"cluster '{o.name}' exists ({'running' if info.running else 'stopped'}, {owner})"

    def image_check(s: Session) -> str | None:
        if s.ctx.existing is not None:
            return "the cluster exists: its node containers have their image"
        if docker is not None and docker.image_present(o.image):
            return f"{o.image} is already in Docker's image store"
        return None

    def pull(s: Session) -> str:
        if docker is None:
            raise DashiError("no Docker engine client — install Docker")
        t0 = s.clock()
        try:
            docker.pull(o.image, lambda line: s.progress(f"pulling {o.image}: {line}"))
        except PullFailed as e:
            raise DashiError(f"{e} — {_pull_hint(e)}") from e
        return f"pulled {o.image} in {int(s.clock() - t0)}s"

    def create_actions(s: Session):
        content = k3d.render_config(k3d.config(o.name, o.cni, o.agents, o.k3s_version, o.api_port,
                                               k3d.registry_config()))
        return [WriteFile(cfg_path, content),
                Run(k3d.create_argv(cfg_path), env=k3d.create_env(o.cni),
                    why="k3d writes the kubeconfig context " + o.context)]

    def cluster_exists(s: Session) -> str | None:
        info = s.ctx.existing
        return "already exists and runs" if info is not None and info.running else None

    def create(s: Session) -> str:
        info = s.ctx.existing
        if info is not None:  # exists but stopped
            s.runner.run(k3d.start_argv(o.name))
            return f"started the stopped cluster '{o.name}'"
        for a in create_actions(s):
            a.execute(s)
        s.ctx.created = True
        return f"created from {cfg_path}"

    def delete_if_created(s: Session) -> None:
        if s.ctx.created:
            s.runner.run(k3d.delete_argv(o.name))

    def cni_mismatch(s: Session) -> None:
        live = detect_cni(s.kube)
        s.ctx.live_cni = live
        if live not in (o.cni, "none"):
            raise DashiError(f"cluster '{o.name}' runs {live}, not {o.cni}; it will not be recreated silently — "
                             f"{_recreate_hint(o)}")
        if o.cni == "k3s" and live != "k3s":
            raise DashiError(f"cluster '{o.name}' was created without flannel, so --cni k3s cannot work on it — "
                             f"{_recreate_hint(o)}")

    stages = [
        Stage("preflight", "Preflight: " + ", ".join("docker CLI" if n == "docker-cli" else n for n in needs),
             actions=lambda s: [Note("docker engine reachable and >= "
                                     f"{versions.fmt_version(versions.DOCKER_MIN_VERSION)} (docker SDK); "
                                     "tool versions: `k3d version`, `kubectl version --client -o json`"
                                     + (", `helm version --short`" if "helm" in needs else "")
                                     + " (./.dashi/bin first on PATH)")],
             run=do_preflight, verify=True),
        Stage("inspect", f"Look for an existing k3d cluster '{o.name}'",
             actions=lambda s: [Run(k3d.LIST_ARGV), Note(f"if absent: 127.0.0.1:{o.api_port} must be free")],
             run=inspect, verify=True),
        Stage("image", f"Pull the node image {o.image}",
             actions=lambda s: [Note(f"pull {o.image} through the Docker engine, with progress, unless it is "
                                     "already there: k3d would pull it inside its create timeout "
                                     f"({k3d.K3D_WAIT_TIMEOUT}) and roll the cluster back if the pull outlasted it")],
             check=image_check, run=pull),
        Stage("cluster", f"Create k3d cluster '{o.name}' ({versions.k3s_image(o.k3s_version)}, "
                        f"1 server + {o.agents} agent(s))",
             actions=create_actions, check=cluster_exists, run=create, undo=delete_if_created),
    ]
    if o.cni == "cilium":
        stages.append(Stage("mounts", "Prepare bpffs and cgroup2 mounts in the node containers",
                          actions=lambda s: cilium.mount_actions(nodes), run=_mounts_run(nodes)))
    if o.cni == "calico":
        def calico_check(s: Session) -> str | None:
            cni_mismatch(s)
            return calico.installed(s.kube)
        stages.append(Stage("cni", f"Install Calico {versions.CALICO_VERSION} (tigera operator)",
                          actions=lambda s: calico.install_actions(o.context), check=calico_check))
    elif o.cni == "cilium":
        def cilium_check(s: Session) -> str | None:
            cni_mismatch(s)
            return cilium.installed(s.runner, s.kube, o.context)
        stages.append(Stage("cni", f"Install Cilium {versions.CILIUM_VERSION} (Helm chart)",
                          actions=lambda s: cilium.install_actions(o.context), check=cilium_check))
    else:
        def k3s_cni(s: Session) -> str:
            cni_mismatch(s)
            if k3s_policy_controller_disabled(s.kube):
                _warn(s.console, "k3s runs with --disable-network-policy: expect the canary to fail")
                return "flannel; k3s network policy controller DISABLED"
            return "flannel + k3s' embedded network policy controller (kube-router)"
        stages.append(Stage("cni", "Use k3s' flannel and built-in network policy controller",
                          actions=lambda s: [Note("nothing to install: k3s enforces NetworkPolicy with its "
                                                  "embedded kube-router controller (k3s-io/k3s #913)")],
                          run=k3s_cni, verify=True))
    stages += [
        Stage("nodes", f"Wait until all {1 + o.agents} node(s) are Ready",
             actions=lambda s: [Wait(f"{1 + o.agents} node(s) are Ready", nodes_ready(1 + o.agents),
                                     NODES_TIMEOUT_S)], verify=True),
        standins_stage(o.profile, traffic=o.traffic),
        canary_stage(lambda s: o.cni, connect=connect, profile_name=o.profile),
    ]
    return stages


def _mounts_run(nodes: list[str]):
    def run(s: Session):
        return cilium.run_mounts(s, nodes)
    return run


def cluster_up(o: UpOptions, *, runner: Runner, console: Console, docker: DockerAPI | None,
               kube_factory: Callable[[str], Kube], sleep=None, clock=None, connect=None) -> dict:
    o.validate()
    s = Session(runner=runner, console=console, kube_factory=kube_factory, context=o.context,
                dry_run=o.dry_run, cleanup_on_failure=o.cleanup_on_failure, ctx=UpContext())
    if sleep:
        s.sleep = sleep
    if clock:
        s.clock = clock
    stages = up_stages(o, docker, connect=connect)
    header = (f"cluster '{o.name}': CNI {o.cni}, 1 server + {o.agents} agent(s), "
              f"{versions.k3s_image(o.k3s_version)}, profile {o.profile}, context {o.context}")
    if o.dry_run:
        rep = preflight.check(runner, docker, preflight.needs_for(o.cni), cni=o.cni)
        console.print(Text.assemble(("Dry run", "bold"), f" — plan for {header}. Nothing is changed."))
        if rep.problems:
            console.print("This machine is missing what a real run needs:")
            for p in rep.problems:
                console.print(f"  - {p}", markup=False)
        else:
            console.print("Preflight: all tools present (" + ", ".join(f"{k} {v}" for k, v in rep.found.items())
                          + ")", markup=False)
        for w in rep.warnings:
            _warn(console, w)
        print_plan(stages, s)
        return {"dry_run": True, "problems": rep.problems, "warnings": rep.warnings}
    console.print(Text.assemble(("cluster-up", "bold"), f" — {header}"))
    try:
        # The hint is chosen after the failure: only then is it known whether
        # anything exists to inspect (run_stages prints none when cleaning up).
        outcomes = run_stages(stages, s)
    except StageFailed as e:
        if o.cleanup_on_failure:
            raise
        raise StageFailed(e.stage, e.cause, _after_failure_hint(o, s)) from e.cause
    summary = _up_summary(o, s, outcomes)
    _print_summary(console, summary)
    if nothing_changed(outcomes):
        console.print(f"Cluster '{o.name}' was already healthy: nothing changed.", style="green", markup=False)
    return summary


def _after_failure_hint(o: UpOptions, s: Session) -> str:
    if s.ctx.created:
        return (f"The cluster is left as it is for inspection (kubectl --context {o.context} get pods -A). "
                f"Remove it with `{command(f'cluster-down --name {o.name}')}`, or re-run with --cleanup-on-failure.")
    if s.ctx.existing is not None:
        return (f"The existing cluster '{o.name}' is left as it was found, apart from what the stages above "
                f"changed (kubectl --context {o.context} get pods -A).")
    return "No cluster was created by this run: there is nothing to clean up."


def _up_summary(o: UpOptions, s: Session, outcomes) -> dict:
    nodes = [(n["metadata"]["name"], readiness.node_ready(n)[0]) for n in s.kube.list("v1", "Node")]
    cni_ver = {"calico": f"Calico {versions.CALICO_VERSION}", "cilium": f"Cilium {versions.CILIUM_VERSION}",
               "k3s": "flannel + kube-router (k3s built-in)"}[o.cni]
    return {
        "cluster": o.name, "context": o.context, "cni": cni_ver,
        "k3s": versions.k3s_image(o.k3s_version), "tools": s.ctx.tools,
        "nodes": nodes, "standins": s.ctx.standins,
        "canary": s.ctx.canary_line, "changed": not nothing_changed(outcomes),
    }


def _print_summary(console: Console, sm: dict) -> None:
    t = Table(title="Summary", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    rows = [("cluster", sm["cluster"]), ("CNI", sm["cni"]), ("k3s image", sm["k3s"])]
    if sm.get("tools"):
        rows.append(("tools", ", ".join(f"{k} {v}" for k, v in sm["tools"].items())))
    rows += [("nodes", ", ".join(f"{n} ({'Ready' if ok else 'NotReady'})" for n, ok in sm["nodes"]) or "none"),
             ("stand-ins", sm["standins"]), ("canary", sm["canary"]), ("kubeconfig context", sm["context"])]
    for key, value in rows:
        t.add_row(key, Text(str(value)))  # values are data, not markup
    console.print(t)


# --------------------------------------------------------------------------
# cluster-down


def cluster_down(name: str, *, runner: Runner, docker: DockerAPI | None, console: Console,
                 force: bool = False) -> bool:
    UpOptions(name=name).validate()
    info = k3d.find(runner, docker, name)
    if info is None:
        console.print(f"no k3d cluster named '{name}': nothing to delete")
        return False
    if not info.ours and not force:
        raise GuardError(f"k3d cluster '{name}' was not created by dashi-cluster (its node containers lack the "
                         f"Docker label {k3d.MANAGED_BY_LABEL}={k3d.MANAGED_BY_VALUE}); nothing was deleted. "
                         "Pass --force to delete it anyway.")
    console.print(f"deleting k3d cluster '{name}' ({info.servers} server(s), {info.agents} agent(s), "
                  f"context {k3d.context_name(name)}): its nodes, volumes and kubeconfig entry go with it",
                  markup=False)
    runner.run(k3d.delete_argv(name))
    console.print(Text.assemble(("deleted", "green"), f" cluster '{name}'"))
    return True


# --------------------------------------------------------------------------
# status


def status(name: str, *, runner: Runner, docker: DockerAPI | None, console: Console,
           kube_factory: Callable[[str], Kube], profile: str = "dashi", context: str | None = None) -> dict:
    """Cluster (k3d's view, unless a context is named), then what the live cluster reports.

    A cluster that cannot be looked up (no k3d) or does not exist is an
    error, so scripts can rely on the exit code."""
    out: dict = {"cluster": name}
    ctx = context or k3d.context_name(name)
    if context is None:
        if runner.which("k3d") is None:
            raise ToolMissing(f"k3d: not found, so cluster '{name}' cannot be looked up — "
                              f"{install_hint('k3d')}; or pass --context for a cluster by its kubeconfig context")
        info = k3d.find(runner, docker, name)
        if info is None:
            raise DashiError(f"no k3d cluster named '{name}' (`k3d cluster list` shows none) — "
                             f"create it with `{command(f'cluster-up --name {name}')}`")
        out.update(exists=True, running=info.running, labelled_cni=info.cni, image=info.image)
        console.print(f"cluster '{name}': {'running' if info.running else 'stopped'}, "
                      f"{info.servers} server(s) + {info.agents} agent(s), image {info.image or 'unknown'}, "
                      f"CNI label {info.cni or 'none'}", markup=False)
        if not info.running:
            console.print(f"  start it with `k3d cluster start {name}` or `{command(f'cluster-up --name {name}')}`",
                          markup=False)
            return out
    return live_status.report(kube_factory(ctx), ctx, profile, console, out)
