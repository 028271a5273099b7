"""ClusterNetworkPolicy (policy.networking.k8s.io, v1beta1 and v1alpha2:
identical schemas) validated as the API server validates it and compiled
into the engine's model (``ClusterPolicy``).

Validation, in the API server's order: the apiVersion must be one the
pinned CRD serves (sigs.k8s.io/network-policy-api v0.3.1:
``cluster/policy/schemas/``); the object must pass the CRD's own schema
(``cluster.policy.schema.validate_cnp``: required fields, tier Admin or
Baseline, priority 0-1000, at most 25 rules, peers and protocols, exactly
one field per subject, peer, protocol and port, ports 1-65535, rule names of
at most 100 characters, domain names by the CRD's pattern, no unknown
field); then its CEL rules (apis/v1beta1/clusternetworkpolicy_types.go):

* a port range's ``start`` is less than its ``end``;
* a CIDR of ``networks`` is canonical (``isCIDR(self) && cidr(self) ==
  cidr(self).masked()``: ``10.0.0.0/8``, never ``10.1.2.3/8``);
* an egress rule with a ``networks``, ``nodes`` or ``domainNames`` peer has
  no ``destinationNamedPort``.

Beyond the API server, label selectors are checked as a LabelSelector is
(operators, keys and values; the CRD types them as plain strings), and
``metadata.namespace`` is refused: the object is cluster-scoped, and a
namespace on it is a copy-paste from a NetworkPolicy that kustomize's
``namespace:`` would also write.

Semantics (the types' comments, NPEP-285 and the conformance suite of
sigs.k8s.io/network-policy-api): the subject is every pod in the namespaces
``subject.namespaces`` picks, or the pods ``subject.pods.podSelector`` picks
in the namespaces ``subject.pods.namespaceSelector`` picks (empty selects
all). A rule matches when one of its peers matches the other end and one of
its protocols matches the port (no ``protocols``: every port and protocol).
``namespaces`` and ``pods`` peers pick pods only; ``networks`` matches an
address in a CIDR (pods at a known IP and addresses outside the pod
network); ``nodes`` and ``domainNames`` are read and kept as unmodelled
peers that match none of the endpoints, and every use is listed in
``ClusterPolicy.unmodelled`` so that callers warn. Pure: no client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from cluster.errors import Invalid, ManifestError
from cluster.policy import apivalidation as av
from cluster.policy import schema
from cluster.policy.engine.model import KCNP_KIND, ClusterPeer, ClusterPolicy, ClusterRule, PortRule, parse_selector

_PROTOCOL_KEYS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}
_PEER_KEYS = {"ingress": "from", "egress": "to"}


def _where(policy: Mapping, source: str) -> tuple[str, str]:
    meta = policy.get("metadata") if isinstance(policy.get("metadata"), Mapping) else {}
    return source, f"{KCNP_KIND} {meta.get('name', '?')}"


def _check_cel(spec: Mapping, path: str, obj: str) -> None:
    """The CRD's CEL rules (x-kubernetes-validations), on an object that
    passed its schema."""
    for direction, peer_key in _PEER_KEYS.items():
        for i, rule in enumerate(spec.get(direction) or []):
            what = f"spec.{direction}[{i}]"
            named = False
            for j, proto in enumerate(rule.get("protocols") or []):
                named = named or "destinationNamedPort" in proto
                for key in _PROTOCOL_KEYS:
                    rng = ((proto.get(key) or {}).get("destinationPort") or {}).get("range")
                    if rng is not None and not rng["start"] < rng["end"]:
                        raise ManifestError(f"{what}.protocols[{j}].{key}.destinationPort.range: Start port must be "
                                            f"less than End port (start {rng['start']}, end {rng['end']})",
                                            path=path, obj=obj)
            for j, peer in enumerate(rule.get(peer_key) or []):
                for k, text in enumerate(peer.get("networks") or []):
                    _canonical_cidr(text, f"{what}.{peer_key}[{j}].networks[{k}]", path, obj)
                if named and {"networks", "nodes", "domainNames"} & set(peer):
                    raise ManifestError(f"{what}: networks/nodes/domainNames peer cannot be set with namedPorts "
                                        "since there are no namedPorts for networks/nodes/domainNames",
                                        path=path, obj=obj)


def _canonical_cidr(text: str, field: str, path: str, obj: str):
    """isCIDR(self) && cidr(self) == cidr(self).masked()."""
    if "/" not in text:
        raise ManifestError(f"{field}: Invalid CIDR format provided: {text!r} has no prefix length "
                            "(like 10.0.0.0/8)", path=path, obj=obj)
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ManifestError(f"{field}: Invalid CIDR format provided: {text!r} is not a CIDR",
                            path=path, obj=obj) from None
    if ipaddress.ip_interface(text).ip != net.network_address:
        raise ManifestError(f"{field}: Invalid CIDR format provided: {text!r} has host bits set (the CRD "
                            f"wants the masked form, {net})", path=path, obj=obj)
    return net


def _namespaced_pod(data: Mapping, path: str, obj: str, what: str) -> tuple:
    ns = parse_selector(data.get("namespaceSelector") or {}, path, obj, f"{what}.namespaceSelector")
    pods = parse_selector(data["podSelector"], path, obj, f"{what}.podSelector")
    return ns, pods


def _peer(data: Mapping, path: str, obj: str, what: str) -> ClusterPeer:
    # The schema allows exactly one field.
    if "namespaces" in data:
        return ClusterPeer(namespace_selector=parse_selector(data["namespaces"], path, obj, f"{what}.namespaces"))
    if "pods" in data:
        ns, pods = _namespaced_pod(data["pods"], path, obj, f"{what}.pods")
        return ClusterPeer(namespace_selector=ns, pod_selector=pods)
    if "networks" in data:
        return ClusterPeer(networks=tuple(ipaddress.ip_network(n) for n in data["networks"]))
    if "nodes" in data:
        parse_selector(data["nodes"], path, obj, f"{what}.nodes")
        return ClusterPeer(unmodelled=f"nodes {data['nodes'] or '{}'}")
    return ClusterPeer(unmodelled=f"domainNames {', '.join(data['domainNames'])}")


def _ports(protocols) -> tuple[PortRule, ...] | None:
    if protocols is None:
        return None
    out = []
    for proto in protocols:
        if "destinationNamedPort" in proto:
            out.append(PortRule(protocol=None, port=proto["destinationNamedPort"]))
            continue
        key = next(iter(proto))
        port = proto[key].get("destinationPort") or {}
        rng = port.get("range")
        if rng is not None:
            out.append(PortRule(protocol=_PROTOCOL_KEYS[key], port=rng["start"], end_port=rng["end"]))
        else:
            out.append(PortRule(protocol=_PROTOCOL_KEYS[key], port=port.get("number")))
    return tuple(out)


def _rules(spec: Mapping, direction: str, path: str, obj: str, notes: list[str]) -> tuple[ClusterRule, ...]:
    out = []
    for i, rule in enumerate(spec.get(direction) or []):
        what = f"spec.{direction}[{i}]"
        peers = tuple(_peer(p, path, obj, f"{what}.{_PEER_KEYS[direction]}[{j}]")
                      for j, p in enumerate(rule[_PEER_KEYS[direction]]))
        name = rule.get("name") or ""
        label = f"{direction} rule {i + 1}" + (f" {name!r}" if name else "")
        notes.extend(f"{label}: {p.unmodelled}" for p in peers if p.unmodelled)
        out.append(ClusterRule(index=i + 1, name=name, action=rule["action"], peers=peers,
                               ports=_ports(rule.get("protocols"))))
    return tuple(out)


def check_cluster_policy(policy: Mapping, source: str = "") -> None:
    """Validate one ClusterNetworkPolicy dict as the API server does (and
    its selectors); raises ManifestError, one line naming the file, the
    object and the field."""
    path, obj = _where(policy, source)
    versions = schema.cnp_versions()
    if policy.get("apiVersion") not in versions:
        raise ManifestError(f"apiVersion {policy.get('apiVersion')!r} does not serve ClusterNetworkPolicy "
                            f"(the CRD serves {' and '.join(versions)})", path=path, obj=obj)
    meta = policy.get("metadata")
    if not isinstance(meta, Mapping):
        raise ManifestError("metadata: expected a map", path=path, obj=obj)
    try:
        av.dns_subdomain(meta.get("name"), "metadata.name")
    except Invalid as e:
        raise ManifestError(str(e), path=path, obj=obj) from None
    if meta.get("namespace") is not None:
        raise ManifestError(f"metadata.namespace {meta['namespace']!r}: a ClusterNetworkPolicy is cluster-scoped "
                            "(remove the namespace)", path=path, obj=obj)
    av.labels(meta.get("labels"), "metadata.labels", path, obj)
    av.annotations(meta.get("annotations"), "metadata.annotations", path, obj)
    schema.validate_cnp(dict(policy), path, obj)
    _check_cel(policy["spec"], path, obj)


def compile_cluster_policy(policy: Mapping, source: str = "") -> ClusterPolicy:
    """Validate one ClusterNetworkPolicy dict (``check_cluster_policy``) and
    compile it. Raises ManifestError."""
    check_cluster_policy(policy, source)
    path, obj = _where(policy, source)
    spec = policy["spec"]
    subject = spec["subject"]
    if "namespaces" in subject:
        namespaces = parse_selector(subject["namespaces"], path, obj, "spec.subject.namespaces")
        pods = None
    else:
        namespaces, pods = _namespaced_pod(subject["pods"], path, obj, "spec.subject.pods")
    notes: list[str] = []
    ingress = _rules(spec, "ingress", path, obj, notes)
    egress = _rules(spec, "egress", path, obj, notes)
    return ClusterPolicy(name=str(policy["metadata"]["name"]), tier=spec["tier"], priority=spec["priority"],
                         subject_namespaces=namespaces, subject_pods=pods, ingress=ingress, egress=egress,
                         source=source, unmodelled=tuple(notes))
