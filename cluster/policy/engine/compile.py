"""Compiling a manifest into the engine's model: a NetworkPolicy
(networking.k8s.io/v1) dict, as read from YAML, validated as the API server
would and compiled into a ``Policy``; a CiliumNetworkPolicy goes to the
subset ``cilium`` reads, a ClusterNetworkPolicy to ``clusterpolicy``. Invalid input raises ``ManifestError`` naming the
file, the policy and the field.
"""

from __future__ import annotations

from collections.abc import Mapping

from cluster.errors import Invalid, ManifestError
from cluster.policy import apivalidation
from cluster.policy.engine.cilium import compile_cnp
from cluster.policy.engine.clusterpolicy import compile_cluster_policy
from cluster.policy.engine.model import (
    KCNP_KIND,
    PROTOCOLS,
    ClusterPolicy,
    Peer,
    Policy,
    PortRule,
    Rule,
    parse_selector,
)


def _where(policy: Mapping, source: str) -> tuple[str, str]:
    meta = policy.get("metadata") or {}
    return source, f"NetworkPolicy {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def _parse_peer(data, path, obj, what) -> Peer:
    if isinstance(data, Mapping):
        # A null field is an unset one (a nil pointer in the API types).
        data = {k: v for k, v in data.items() if v is not None}
    if not isinstance(data, Mapping) or not data:
        raise ManifestError(f"{what}: a peer needs podSelector, namespaceSelector or ipBlock",
                            path=path, obj=obj)
    unknown = set(data) - {"podSelector", "namespaceSelector", "ipBlock"}
    if unknown:
        raise ManifestError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}", path=path, obj=obj)
    if "ipBlock" in data:
        if len(data) > 1:
            raise ManifestError(f"{what}: ipBlock cannot be combined with selectors", path=path, obj=obj)
        block = data["ipBlock"] or {}
        if not isinstance(block, Mapping) or not isinstance(block.get("except") or [], list):
            raise ManifestError(f"{what}.ipBlock must be a mapping with cidr and a list except",
                                path=path, obj=obj)
        try:
            cidr = apivalidation.cidr(block.get("cidr"), "cidr")
            excepts = tuple(apivalidation.cidr(e, "except") for e in block.get("except") or [])
        except Invalid as e:
            raise e.at(f"{what}.ipBlock", path, obj) from None
        for ex in excepts:
            # The API requires a strict subset (validation of IPBlock.except).
            if ex.version != cidr.version or not ex.subnet_of(cidr) or ex == cidr:
                raise ManifestError(f"{what}: ipBlock except {ex} is not inside {cidr}", path=path, obj=obj)
        return Peer(cidr=cidr, excepts=excepts)
    pod = parse_selector(data["podSelector"], path, obj, f"{what}.podSelector") \
        if "podSelector" in data else None
    ns = parse_selector(data["namespaceSelector"], path, obj, f"{what}.namespaceSelector") \
        if "namespaceSelector" in data else None
    return Peer(pod_selector=pod, namespace_selector=ns)


def _parse_port(data, path, obj, what) -> PortRule:
    if data is None:
        data = {}  # a null entry decodes as an empty NetworkPolicyPort: every port of TCP
    if not isinstance(data, Mapping):
        raise ManifestError(f"{what} must be a mapping", path=path, obj=obj)
    protocol = data.get("protocol")
    if protocol is None:  # the API's default (a nil pointer); "" is not one and is refused
        protocol = "TCP"
    if protocol not in PROTOCOLS:
        raise ManifestError(f"{what}: invalid protocol {protocol!r} (TCP, UDP, SCTP)", path=path, obj=obj)
    port = data.get("port")
    end = data.get("endPort")
    if isinstance(port, bool):
        raise ManifestError(f"{what}: invalid port {port!r}", path=path, obj=obj)
    if isinstance(port, int):
        if not 1 <= port <= 65535:
            raise ManifestError(f"{what}: port {port} out of range 1-65535", path=path, obj=obj)
    elif isinstance(port, str):
        try:
            apivalidation.port_name(port)
        except Invalid as e:
            raise e.at(f"{what}.port", path, obj) from None
    elif port is not None:
        raise ManifestError(f"{what}: invalid port {port!r}", path=path, obj=obj)
    if end is not None:
        if not isinstance(port, int):
            raise ManifestError(f"{what}: endPort needs a numeric port", path=path, obj=obj)
        if not isinstance(end, int) or isinstance(end, bool) or end < port or end > 65535:
            raise ManifestError(f"{what}: endPort {end!r} must be a number from port ({port}) to 65535",
                                path=path, obj=obj)
    return PortRule(protocol=protocol, port=port, end_port=end)


