"""Placing the ends of observed flows on a profile's endpoints.

A pod is placed by its namespace and labels: the endpoint of that namespace
whose pod labels it carries (the workload's template labels, a cluster
endpoint's labels), the one with the most labels when several fit; an
unlabelled debug pod by its name. Without labels (some Calico aggregates)
a workload is recognised by its name (``stac-fastapi-7c9d-*`` is
stac-fastapi's). The API server (Cilium's ``kube-apiserver`` identity, or
the address of the profile's API endpoint) is the profile's external
endpoint for it; the node is the node.

Whatever cannot be placed is named with the reason: a namespace outside the
profile, a pod no endpoint matches (or several match equally), the world
outside the cluster, a protocol NetworkPolicy has no rules for. The counts
of these are part of every report: a flow is never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.policy.engine.model import HOST, PROTOCOLS, Endpoint
from cluster.policy.flows.model import Peer


@dataclass(frozen=True)
class Placed:
    key: str | None  # the endpoint's key, None when it cannot be placed
    why: str = ""  # when not placed: the reason


class Resolver:
    """Places peers on one profile's endpoints, each distinct peer once."""

    def __init__(self, profile):
        self.profile = profile
        self.by_ns: dict[str, list[Endpoint]] = {}
        for ep in profile.endpoints:
            if ep.is_pod and ep.namespace:
                self.by_ns.setdefault(ep.namespace, []).append(ep)
        self.apiserver = next((ep for ep in profile.endpoints if ep.is_kube_apiserver), None)
        self.by_ip = {ep.ip: ep for ep in profile.endpoints if ep.ip and not ep.is_pod}
        self._cache: dict[Peer, Placed] = {}

    def place(self, peer: Peer, source: bool) -> Placed:
        """Where ``peer`` is, as the source (``source``) or destination of a flow."""
        hit = self._cache.get((peer, source))
        if hit is None:
            hit = self._cache[(peer, source)] = self._place(peer, source)
        return hit

    def _place(self, peer: Peer, source: bool) -> Placed:
        if peer.kind == "host" or (peer.kind == "host-apiserver" and source):
            return Placed(HOST.key)
        if peer.kind == "host-apiserver":
            peer = Peer("apiserver", ip=peer.ip)
        if peer.kind == "apiserver" or (peer.ip and peer.ip in self.by_ip):
            ep = self.apiserver if peer.kind == "apiserver" else self.by_ip[peer.ip]
            if ep is None:
                return Placed(None, "the Kubernetes API server (the profile has no endpoint for it)")
            return Placed(ep.key)
        if peer.kind == "world":
            return Placed(None, "outside the cluster (world)")
        if peer.kind != "pod":
            return Placed(None, "no pod, namespace or identity given")
        candidates = self.by_ns.get(peer.namespace or "")
        if not candidates:
            return Placed(None, f"namespace {peer.namespace} is not in profile {self.profile.name}")
        if peer.labels:
            labels = peer.label_map
            fits = [ep for ep in candidates
                    if ep.labels and all(labels.get(k) == v for k, v in ep.labels.items())]
            if fits:
                best = max(len(ep.labels) for ep in fits)
                top = [ep for ep in fits if len(ep.labels) == best]
                if len(top) > 1:
                    return Placed(None, f"pod {peer} matches {', '.join(ep.key for ep in top)} equally")
                return Placed(top[0].key)
        name = peer.name or ""
        for ep in candidates:
            if ep.kind == "debug" and name == ep.name and not peer.labels:
                return Placed(ep.key)
        if not peer.labels:
            named = [ep for ep in candidates if ep.kind != "debug" and name.startswith(ep.name + "-")]
            if len(named) == 1:
                return Placed(named[0].key)
        return Placed(None, f"pod {peer} in {peer.namespace} matches no endpoint of profile {self.profile.name}")


def protocol_problem(protocol: str | None, port: int | None) -> str:
    """Why a flow of this protocol and port is not an edge NetworkPolicy
    decides by port ('' when it is one)."""
    if protocol not in PROTOCOLS:
        return f"protocol {protocol or 'unknown'} (NetworkPolicy has rules for TCP, UDP and SCTP only)"
    if not port:
        return f"{protocol} without a destination port"
    return ""
