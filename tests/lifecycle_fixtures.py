"""Fixtures shared by the cluster-lifecycle tests: a FakeRunner that acts
like k3d/kubectl/helm against a FakeKube, a stub Docker engine, a console
that records what it printed."""

from __future__ import annotations

import copy
import io
import json
import socket

from rich.console import Console

from cluster import versions
from cluster.errors import DashiError
from cluster.local.runner import FakeRunner, Result
from cluster.testing.fakekube import FakeClock, FakeKube

K3D_VERSION_OUT = "k3d version v5.9.0\nk3s version v1.33.4-k3s1 (default)\n"
KUBECTL_VERSION_OUT = json.dumps({"clientVersion": {"gitVersion": "v1.33.4", "major": "1", "minor": "33"}})
HELM_VERSION_OUT = "v3.19.2+g8766e71\n"


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


class StubDocker:
    def __init__(self, version="24.0.7", error: str | None = None):
        self._v, self._err = version, error

    def version(self) -> dict:
        if self._err:
            raise DashiError(self._err)
        return {"Version": self._v, "ApiVersion": "1.43"}


def recording_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, no_color=True, highlight=False, soft_wrap=True), buf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def k3d_cluster_json(name: str, cni: str | None, agents: int = 0, running: bool = True, ours: bool = True,
                     image: str | None = None) -> str:
    labels = {"k3d.cluster": name, "k3d.role": "server"}
    if ours:
        labels["app.kubernetes.io/managed-by"] = "dashi-cluster"
    if cni:
        labels["dashi.io/cni"] = cni
    nodes = [{"name": f"k3d-{name}-server-0", "role": "server", "image": image or versions.k3s_image(),
              "runtimeLabels": labels, "State": {"Running": running, "Status": "running" if running else "exited"}}]
    nodes += [{"name": f"k3d-{name}-agent-{i}", "role": "agent", "image": image or versions.k3s_image(),
               "runtimeLabels": labels, "State": {"Running": running}} for i in range(agents)]
    nodes.append({"name": f"k3d-{name}-serverlb", "role": "loadbalancer", "image": "ghcr.io/k3d-io/k3d-proxy"})
    return json.dumps([{"name": name, "nodes": nodes, "serversCount": 1, "serversRunning": 1 if running else 0,
                        "agentsCount": agents, "agentsRunning": agents if running else 0}])


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
    kube.apply(_daemonset("cilium", "kube-system"))
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "cilium-operator", "namespace": "kube-system"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"name": "cilium-operator"}},
                         "template": {"metadata": {"labels": {"name": "cilium-operator"}},
                                      "spec": {"containers": [{"name": "o", "image": "quay.io/cilium/operator"}]}}}})


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


class World:
    """A FakeRunner whose k3d/kubectl/helm act on a FakeKube, like a laptop would."""

    def __init__(self, *, existing: str | None = None, kube: FakeKube | None = None,
                 tools=("k3d", "kubectl", "helm", "docker"), start_agents: bool = True):
        self.start_agents = start_agents
        self.clock = FakeClock()
        self.kube = kube or SSAKube(clock=self.clock, sleep=self.clock.sleep)
        self.runner = FakeRunner(tools=set(tools))
        self.existing = existing  # JSON of `k3d cluster list -o json`, or None
        self.helm_releases: list[dict] = []
        r = self.runner
        r.on("k3d", "version", stdout=K3D_VERSION_OUT)
        r.on("kubectl", "version", stdout=KUBECTL_VERSION_OUT)
        r.on("helm", "version", stdout=HELM_VERSION_OUT)
        r.on("k3d", "cluster", "list", respond=lambda c: Result(c.argv, 0, self.existing or "[]"))
        r.on("k3d", "cluster", "create", respond=self._created)
        r.on("helm", "list", respond=lambda c: Result(c.argv, 0, json.dumps(self.helm_releases)))
        r.on("helm", "upgrade", respond=self._helm_installed)

    def _created(self, call):
        # k3d starts one k3s node per agent: they join the in-memory cluster.
        import yaml

        cfg = yaml.safe_load(open(call.argv[call.argv.index("--config") + 1]))
        for i in range(cfg.get("agents", 0) if self.start_agents else 0):
            self.kube.apply({"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": f"k3d-{cfg['metadata']['name']}-agent-{i}"},
                             "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        return Result(call.argv, 0, "INFO[0010] Cluster 'dashi' created successfully!\n")

    def _helm_installed(self, call):
        seed_cilium(self.kube)
        self.helm_releases = [{"name": "cilium", "namespace": "kube-system", "status": "deployed",
                               "chart": f"cilium-{versions.CILIUM_VERSION}", "app_version": versions.CILIUM_VERSION}]
        return Result(call.argv, 0, "Release \"cilium\" has been upgraded.\n")

    def kube_factory(self, context):
        return self.kube
