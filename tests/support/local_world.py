"""Fixtures shared by the cluster-lifecycle tests: a FakeRunner that acts
like k3d/kubectl/helm against a FakeKube, a FakeDocker holding the node
containers k3d would have made, a console that records what it printed.

Every tool output here is what the pinned version prints, derived from its
source (cited beside each); nothing is invented. In particular the JSON of
`k3d cluster list -o json` is computed from the node containers the same way
k3d v5.9.0 computes it, so it carries only "k3d*" labels and image IDs, and
the labels a test gives a fake container are the labels k3d puts on real ones.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import socket
from pathlib import Path

from rich.console import Console

from cluster import versions, yamlio
from cluster.policy.schema import CNP_CRD
from cluster.seams.docker_engine import FakeDocker, NodeContainer
from cluster.seams.runner import FakeRunner, Result
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube

# k3d-io/k3d v5.9.0 cmd/root.go printVersion: "k3d version %s" and
# "k3s version %s (default)"; the release's default k3s is v1.33.4-k3s1
# (k3d-io/k3d issue #1604).
K3D_VERSION_OUT = "k3d version v5.9.0\nk3s version v1.33.4-k3s1 (default)\n"
# kubectl version --client -o json: {"clientVersion": version.Info,
# "kustomizeVersion": ...} (k8s.io/kubectl pkg/cmd/version/version.go; Info
# in k8s.io/apimachinery pkg/version/types.go). Only the fields read here.
KUBECTL_VERSION_OUT = json.dumps({"clientVersion": {"major": "1", "minor": "33", "gitVersion": "v1.33.4"}})
# helm v3 cmd/helm/version.go formatVersion(short): "%s+g%s" of the version
# and the first 7 characters of the commit (v3.19.2 is 8766e718a011...).
HELM_VERSION_OUT = "v3.19.2+g8766e71\n"

# GET /version of Debian's docker.io 20.10.24 engine (recorded from the
# engine the Docker tests start; Docker Engine API, "Get the version").
DOCKER_VERSION = {
    "Platform": {"Name": ""},
    "Version": "20.10.24+dfsg1", "ApiVersion": "1.41", "MinAPIVersion": "1.12", "GitCommit": "5d6db84",
    "GoVersion": "go1.19.8", "Os": "linux", "Arch": "amd64", "KernelVersion": "6.1.0-37-amd64",
    "BuildTime": "2026-05-07T21:09:36.000000000+00:00",
}


def fake_docker(version: str = "20.10.24+dfsg1", kernel: str = "6.1.0-37-amd64", error: str | None = None,
                **kw) -> FakeDocker:
    answer = dict(DOCKER_VERSION, Version=version, KernelVersion=kernel)
    return FakeDocker(engine_version=answer, error=error, **kw)


class SSAKube(FakeKube):
    """FakeKube with server-side apply's no-op: re-applying the same
    configuration with the same field manager leaves the object (and its
    resourceVersion) alone. FakeKube re-applies bare Pods as new generations
    because it fills in spec fields (nodeName) itself."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._applied: dict = {}

    def apply(self, obj):
        md = obj.get("metadata") or {}
        key = (obj.get("apiVersion"), obj.get("kind"), md.get("namespace"), md.get("name"))
        live = self.get(obj["apiVersion"], obj["kind"], md.get("name"), md.get("namespace"))
        if live is not None and self._applied.get(key) == obj:
            return live
        out = super().apply(obj)
        self._applied[key] = copy.deepcopy(obj)
        return out


def recording_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, no_color=True, highlight=False, soft_wrap=True), buf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- k3d's node containers and `k3d cluster list -o json` ----------------------

# The Docker labels k3d v5.9.0 puts on a node container of a cluster created
# from our config (one server, load balancer on, a network k3d creates, no
# host aliases, no subnet): DefaultRuntimeLabels and DefaultRuntimeLabelsVar
# (pkg/types/defaults.go, set by Node.FillRuntimeLabels in pkg/types/node.go),
# the cluster's GlobalLabels (pkg/client/cluster.go ClusterPrepNetwork,
# ClusterPrepImageVolume, ClusterCreate), the role (NodeCreate) and, on
# servers, the API labels (pkg/client/node.go patchServerSpec).
TOKEN = "dSVkaABIyLYXKcqVsYbM"  # k3d generates 20 random letters (GenerateClusterToken)
NETWORK_ID = "3c2c4a9ef2f1d1b5e7c3b0e4f8a9d6c7b2a1e0f9d8c7b6a5e4d3c2b1a0f9e8d7"


