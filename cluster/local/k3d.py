"""k3d adapter: the generated config file, and create/start/delete/list.

The cluster is created from a generated ``k3d.io/v1alpha5`` Simple config
(schema: k3d-io/k3d pkg/config/v1alpha5/schema.json) rather than a long
command line, so the exact cluster definition is a file the user can read
in ``.dashi/k3d-<name>.yaml``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cluster import versions
from cluster.errors import DashiError
from cluster.invoked import command
from cluster.paths import dashi_home
from cluster.seams.docker_engine import DockerAPI, NodeContainer
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.seams.runner import Runner, tool_version

# Docker labels on our node containers: who made the cluster and with which
# CNI, read back from the containers through Docker even while the cluster
# is stopped. Not from `k3d cluster list -o json`: it reports only the labels
# whose key starts with "k3d" (see cluster.seams.docker_engine).
CNI_LABEL = "dashi.io/cni"


def reserved_label_key(key: str) -> bool:
    """k3d refuses runtime labels it keeps for itself: "app", "k3s.*" and
    "k3d.*" (k3d-io/k3d v5.9.0 cmd/util/runtimeLabels.go ValidateRuntimeLabelKey)."""
    return key == "app" or key.startswith(("k3s.", "k3d."))


# options.k3d.timeout bounds each phase of `k3d cluster create`: ClusterPrep,
# ClusterCreate and ClusterStart (with its wait for k3s' log lines) each
# derive a context with this timeout (k3d-io/k3d v5.9.0 pkg/client/
# cluster.go), and ClusterCreate pulls a missing node image under that same
# context (pkg/runtimes/docker/container.go createContainer pulls on
# NotFound). On expiry the whole cluster is rolled back (cmd/cluster/
# clusterCreate.go). cluster-up therefore pulls the node image itself first,
# with progress (lifecycle step "image"), so this timer covers only creating
# the containers and starting k3s: well under a minute on a laptop; 180s
# leaves room for a cold start on a loaded machine.
K3D_WAIT_TIMEOUT = "180s"

# A k3s registries.yaml (mirrors, credentials) for the images the cluster
# pulls, handed to k3d as `registries.config` by path, so the generated
# config and the dry-run plan never contain its credentials.
REGISTRY_CONFIG_ENV = "DASHI_K3D_REGISTRY_CONFIG"

_VERSION_RE = re.compile(r"k3d version v(\d+)\.(\d+)\.(\d+)")


def context_name(name: str) -> str:
    """k3d names the kubeconfig context "k3d-<cluster>"."""
    return f"k3d-{name}"


def node_containers(name: str, agents: int) -> list[str]:
    return [f"k3d-{name}-server-0"] + [f"k3d-{name}-agent-{i}" for i in range(agents)]


def config_path(name: str) -> Path:
    return dashi_home() / f"k3d-{name}.yaml"


def registry_config(value: str | None = None) -> Path | None:
    """The registries file named by $DASHI_K3D_REGISTRY_CONFIG (or ``value``),
    checked to be a readable YAML mapping; None when unset."""
    raw = value if value is not None else os.environ.get(REGISTRY_CONFIG_ENV, "")
    if not raw.strip():
        return None
    path = Path(raw).expanduser().resolve()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DashiError(f"{REGISTRY_CONFIG_ENV}: cannot read {path}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise DashiError(f"{REGISTRY_CONFIG_ENV}: {path} is not valid YAML: "
                         f"{str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise DashiError(f"{REGISTRY_CONFIG_ENV}: {path} must be a k3s registries.yaml mapping "
                         "(mirrors:, configs:), not a " + type(data).__name__)
    return path


def config(name: str, cni: str, agents: int = 0, k3s_version: str = versions.K3S_VERSION,
           api_port: int = 6550, registries: Path | None = None) -> dict:
    """The k3d Simple config for one server and ``agents`` agents.

    Node filters are mandatory for --k3s-arg as soon as a cluster has more
    than one node, and the load balancer counts as one (k3d docs, "Concepts:
    Nodefilters"), so every k3s argument names the servers explicitly.
    """
    def servers_only():  # fresh lists: shared ones would dump as YAML anchors
        return ["server:*"]

    def all_nodes():
        return ["server:*"] + (["agent:*"] if agents else [])

    extra_args = [
        # Traefik is not part of the platform; it would only take ports and memory.
        {"arg": "--disable=traefik", "nodeFilters": servers_only()},
        {"arg": f"--cluster-cidr={versions.POD_CIDR}", "nodeFilters": servers_only()},
    ]
    if cni in ("calico", "cilium"):
        # k3d's Calico guide and Cilium's k3s guide: no flannel, and no k3s
        # policy controller competing with the CNI's own enforcement.
        extra_args += [
            {"arg": "--flannel-backend=none", "nodeFilters": servers_only()},
            {"arg": "--disable-network-policy", "nodeFilters": servers_only()},
        ]
    cfg = {
        "apiVersion": "k3d.io/v1alpha5",
        "kind": "Simple",
        "metadata": {"name": name},
        "servers": 1,
        "agents": agents,
        "image": versions.k3s_image(k3s_version),
        # Loopback only: a laptop's API server should not listen on the LAN.
        "kubeAPI": {"hostIP": "127.0.0.1", "hostPort": str(api_port)},
        "options": {
            "k3d": {"wait": True, "timeout": K3D_WAIT_TIMEOUT},
            "k3s": {"extraArgs": extra_args},
            "kubeconfig": {"updateDefaultKubeconfig": True, "switchCurrentContext": True},
            "runtime": {"labels": [
                {"label": f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}", "nodeFilters": all_nodes()},
                {"label": f"{CNI_LABEL}={cni}", "nodeFilters": all_nodes()},
            ]},
        },
    }
    if registries is not None:
        # A single line is read by k3d as a path to the file (pkg/config/
        # transform.go: multi-line text is taken as the file's content).
        cfg["registries"] = {"config": str(registries)}
    return cfg


def render_config(cfg: dict) -> str:
    return ("# Generated by dashi-cluster (dashi cluster-up); k3d config format:\n"
            "# https://k3d.io/stable/usage/configfile/\n"
            + yaml.safe_dump(cfg, sort_keys=False))


def create_argv(path: Path) -> list[str]:
    return ["k3d", "cluster", "create", "--config", str(path)]


def create_env(cni: str) -> dict[str, str] | None:
    # K3D_FIX_MOUNTS makes "/" rshared inside the nodes
    # (pkg/types/fixes/assets/k3d-entrypoint-mounts.sh), which Cilium's
    # bpffs and cgroup2 mounts need to propagate (k3d-io/k3d #363).
    return {"K3D_FIX_MOUNTS": "1"} if cni == "cilium" else None


def start_argv(name: str) -> list[str]:
    return ["k3d", "cluster", "start", name]


def delete_argv(name: str) -> list[str]:
    return ["k3d", "cluster", "delete", name]


LIST_ARGV = ["k3d", "cluster", "list", "-o", "json"]


@dataclass
class ClusterInfo:
    """A cluster as k3d lists it (names, counts, running) plus its node
    containers as Docker reports them (labels, image reference)."""

    name: str
    servers: int
    agents: int
    servers_running: int
    nodes: list[NodeContainer] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.servers_running > 0

    @property
    def k3s_nodes(self) -> list[NodeContainer]:
        return [n for n in self.nodes if n.role in ("server", "agent")]

    @property
    def _first_server(self) -> NodeContainer | None:
        return next((n for n in self.nodes if n.role == "server"), None)

    @property
    def image(self) -> str:
        first = self._first_server
        return first.image if first else ""

    @property
    def labels(self) -> dict[str, str]:
        first = self._first_server
        return dict(first.labels) if first else {}

    @property
    def ours(self) -> bool:
        """Every k3s node container carries our managed-by label."""
        nodes = self.k3s_nodes
        return bool(nodes) and all(n.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE for n in nodes)

    @property
    def cni(self) -> str | None:
        return self.labels.get(CNI_LABEL)


def _info(c: dict) -> ClusterInfo:
    """One entry of `k3d cluster list -o json`: the Cluster struct plus the
    counts k3d adds (k3d-io/k3d v5.9.0 cmd/cluster/clusterList.go
    PrintClusters: serversRunning, serversCount, agentsRunning, agentsCount)."""
    nodes = c.get("nodes") or []
    servers = [n for n in nodes if n.get("role") == "server"]
    agents = [n for n in nodes if n.get("role") == "agent"]

    def running(n):
        return bool((n.get("State") or {}).get("Running"))  # NodeState has no JSON tags

    return ClusterInfo(
        name=c.get("name", ""),
        servers=int(c.get("serversCount", len(servers))),
        agents=int(c.get("agentsCount", len(agents))),
        servers_running=int(c.get("serversRunning", sum(1 for n in servers if running(n)))),
    )


def list_clusters(runner: Runner) -> list[ClusterInfo]:
    """k3d's view only: ``nodes`` stays empty (see ``find``)."""
    out = runner.run(LIST_ARGV).stdout
    try:
        data = json.loads(out or "[]")
    except json.JSONDecodeError as e:
        raise DashiError(f"`k3d cluster list -o json` printed something that is not JSON: {out[:200]!r}") from e
    return [_info(c) for c in data or []]


def find(runner: Runner, docker: DockerAPI | None, name: str) -> ClusterInfo | None:
    """The cluster ``name`` if k3d lists it, with its node containers from Docker."""
    info = next((c for c in list_clusters(runner) if c.name == name), None)
    if info is None:
        return None
    if docker is None:
        raise DashiError(f"k3d lists cluster '{name}', but there is no Docker engine client to read its node "
                         "containers — install Docker")
    try:
        info.nodes = docker.node_containers(name)
    except DashiError as e:
        raise DashiError(f"k3d lists cluster '{name}', but Docker cannot be asked about its node containers ({e}) — "
                         "start Docker or point DOCKER_HOST at it") from e
    return info


VERSION_ARGV = ["k3d", "version"]


def parse_version(out: str) -> tuple[int, int, int] | None:
    """`k3d version` prints "k3d version vX.Y.Z" then the default k3s version
    (k3d-io/k3d v5.9.0 cmd/root.go printVersion)."""
    m = _VERSION_RE.search(out or "")
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


def version(runner: Runner) -> tuple[int, int, int]:
    return tool_version(runner, VERSION_ARGV, parse_version, hint=f"run `{command('tools')}`")


def differences(info: ClusterInfo, cni: str, agents: int, k3s_version: str) -> list[str]:
    """What an existing cluster has that the request does not (empty: same)."""
    out = []
    if info.cni and info.cni != cni:
        out.append(f"CNI is {info.cni}, asked for {cni}")
    if info.agents != agents:
        out.append(f"{info.agents} agent(s), asked for {agents}")
    want = versions.k3s_image(k3s_version)
    if info.image and info.image != want and not info.image.endswith("/" + want):
        out.append(f"image {info.image}, asked for {want}")
    return out
