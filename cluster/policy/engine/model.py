"""The engine's model: the endpoints traffic flows between, the edges of a
matrix, and policies compiled from manifests (peers, port rules, rules; a
selector is ``cluster.selectors.Selector``), with ``parse_selector``, which
reads a selector of a manifest for both compilers (``compile`` for
NetworkPolicies, ``cilium`` for the CiliumNetworkPolicy subset).
``evaluate`` and ``matrix`` decide traffic with these values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from cluster import selectors
from cluster.errors import Invalid, ManifestError
from cluster.selectors import Selector

PROTOCOLS = ("TCP", "UDP", "SCTP")
NS_NAME_LABEL = "kubernetes.io/metadata.name"
KUBE_API_SERVICE = "default/kubernetes"
KUBE_APISERVER_ENTITY = "kube-apiserver"


# --------------------------------------------------------------------------
# Peers the engine reasons about (a small, client-free view of an endpoint)


@dataclass(frozen=True)
class Port:
    name: str | None
    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        label = f"{self.port}/{self.protocol}"
        return f"{self.name} ({label})" if self.name else label


@dataclass(frozen=True)
class Endpoint:
    """Something traffic can come from or go to.

    kind: "workload" (pods of a Deployment/StatefulSet/... or a Pod),
    "debug" (an unlabelled debug pod), "cluster" (pods the cluster provides,
    e.g. DNS), "external" (an address outside the pod network), "host" (the
    node itself).
    """

    key: str
    namespace: str | None
    name: str
    kind: str = "workload"
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[Port, ...] = ()
    replicas: int = 1
    ip: str | None = None
    # How the live layer finds it on a cluster: the label selector of its
    # pods, or (external endpoints) the Service whose EndpointSlice holds its
    # address, as "namespace/name".
    pod_selector: str | None = None
    address_service: str | None = None

    @property
    def is_pod(self) -> bool:
        return self.kind in ("workload", "debug", "cluster")

    @property
    def probe_source(self) -> bool:
        return self.kind in ("workload", "debug")

    @property
    def is_kube_apiserver(self) -> bool:
        """Cilium's entity kube-apiserver: the backends of Service
        default/kubernetes (pkg/ipcache/cell/apiserver_watcher.go)."""
        return self.kind == "external" and self.address_service == KUBE_API_SERVICE

    def __hash__(self) -> int:  # labels is a dict; the key identifies an endpoint
        return hash(self.key)


@dataclass(frozen=True)
class Edge:
    """Traffic from one endpoint to a port of another, by endpoint key."""

    src: str
    dst: str
    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} {self.port}/{self.protocol}"


HOST = Endpoint(key="host/node", namespace=None, name="node", kind="host")


# --------------------------------------------------------------------------
# Compiled policies


@dataclass(frozen=True)
class Peer:
    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    excepts: tuple = ()
    entity: str | None = None  # a Cilium entity (only kube-apiserver is modelled)

    @property
    def by_address(self) -> bool:
        """Matched endpoint by endpoint (an address or an entity), not by selectors."""
        return self.cidr is not None or self.entity is not None

    def __str__(self) -> str:
        if self.entity is not None:
            return f"entity {self.entity}"
        if self.cidr is not None:
            ex = f" except {', '.join(map(str, self.excepts))}" if self.excepts else ""
            return f"ipBlock {self.cidr}{ex}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces {self.namespace_selector}")
        if self.pod_selector is not None:
            parts.append(f"pods {self.pod_selector}")
        return " and ".join(parts)


@dataclass(frozen=True)
class PortRule:
    # None: a named port of any protocol (a ClusterNetworkPolicy's
    # destinationNamedPort); a NetworkPolicy's port always has one.
    protocol: str | None = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def matches(self, dst: Endpoint, port: int, protocol: str) -> bool:
        if self.protocol is not None and protocol != self.protocol:
            return False
        if self.port is None:
            return True
        if isinstance(self.port, int):
            if self.end_port is not None:
                return self.port <= port <= self.end_port
            return port == self.port
        # Named: resolved on the destination pod, name AND protocol.
        return any(p.name == self.port and p.protocol == protocol and p.port == port
                   for p in dst.ports)

    def __str__(self) -> str:
        if self.protocol is None:
            return f"named port {self.port}"
        if self.port is None:
            return f"any/{self.protocol}"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Rule:
    index: int
    peers: tuple[Peer, ...] | None  # None: every peer
    ports: tuple[PortRule, ...] | None  # None: every port

    def __str__(self) -> str:
        peers = "any peer" if self.peers is None else " or ".join(map(str, self.peers))
        ports = "any port" if self.ports is None else ", ".join(map(str, self.ports))
        return f"{peers} on {ports}"


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...] | None  # None: not an Ingress policy
    egress: tuple[Rule, ...] | None  # None: not an Egress policy
    source: str = ""  # file the policy came from, for messages
    kind: str = "NetworkPolicy"

    @property
    def ref(self) -> str:
        ref = f"{self.namespace}/{self.name}"
        return ref if self.kind == "NetworkPolicy" else f"{self.kind} {ref}"


# --------------------------------------------------------------------------
# ClusterNetworkPolicy (policy.networking.k8s.io v1beta1 / v1alpha2)

ADMIN = "Admin"
BASELINE_TIER = "Baseline"
TIERS = (ADMIN, BASELINE_TIER)
ACCEPT, DENY, PASS = "Accept", "Deny", "Pass"
# Kubernetes ClusterNetworkPolicy (KCNP, as Cilium calls it; "CNP" is its CiliumNetworkPolicy).
KCNP_KIND = "ClusterNetworkPolicy"


@dataclass(frozen=True)
class ClusterPeer:
    """One peer of a ClusterNetworkPolicy rule: ``namespaces`` (every pod of
    the namespaces the selector picks), ``pods`` (namespace AND pod
    selector), ``networks`` (CIDRs), or a peer the engine accepts but does
    not model (``nodes``, ``domainNames``: ``unmodelled`` names it; it
    matches none of the endpoints)."""

    namespace_selector: Selector | None = None
    pod_selector: Selector | None = None
    networks: tuple = ()
    unmodelled: str | None = None

    @property
    def by_address(self) -> bool:
        return bool(self.networks)

    def __str__(self) -> str:
        if self.unmodelled:
            return f"{self.unmodelled} (not modelled)"
        if self.networks:
            return f"networks {', '.join(map(str, self.networks))}"
        if self.pod_selector is not None:
            return f"pods {self.pod_selector} in namespaces {self.namespace_selector}"
        return f"namespaces {self.namespace_selector}"


@dataclass(frozen=True)
class ClusterRule:
    index: int  # 1-based, as `explain` names it
    name: str
    action: str  # Accept, Deny or Pass
    peers: tuple[ClusterPeer, ...]
    ports: tuple[PortRule, ...] | None  # None: every port and protocol

    def __str__(self) -> str:
        ports = "any port" if self.ports is None else ", ".join(map(str, self.ports))
        return f"{self.action} {' or '.join(map(str, self.peers))} on {ports}"


@dataclass(frozen=True)
class ClusterPolicy:
    """A ClusterNetworkPolicy: its tier and priority, its subject (pods in
    the namespaces ``subject_namespaces`` picks, AND ``subject_pods`` when
    the subject is ``pods``), its rules per direction in order."""

    name: str
    tier: str
    priority: int
    subject_namespaces: Selector
    subject_pods: Selector | None
    ingress: tuple[ClusterRule, ...]
    egress: tuple[ClusterRule, ...]
    source: str = ""
    # Peers read but not modelled ("egress rule 2 'to-nodes': nodes"), for warnings.
    unmodelled: tuple[str, ...] = ()
    kind: str = KCNP_KIND

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def describe(self) -> str:
        return f"{self.ref} ({self.tier}, priority {self.priority})"

    def rules(self, direction: str) -> tuple[ClusterRule, ...]:
        return self.ingress if direction == "ingress" else self.egress


# --------------------------------------------------------------------------
# Reading a selector (both compilers, and a workload's spec.selector)


def parse_selector(data, path: str, obj: str, what: str) -> Selector:
    """A selector of a manifest (``cluster.selectors.parse``), its error a
    ManifestError naming the file and the object."""
    try:
        return selectors.parse(data, what)
    except Invalid as e:
        raise ManifestError(str(e), path=path, obj=obj) from None