def k3d_labels(cluster: str, role: str, *, api_port: int = 6550) -> dict[str, str]:
    labels = {
        "app": "k3d",
        "k3d.version": "v5.9.0",
        "k3d.cluster": cluster,
        "k3d.cluster.imageVolume": f"k3d-{cluster}-images",
        "k3d.cluster.network": f"k3d-{cluster}",
        "k3d.cluster.network.external": "false",
        "k3d.cluster.network.id": NETWORK_ID,
        "k3d.cluster.network.iprange": "172.18.0.0/16",
        "k3d.cluster.token": TOKEN,
        "k3d.cluster.url": f"https://k3d-{cluster}-server-0:6443",
        "k3d.server.loadbalancer": f"k3d-{cluster}-serverlb",
        "k3d.role": role,
    }
    if role == "server":
        labels.update({"k3d.server.api.host": "127.0.0.1", "k3d.server.api.hostIP": "127.0.0.1",
                       "k3d.server.api.port": str(api_port)})
    return labels


def our_labels(cni: str | None, ours: bool = True) -> dict[str, str]:
    """What the generated config's options.runtime.labels add (cluster.local.k3d.config)."""
    out = {}
    if ours:
        out["app.kubernetes.io/managed-by"] = "dashi-cluster"
    if cni:
        out["dashi.io/cni"] = cni
    return out


LB_IMAGE = "ghcr.io/k3d-io/k3d-proxy:5.9.0"  # pkg/types/images.go GetLoadbalancerImage: repo + k3d's version


def k3d_nodes(name: str, cni: str | None, agents: int = 0, running: bool = True, ours: bool = True,
              image: str | None = None, api_port: int = 6550, lb_image: str = LB_IMAGE) -> list[NodeContainer]:
    """The containers of one cluster as Docker reports them (Config.Image is
    the reference from the k3d config; the load balancer gets no user labels:
    our node filters name servers and agents only)."""
    image = image or versions.k3s_image()
    nodes = [NodeContainer(f"k3d-{name}-server-0", "server", image,
                           {**k3d_labels(name, "server", api_port=api_port), **our_labels(cni, ours)}, running)]
    nodes += [NodeContainer(f"k3d-{name}-agent-{i}", "agent", image,
                            {**k3d_labels(name, "agent"), **our_labels(cni, ours)}, running) for i in range(agents)]
    nodes.append(NodeContainer(f"k3d-{name}-serverlb", "loadbalancer", lb_image,
                               k3d_labels(name, "loadbalancer"), running))
    return nodes


def image_id(ref: str) -> str:
    """A stand-in image ID for a reference: what Docker reports as a container's .Image."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def _node_json(n: NodeContainer, index: int) -> dict:
    """k3d's Node for one container (pkg/runtimes/docker/translate.go
    TranslateContainerDetailsToNode), as encoding/json prints it (pkg/types/
    types.go: fields without a json tag keep their Go name)."""
    labels = n.labels
    api = {"Port": "", "Binding": {"HostIp": labels.get("k3d.server.api.hostIP", ""),
                                   "HostPort": labels.get("k3d.server.api.port", "")}}
    if labels.get("k3d.server.api.host"):
        api["host"] = labels["k3d.server.api.host"]
    out = {
        "name": n.name,
        "role": n.role,
        "image": image_id(n.image),  # containerDetails.Image: the image ID, not the name
        "volumes": [f"{labels['k3d.cluster.imageVolume']}:/k3d/images"] if n.role != "loadbalancer" else None,
        # k3d's env for k3s nodes (GlobalEnv, DefaultNodeEnv); the image's own ENV
        # and the proxy image's ENV on the load balancer are left out.
        "env": ([f"K3S_TOKEN={TOKEN}", "K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml"]
                if n.role != "loadbalancer" else None),
        "Cmd": [n.role] if n.role != "loadbalancer" else [],
        "restart": True,
        "created": "2025-09-01T10:00:00.000000000Z",
        # "labels: only copy k3d.* labels" (strings.HasPrefix(k, "k3d")).
        "runtimeLabels": {k: v for k, v in labels.items() if k.startswith("k3d")},
        "Networks": [labels["k3d.cluster.network"]],
        "ExtraHosts": None,
        "serverOpts": {"kubeAPI": api},
        "agentOpts": {},
        "GPURequest": "",
        "Memory": "",
        "State": {"Running": n.running, "Status": "running" if n.running else "exited", "Started": ""},
        "IP": {"IP": f"172.18.0.{index + 2}" if n.running else "", "Static": False},
        "K3dEntrypoint": False,
    }
    return {k: v for k, v in out.items() if v is not None or k in ("ExtraHosts",)}


def k3d_list_json(clusters: list[tuple[str, list[NodeContainer]]]) -> str:
    """`k3d cluster list -o json` for these clusters (cmd/cluster/clusterList.go
    PrintClusters: the Cluster struct with the token cleared, plus counts;
    Network, ImageVolume from populateClusterFieldsFromLabels)."""
    out = []
    for name, nodes in sorted(clusters):
        k3s = [n for n in nodes if n.role in ("server", "agent")]
        servers = [n for n in k3s if n.role == "server"]
        agents = [n for n in k3s if n.role == "agent"]
        out.append({
            "name": name,
            "network": {"name": f"k3d-{name}", "id": "", "ipam": {"ipPrefix": "", "Managed": False}, "Members": None},
            # Docker lists the newest container first; k3d keeps that order.
            "nodes": [_node_json(n, i) for i, n in reversed(list(enumerate(nodes)))],
            "InitNode": None,
            "imageVolume": f"k3d-{name}-images",
            "serversRunning": sum(n.running for n in servers), "serversCount": len(servers),
            "agentsRunning": sum(n.running for n in agents), "agentsCount": len(agents),
            "hasLoadbalancer": any(n.role == "loadbalancer" for n in nodes),
        })
    return json.dumps(out)


def k3d_cluster_json(name: str, cni: str | None, agents: int = 0, running: bool = True, ours: bool = True,
                     image: str | None = None) -> str:
    return k3d_list_json([(name, k3d_nodes(name, cni, agents, running, ours, image))])


def seed_calico(kube: FakeKube, version: str = versions.CALICO_VERSION) -> None:
    """What the tigera operator would leave behind once Calico is up."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "calico-system"}})
    kube.apply({"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
                "spec": {}, "status": {"calicoVersion": version}})
    kube.apply({"apiVersion": "operator.tigera.io/v1", "kind": "TigeraStatus", "metadata": {"name": "calico"},
                "status": {"conditions": [{"type": "Available", "status": "True"},
                                          {"type": "Degraded", "status": "False"}]}})
    kube.apply(_daemonset("calico-node", "calico-system"))


