"""The engine's model: the endpoints traffic flows between, the edges of a
matrix, and policies compiled from manifests (selectors, peers, port rules,
rules), and ``parse_selector``, which reads a selector of a manifest for
both compilers (``compile`` for NetworkPolicies, ``cilium`` for the
CiliumNetworkPolicy subset). ``evaluate`` and ``matrix`` decide traffic
with these values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from cluster.errors import ManifestError
from cluster.policy import apivalidation

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
class Selector:
    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, frozenset[str]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In":
                if not present or labels[key] not in values:
                    return False
            elif op == "NotIn":
                if present and labels[key] in values:
                    return False
            elif op == "Exists":
                if not present:
                    return False
            elif present:  # DoesNotExist
                return False
        return True

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for key, op, values in self.expressions:
            if op in ("In", "NotIn"):
                parts.append(f"{key} {op.lower()} ({','.join(sorted(values))})")
            else:
                parts.append(key if op == "Exists" else f"!{key}")
        return "{" + ", ".join(parts) + "}" if parts else "{} (all)"


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
    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    def matches(self, dst: Endpoint, port: int, protocol: str) -> bool:
        if protocol != self.protocol:
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
# Reading a selector (both compilers, and the workloads' spec.selector)


def parse_selector(data, path: str, obj: str, what: str) -> Selector:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ManifestError(f"{what} must be a mapping", path=path, obj=obj)
    labels = data.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise ManifestError(f"{what}.matchLabels must be a mapping", path=path, obj=obj)
    if not isinstance(data.get("matchExpressions") or [], list):
        raise ManifestError(f"{what}.matchExpressions must be a list", path=path, obj=obj)
    apivalidation.selector(data, what, path, obj)
    exprs = []
    for i, expr in enumerate(data.get("matchExpressions") or []):
        if not isinstance(expr, Mapping) or "key" not in expr or "operator" not in expr:
            raise ManifestError(f"{what}.matchExpressions[{i}] needs key and operator", path=path, obj=obj)
        op = expr["operator"]
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise ManifestError(f"{what}.matchExpressions[{i}].values must be a list", path=path, obj=obj)
        if op in ("In", "NotIn"):
            if not values:
                raise ManifestError(f"{what}.matchExpressions[{i}]: operator {op} needs values",
                                    path=path, obj=obj)
        elif op in ("Exists", "DoesNotExist"):
            if values:
                raise ManifestError(f"{what}.matchExpressions[{i}]: operator {op} takes no values",
                                    path=path, obj=obj)
        else:
            raise ManifestError(
                f"{what}.matchExpressions[{i}]: invalid operator {op!r} "
                "(In, NotIn, Exists, DoesNotExist)", path=path, obj=obj)
        exprs.append((str(expr["key"]), op, frozenset(str(v) for v in values)))
    return Selector(tuple(sorted((str(k), str(v)) for k, v in labels.items())), tuple(exprs))
