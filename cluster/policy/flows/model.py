"""A flow as a CNI reports it: two ends, a port and protocol, a verdict.

Labels are the pod's own (``app=x``); Hubble's identity labels are read
back to them (``k8s:app=x``; its namespace and service-account labels are
not pod labels). Verdicts are named one way whatever the source:
``forwarded``, ``dropped``, ``audit`` (Cilium's policy audit mode: would be
dropped), ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Where an end of a flow is: a pod; the node (host, or another node); the
# Kubernetes API server; the node that runs the API server (Cilium gives it
# both identities: as a source it is the node, as a destination the API
# server); the world outside the cluster; or unknown (the source gave
# neither a pod nor a reserved identity).
PEER_KINDS = ("pod", "host", "apiserver", "host-apiserver", "world", "unknown")
VERDICTS = ("forwarded", "dropped", "audit", "other")


@dataclass(frozen=True)
class Peer:
    kind: str
    namespace: str | None = None
    name: str | None = None  # the pod's name (Calico: its aggregated name, "coredns-576cbf47c7-*")
    labels: tuple[tuple[str, str], ...] = ()  # sorted
    ip: str | None = None

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        if self.kind == "pod":
            return f"{self.namespace}/{self.name or '?'}"
        return self.kind + (f" {self.ip}" if self.ip else "")

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "namespace": self.namespace, "name": self.name,
             "labels": dict(self.labels), "ip": self.ip}
        return {k: v for k, v in d.items() if v not in (None, {})}

    @classmethod
    def from_dict(cls, d: dict) -> "Peer":
        return cls(kind=d.get("kind", "unknown"), namespace=d.get("namespace"), name=d.get("name"),
                   labels=labels_of(d.get("labels") or {}), ip=d.get("ip"))


def labels_of(mapping: dict) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


@dataclass(frozen=True)
class Flow:
    src: Peer
    dst: Peer
    port: int | None
    protocol: str | None  # TCP, UDP, SCTP, or what else the source named (ICMPv4, ...)
    verdict: str = "forwarded"
    time: float | None = None  # seconds since the epoch
    count: int = 1  # Calico aggregates: connections started in the interval
    # What the dataplane said about a drop: the reason and the policies that
    # denied it (Cilium's egress_denied_by / ingress_denied_by).
    drop_reason: str = ""
    policies: tuple[str, ...] = ()