def seed_cilium(kube: FakeKube) -> None:
    """What the Cilium chart with cni/cilium/values.yaml leaves: the agents,
    the operator and (Hubble on) the relay."""
    kube.apply(_daemonset("cilium", "kube-system"))
    for name, image in (("cilium-operator", "quay.io/cilium/operator"), ("hubble-relay", "quay.io/cilium/hubble-relay")):
        kube.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "kube-system"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"name": name}},
                             "template": {"metadata": {"labels": {"name": name}},
                                          "spec": {"containers": [{"name": "o", "image": image}]}}}})


def _daemonset(name: str, ns: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"k8s-app": name}},
                     "template": {"metadata": {"labels": {"k8s-app": name}},
                                  "spec": {"containers": [{"name": name, "image": f"example/{name}"}]}}}}


def add_flannel_annotation(kube: FakeKube, disable_policy: bool = False) -> None:
    for node in kube.list("v1", "Node"):
        ann = node["metadata"].setdefault("annotations", {})
        ann["flannel.alpha.coreos.com/backend-type"] = "vxlan"
        if disable_policy:
            ann["k3s.io/node-args"] = '["server","--disable-network-policy"]'
        node["metadata"].pop("resourceVersion", None)
        node.setdefault("apiVersion", "v1")
        node.setdefault("kind", "Node")
        kube.apply(node)


def k3d_info(seconds: int, message: str) -> str:
    """One INFO line as k3d v5.9.0 writes it: on stdout (cmd/root.go hooks
    info, debug and trace to os.Stdout), through logrus's TextFormatter with
    ForceColors (logrus text_formatter.go printColored: the level's first
    four letters in ANSI blue, seconds since start, the message padded to
    44 columns and a space)."""
    return f"\x1b[36mINFO\x1b[0m[{seconds:04d}] {message:<44} \n"


