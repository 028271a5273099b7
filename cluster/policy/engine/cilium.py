"""The subset of Cilium's CiliumNetworkPolicy (cilium.io/v2) the engine reads.

A profile uses one where a NetworkPolicy cannot say what is meant on
Cilium: egress to the API server. Cilium gives the API server's addresses
an identity of their own (the entity ``kube-apiserver``: the backends of
the default/kubernetes Service, pkg/ipcache/cell/apiserver_watcher.go) and
a node's address the ``host`` identity, neither of which an ipBlock
selects; ``toEntities: [kube-apiserver]`` does.

What is read, with Cilium v1.20.2's meaning (pkg/policy/api/rule.go,
egress.go, l4.go, entity.go; the CRD in pkg/k8s/apis/cilium.io/v2/
cnp_types.go and client/crds/v2/ciliumnetworkpolicies.yaml):

* ``metadata.namespace`` / ``metadata.name``; the policy applies in its
  namespace only.
* ``spec.endpointSelector``: matchLabels / matchExpressions over the pod's
  labels, as a LabelSelector (``{}`` selects every pod of the namespace).
* ``spec.egress``: a list of rules. An endpoint selected by a policy with at
  least one egress rule is default-deny for egress (Rule.EnableDefaultDeny:
  "the default is true for each traffic direction that has rules"); an
  absent or empty list leaves egress alone. Allows add up across
  CiliumNetworkPolicies and NetworkPolicies.
* ``egress[].toEntities``: ``kube-apiserver``. Other entities are refused.
* ``egress[].toPorts[].ports[]``: ``port`` (a string, as the CRD types it:
  a number 1-65535), optional ``endPort``, ``protocol`` TCP, UDP, SCTP or
  ANY; absent or ANY means TCP, UDP and SCTP. Without ``toPorts`` a rule
  opens every port. The members of one rule must all match (AND).

Everything else (ingress, deny rules, other peers, L7 rules, named ports,
``specs``, ...) is refused with one line naming the file, the object and
the field: a field read wrongly would make a wrong prediction.

``identity_labels``: the labels of a pod Cilium's selectors see. Every
policy Cilium enforces (NetworkPolicy, CiliumNetworkPolicy,
ClusterNetworkPolicy) selects pods by their security identity, whose
labels are the pod's minus those pkg/labelsfilter leaves out
(statefulset.kubernetes.io/pod-name, pod-template-hash, kubernetes.io/...),
so a selector on such a label matches no pod there. Pure: no client
imports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from cluster.errors import ManifestError
from cluster.policy.engine.model import KUBE_APISERVER_ENTITY, PROTOCOLS, Peer, Policy, PortRule, Rule, parse_selector

CNP_API = "cilium.io/v2"
CNP_KIND = "CiliumNetworkPolicy"
ENTITIES = (KUBE_APISERVER_ENTITY,)
# The entities the CRD accepts (entity.go, the kubebuilder enum): named in the
# message when one of them is used, so it reads "not modelled", not "invalid".
CILIUM_ENTITIES = ("all", "world", "cluster", "cluster-mesh", "host", "init", "ingress", "unmanaged",
                   "remote-node", "health", "none", "kube-apiserver")
_SPEC_FIELDS = {"endpointSelector", "egress", "description"}
_RULE_FIELDS = {"toEntities", "toPorts"}
_PORT_RULE_FIELDS = {"ports"}
_PORT_FIELDS = {"port", "endPort", "protocol"}
_NUMBER = re.compile(r"^[0-9]{1,5}$")


def _unsupported(fields, what: str, path: str, obj: str) -> ManifestError:
    names = ", ".join(sorted(str(f) for f in fields))
    return ManifestError(f"{what}: {names} not supported (the engine reads endpointSelector, "
                         "egress[].toEntities and egress[].toPorts[].ports of a CiliumNetworkPolicy)",
                         path=path, obj=obj)


def _items(data, fields: set[str], path: str, obj: str, what: str):
    """(``what[i]``, item) of a non-empty list of mappings holding only ``fields``."""
    if not isinstance(data, list) or not data:
        raise ManifestError(f"{what} must be a non-empty list", path=path, obj=obj)
    for i, item in enumerate(data):
        w = f"{what}[{i}]"
        if not isinstance(item, Mapping):
            raise ManifestError(f"{w} must be a mapping", path=path, obj=obj)
        if set(item) - fields:
            raise _unsupported(set(item) - fields, w, path, obj)
        yield w, item


def _ports(data, path: str, obj: str, what: str) -> tuple[PortRule, ...]:
    out: list[PortRule] = []
    for w, pr in _items(data, _PORT_RULE_FIELDS, path, obj, what):
        for wp, p in _items(pr.get("ports"), _PORT_FIELDS, path, obj, f"{w}.ports"):
            port = p.get("port")
            if not isinstance(port, str):
                raise ManifestError(f"{wp}.port must be a string (the CRD types it so: port: \"6443\"), "
                                    f"got {port!r}", path=path, obj=obj)
            if not _NUMBER.match(port) or not 1 <= int(port) <= 65535:
                raise ManifestError(f"{wp}.port {port!r}: only a port number 1-65535 is supported "
                                    "(named ports and 0 are not)", path=path, obj=obj)
            end = p.get("endPort")
            if end is not None and (not isinstance(end, int) or isinstance(end, bool)
                                    or not int(port) <= end <= 65535):
                raise ManifestError(f"{wp}.endPort {end!r} must be a number from port ({port}) to 65535",
                                    path=path, obj=obj)
            protocol = p.get("protocol") or "ANY"
            if protocol not in PROTOCOLS + ("ANY",):
                raise ManifestError(f"{wp}.protocol {protocol!r} not supported (TCP, UDP, SCTP, ANY)",
                                    path=path, obj=obj)
            for proto in PROTOCOLS if protocol == "ANY" else (protocol,):
                out.append(PortRule(protocol=proto, port=int(port), end_port=end))
    return tuple(out)


def _egress(data, path: str, obj: str) -> tuple[Rule, ...] | None:
    if data is None:
        return None
    if not isinstance(data, list):
        raise ManifestError("spec.egress must be a list", path=path, obj=obj)
    if not data:
        return None  # "If omitted or empty, this rule does not apply at egress"
    rules = []
    for i, (what, rule) in enumerate(_items(data, _RULE_FIELDS, path, obj, "spec.egress")):
        entities = rule.get("toEntities")
        if not isinstance(entities, list) or not entities:
            raise ManifestError(f"{what}.toEntities must be a non-empty list (the only peer supported)",
                                path=path, obj=obj)
        for j, ent in enumerate(entities):
            if ent not in ENTITIES:
                why = "not supported" if ent in CILIUM_ENTITIES else "is not a Cilium entity"
                raise ManifestError(f"{what}.toEntities[{j}]: {ent!r} {why} (supported: {', '.join(ENTITIES)})",
                                    path=path, obj=obj)
        ports = _ports(rule["toPorts"], path, obj, f"{what}.toPorts") if "toPorts" in rule else None
        rules.append(Rule(index=i + 1, peers=tuple(Peer(entity=e) for e in dict.fromkeys(entities)),
                          ports=ports))
    return tuple(rules)


def compile_cnp(policy: Mapping, source: str = "") -> Policy:
    """Validate one CiliumNetworkPolicy dict (the subset above) and compile it
    into the engine's model. Raises ManifestError, one line."""
    meta = policy.get("metadata") if isinstance(policy.get("metadata"), Mapping) else {}
    obj = f"{CNP_KIND} {meta.get('namespace', '?')}/{meta.get('name', '?')}"
    path = source
    if policy.get("apiVersion") != CNP_API:
        raise ManifestError(f"apiVersion must be {CNP_API}, got {policy.get('apiVersion')!r}", path=path, obj=obj)
    if not meta.get("name") or not meta.get("namespace"):
        raise ManifestError("metadata.name and metadata.namespace are required", path=path, obj=obj)
    if "specs" in policy:
        raise _unsupported(["specs"], "a CiliumNetworkPolicy", path, obj)
    spec = policy.get("spec")
    if not isinstance(spec, Mapping):
        raise ManifestError("spec must be a mapping", path=path, obj=obj)
    if set(spec) - _SPEC_FIELDS:
        raise _unsupported(set(spec) - _SPEC_FIELDS, "spec", path, obj)
    if "endpointSelector" not in spec:
        raise ManifestError("spec.endpointSelector is required", path=path, obj=obj)
    return Policy(namespace=str(meta["namespace"]), name=str(meta["name"]),
                  pod_selector=parse_selector(spec["endpointSelector"], path, obj, "spec.endpointSelector"),
                  ingress=None, egress=_egress(spec.get("egress"), path, obj), source=source, kind=CNP_KIND)


