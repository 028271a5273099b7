"""``FakeKube``: an in-memory cluster behind the ``Kube`` seam, for tests and benchmarks.

It behaves like a small k3d cluster as far as this project looks, made of
the pieces in this package (see its docstring). Seeded like k3s:
namespaces default/kube-system/kube-public/kube-node-lease, one Ready Node,
CoreDNS (``k8s-app=kube-dns``, UDP+TCP 53) and the ``default/kubernetes``
Service with its Endpoints and EndpointSlice pointing at a TEST-NET address
(``API_ADDRESS``, data only, never contacted); with ``cni="cilium"``, a
CiliumNode too.

The constructor's knobs are described where they act: ``enforce``,
``reject``, ``lag_probes``, ``lag_seconds`` and ``api_port`` in network.py;
``shell``, ``exec_latency``, ``time_scale`` and ``sleep`` in podexec.py;
``cni``, ``kcnp_crd`` and ``kcnp_enforced`` in cilium.py; ``namespace_grace_s`` and
``service_account_delay_s`` in controllers.py; ``proxy`` is the kubeconfig's proxy-url the
seam reports (store.py). ``clock`` is shared by all of them (a ``FakeClock``, from
clock.py, makes their delays run in no time); ``seed=False`` starts empty.
"""

from __future__ import annotations

import time
from typing import Callable

from cluster.testing.fakecluster.admission import Admission
from cluster.testing.fakecluster.cilium import CILIUM_API, KCNP_CRD, KCNP_VERSIONS
from cluster.testing.fakecluster.controllers import Controllers
from cluster.testing.fakecluster.faults import Faults
from cluster.testing.fakecluster.network import API_ADDRESS, API_PORT
from cluster.testing.fakecluster.podexec import PodExec
from cluster.testing.fakecluster.store import fields


class FakeKube(PodExec, Controllers, Admission, Faults):
    """A cluster in memory. See the package's modules for what it simulates."""

    def __init__(self, context: str = "k3d-dashi", server: str = "https://0.0.0.0:6550", *,
                 enforce: bool = True, reject: bool = False, lag_probes: int = 0, lag_seconds: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, exec_latency: float = 0.0,
                 time_scale: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                 seed: bool = True, shell: bool = True, api_port: int = API_PORT, namespace_grace_s: float = 0.0,
                 cni: str | None = None, service_account_delay_s: float | None = 0.0, proxy: str | None = None,
                 kcnp_crd: bool = False, kcnp_enforced: bool = True):
        self._init_store(context, server, clock)
        self._proxy = proxy  # the kubeconfig's proxy-url
        self._init_faults()
        self._init_cilium(cni, kcnp_enforced)
        self._init_controllers(namespace_grace_s, service_account_delay_s)
        self._init_network(enforce=enforce, reject=reject, lag_probes=lag_probes, lag_seconds=lag_seconds,
                           api_port=api_port)
        self._init_podexec(shell=shell, exec_latency=exec_latency, time_scale=time_scale, sleep=sleep)
        if seed:
            self._seed()
        if kcnp_crd:
            self.install_kcnp_crd()

    def install_kcnp_crd(self) -> None:
        """The ClusterNetworkPolicy CRD, as cluster-up installs it (name and versions only)."""
        self._apply({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                     "metadata": {"name": KCNP_CRD},
                     "spec": {"group": "policy.networking.k8s.io", "scope": "Cluster",
                              "names": {"kind": "ClusterNetworkPolicy", "plural": "clusternetworkpolicies"},
                              "versions": [{"name": v, "served": True, "storage": v == "v1beta1"}
                                           for v in KCNP_VERSIONS]},
                     "status": {"conditions": [{"type": "Established", "status": "True"}]}}, None)

    def _seed(self) -> None:
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
        node = f"{self._context}-server-0" if self._context.startswith("k3d-") else "node-0"
        self._apply({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node,
                                                           "node-role.kubernetes.io/control-plane": "true"}},
                     "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}, None)
        self._apply({"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "coredns", "namespace": "kube-system",
                                  "labels": {"k8s-app": "kube-dns"}},
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                              "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                                           "spec": {"containers": [{
                                               "name": "coredns", "image": "rancher/mirrored-coredns-coredns",
                                               "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                                         {"name": "dns-tcp", "containerPort": 53,
                                                          "protocol": "TCP"},
                                                         {"name": "metrics", "containerPort": 9153,
                                                          "protocol": "TCP"}]}]}}}}, "kube-system")
        self._apply({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                  "labels": {"k8s-app": "kube-dns"}},
                     "spec": {"clusterIP": "10.43.0.10", "selector": {"k8s-app": "kube-dns"},
                              "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}, "kube-system")
        self._apply({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": {"clusterIP": "10.43.0.1",
                              "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                         "targetPort": self.api_port}]}}, "default")
        # The API server's own endpoint reconciler writes these two, as
        # kube-apiserver v1.33 does on the test cluster: field manager
        # kube-apiserver, no managed-by label on the slice, and skip-mirror
        # on the Endpoints (k8s.io/kubernetes pkg/controlplane/reconcilers/
        # endpointsadapter.go).
        self._seed_by("kube-apiserver", {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": API_ADDRESS}],
                         "ports": [{"name": "https", "port": self.api_port, "protocol": "TCP"}]}]})
        self._seed_by("kube-apiserver", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [API_ADDRESS], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": self.api_port, "protocol": "TCP"}]})
        if self.cni == "cilium":
            self._apply({"apiVersion": CILIUM_API, "kind": "CiliumNode", "metadata": {"name": node},
                         "spec": {"addresses": [{"type": "InternalIP", "ip": "172.18.0.2"}]}}, None)
        self.calls.clear()

    def _seed_by(self, manager: str, obj: dict) -> None:
        """Seed an object as the control plane writes it (an Update by ``manager``)."""
        me = (manager, "Update")
        self._apply(obj, obj["metadata"]["namespace"], managers={me: set(fields(obj))}, changed=me)