class LocalWorld:
    """A FakeRunner whose k3d/kubectl/helm act on a FakeKube, and a FakeDocker
    holding k3d's node containers, like a laptop would."""

    def __init__(self, *, kube: FakeKube | None = None, tools=("k3d", "kubectl", "helm", "docker"),
                 start_agents: bool = True, docker: FakeDocker | None = None):
        self.start_agents = start_agents
        self.clock = FakeClock()
        self.kube = kube or SSAKube(clock=self.clock, sleep=self.clock.sleep)
        self.runner = FakeRunner(tools=set(tools))
        self.docker = docker or fake_docker()
        self.helm_releases: list[dict] = []
        self.pulled_by_k3d: list[str] = []  # images k3d had to pull itself, inside its create timeout
        r = self.runner
        r.on("k3d", "version", stdout=K3D_VERSION_OUT)
        r.on("kubectl", "version", stdout=KUBECTL_VERSION_OUT)
        r.on("helm", "version", stdout=HELM_VERSION_OUT)
        r.on("k3d", "cluster", "list", respond=self._list)
        r.on("k3d", "cluster", "create", respond=self._created)
        r.on("k3d", "cluster", "delete", respond=self._deleted)
        r.on("helm", "list", respond=lambda c: Result(c.argv, 0, json.dumps(self.helm_releases)))
        r.on("helm", "upgrade", respond=self._helm_installed)
        # cluster-up --cni cilium applies the shipped ClusterNetworkPolicy CRD (cluster.local.cilium).
        r.on("kubectl", "--context", "k3d-dashi", "apply", "--server-side", "--force-conflicts", "-f", str(CNP_CRD),
             respond=self._crd_applied)

    def _crd_applied(self, call):
        self.kube.install_kcnp_crd()
        return Result(call.argv, 0)

    def add_cluster(self, name: str, cni: str | None, agents: int = 0, running: bool = True, ours: bool = True,
                    image: str | None = None) -> None:
        """A cluster that already exists: its node containers in Docker (k3d lists it from them)."""
        self.docker.containers += k3d_nodes(name, cni, agents, running, ours, image)

    def _clusters(self) -> list[tuple[str, list[NodeContainer]]]:
        names = sorted({c.labels["k3d.cluster"] for c in self.docker.containers if "k3d.cluster" in c.labels})
        return [(n, self.docker.node_containers(n)) for n in names]

    def _list(self, call):
        return Result(call.argv, 0, k3d_list_json(self._clusters()) + "\n")

    def _created(self, call):
        from cluster.local.k3d import reserved_label_key

        cfg = yamlio.load(Path(call.argv[call.argv.index("--config") + 1]).read_text())
        name, agents = cfg["metadata"]["name"], cfg.get("agents", 0)
        labels = {}
        for item in cfg["options"]["runtime"]["labels"]:
            key, _, value = item["label"].partition("=")
            if reserved_label_key(key):  # k3d: l.Log().Fatalf(...) in ValidateRuntimeLabelKey
                return Result(call.argv, 1, "", f'FATA[0000] runtime label "{key}" is reserved for internal usage\n')
            labels[key] = value
        if cfg["image"] not in self.docker.images:
            self.pulled_by_k3d.append(cfg["image"])
            self.docker.images.add(cfg["image"])
        port = int(cfg["kubeAPI"]["hostPort"])
        self.docker.containers += [
            NodeContainer(n.name, n.role, n.image, {**n.labels, **labels} if n.role != "loadbalancer" else n.labels,
                          True)
            for n in k3d_nodes(name, None, agents, ours=False, image=cfg["image"], api_port=port)]
        # k3d starts one k3s node per agent: they join the in-memory cluster.
        for i in range(agents if self.start_agents else 0):
            self.kube.apply({"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": f"k3d-{name}-agent-{i}"},
                             "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        # k3d v5.9.0 cmd/cluster/clusterCreate.go: l.Log().Infof("Cluster '%s' created successfully!", ...)
        return Result(call.argv, 0, k3d_info(10, f"Cluster '{name}' created successfully!"))

    def _deleted(self, call):
        name = call.argv[3]
        self.docker.containers = [c for c in self.docker.containers if c.labels.get("k3d.cluster") != name]
        # k3d v5.9.0 cmd/cluster/clusterDelete.go: l.Log().Infof("Successfully deleted cluster %s!", c.Name)
        return Result(call.argv, 0, k3d_info(1, f"Successfully deleted cluster {name}!"))

    def _helm_installed(self, call):
        """``helm upgrade --install``, worded as helm v3.19.2 prints it:
        cmd/helm/upgrade.go ('Release %q does not exist. Installing it now.'
        on a first install, 'Release %q has been upgraded. Happy Helming!'
        after), then the statusPrinter table (cmd/helm/status.go WriteTable:
        NAME, LAST DEPLOYED in time.ANSIC, NAMESPACE, STATUS, REVISION, TEST
        SUITE). The chart's NOTES that follow are left out: nothing reads them.
        ``helm list -o json`` entries are cmd/helm/list.go's releaseElement
        (revision a string; updated is Go's time.Time String())."""
        seed_cilium(self.kube)
        revision = int(self.helm_releases[0]["revision"]) + 1 if self.helm_releases else 1
        self.helm_releases = [{"name": "cilium", "namespace": "kube-system", "revision": str(revision),
                               "updated": "2026-12-01 10:00:00.123456789 +0000 UTC", "status": "deployed",
                               "chart": f"cilium-{versions.CILIUM_VERSION}", "app_version": versions.CILIUM_VERSION}]
        head = ('Release "cilium" does not exist. Installing it now.\n' if revision == 1
                else 'Release "cilium" has been upgraded. Happy Helming!\n')
        return Result(call.argv, 0, head + "NAME: cilium\nLAST DEPLOYED: Tue Dec  1 10:00:00 2026\n"
                                           f"NAMESPACE: kube-system\nSTATUS: deployed\nREVISION: {revision}\n"
                                           "TEST SUITE: None\n")

    def kube_factory(self, context):
        return self.kube