# --------------------------------------------------------------------------
# Identity labels

# Cilium v1.20.2 pkg/labelsfilter/filter.go, defaultLabelPrefixCfg (the
# agent's default, no --labels given): prefixes as regular expressions
# anchored at the key's start. A label is part of the identity when no
# ignore prefix matches it, or an include prefix matches a longer part of
# the key than the shortest ignore that matches (filterLabels).
_IDENTITY_INCLUDE = tuple(re.compile(re.escape(p)) for p in (
    "io.kubernetes.pod.namespace", "io.cilium.k8s.namespace.labels", "app.kubernetes.io",
    "io.cilium.k8s.policy.cluster", "io.cilium.k8s.policy.serviceaccount"))
_IDENTITY_IGNORE = tuple(re.compile(p) for p in (
    r"io\.kubernetes", r"kubernetes\.io", re.escape("statefulset.kubernetes.io/pod-name"),
    re.escape("apps.kubernetes.io/pod-index"), re.escape("batch.kubernetes.io/job-completion-index"),
    re.escape("batch.kubernetes.io/controller-uid"), r".*beta\.kubernetes\.io", r"k8s\.io",
    "pod-template-generation", "pod-template-hash", "controller-revision-hash", "controller-uid", "annotation.*",
    "etcd_node", r"topology\.kubernetes\.io"))


def in_identity(key: str) -> bool:
    """Whether Cilium keeps a pod label with this key in the pod's identity."""
    ignored = min((m.end() for p in _IDENTITY_IGNORE if (m := p.match(key))), default=0)
    if not ignored:
        return True
    return max((m.end() for p in _IDENTITY_INCLUDE if (m := p.match(key))), default=0) > ignored


def identity_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A pod's labels as Cilium's selectors see them."""
    return {k: v for k, v in labels.items() if in_identity(k)}