def _parse_rules(rules, peer_key, path, obj, direction) -> tuple[Rule, ...]:
    if not isinstance(rules, list):
        raise ManifestError(f"spec.{direction} must be a list", path=path, obj=obj)
    out = []
    for i, rule in enumerate(rules):
        what = f"spec.{direction}[{i}]"
        if rule is None:
            rule = {}
        if not isinstance(rule, Mapping):
            raise ManifestError(f"{what} must be a mapping", path=path, obj=obj)
        unknown = set(rule) - {peer_key, "ports"}
        if unknown:
            raise ManifestError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}", path=path, obj=obj)
        peers_data = rule.get(peer_key)
        peers = None
        if peers_data:
            if not isinstance(peers_data, list):
                raise ManifestError(f"{what}.{peer_key} must be a list", path=path, obj=obj)
            peers = tuple(_parse_peer(p, path, obj, f"{what}.{peer_key}[{j}]") for j, p in enumerate(peers_data))
        ports_data = rule.get("ports")
        ports = None
        if ports_data:
            if not isinstance(ports_data, list):
                raise ManifestError(f"{what}.ports must be a list", path=path, obj=obj)
            ports = tuple(_parse_port(p, path, obj, f"{what}.ports[{j}]") for j, p in enumerate(ports_data))
        out.append(Rule(index=i + 1, peers=peers, ports=ports))
    return tuple(out)


def compile_policy(policy: Mapping, source: str = "") -> Policy | ClusterPolicy:
    """Validate one NetworkPolicy (or the CiliumNetworkPolicy subset of
    ``cluster.policy.engine.cilium``, or a ClusterNetworkPolicy:
    ``cluster.policy.engine.clusterpolicy``) dict and compile it. Raises ManifestError."""
    if isinstance(policy, Mapping) and policy.get("kind") == "CiliumNetworkPolicy":
        return compile_cnp(policy, source)
    if isinstance(policy, Mapping) and policy.get("kind") == KCNP_KIND:
        return compile_cluster_policy(policy, source)
    path, obj = _where(policy, source)
    if policy.get("kind") != "NetworkPolicy":
        raise ManifestError(f"expected kind NetworkPolicy, got {policy.get('kind')!r}", path=path, obj=obj)
    meta = policy.get("metadata") or {}
    if not meta.get("name") or not meta.get("namespace"):
        raise ManifestError("metadata.name and metadata.namespace are required", path=path, obj=obj)
    spec = policy.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ManifestError("spec must be a mapping", path=path, obj=obj)
    types = spec.get("policyTypes")
    if not types:
        # The API server's defaulting (pkg/apis/networking/v1/defaults.go).
        types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
    for t in types:
        if t not in ("Ingress", "Egress"):
            raise ManifestError(f"invalid policyType {t!r} (Ingress, Egress)", path=path, obj=obj)
    if len(types) > 2:  # ValidateNetworkPolicySpec, before it looks at the values
        raise ManifestError(f"spec.policyTypes: {len(types)} entries; it may not specify more than two",
                            path=path, obj=obj)
    ingress = _parse_rules(spec.get("ingress") or [], "from", path, obj, "ingress") if "Ingress" in types else None
    egress = _parse_rules(spec.get("egress") or [], "to", path, obj, "egress") if "Egress" in types else None
    return Policy(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        pod_selector=parse_selector(spec.get("podSelector"), path, obj, "spec.podSelector"),
        ingress=ingress,
        egress=egress,
        source=source,
    )
