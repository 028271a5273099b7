"""Our policies: what marks a policy as ours, the form it is stored and
compared in (the API server's defaults filled in), and how the policies of
some namespaces are read from a cluster.

A policy is ours when it carries ``app.kubernetes.io/managed-by=dashi-cluster``;
every other policy is someone else's, and is never created, changed or
deleted by a restore."""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor

from cluster.policy.engine.cilium import CNP_API, CNP_KIND
from cluster.policy.engine.model import KCNP_KIND
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Kube
from cluster.threads import block_stop_signals

NP_API = "networking.k8s.io/v1"
NP_KIND = "NetworkPolicy"
# The storage version of network-policy-api v0.3's CRD (v1alpha2 is served too).
KCNP_API = "policy.networking.k8s.io/v1beta1"
# The policy kinds that are ours to apply, snapshot and restore: the
# NetworkPolicies, the CiliumNetworkPolicies of a cilium step variant and the
# ClusterNetworkPolicies (each listed only where its CRD is served).
POLICY_KINDS = {NP_KIND: NP_API, CNP_KIND: CNP_API, KCNP_KIND: KCNP_API}
# Listed cluster-wide, not per namespace: a ClusterNetworkPolicy applies to
# the profile's namespaces whoever made it.
CLUSTER_SCOPED_KINDS = (KCNP_KIND,)
STEP_ANNOTATION = "dashi.io/step"
# kubectl's client-side-apply copy of the object: noise in a snapshot, and it
# would resurrect stale fields if restored.
_DROP_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def is_ours(obj: dict) -> bool:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def owner(obj: dict) -> str:
    """Whose a policy that is not ours is, as far as the object says: its
    ``app.kubernetes.io/managed-by`` label (what GitOps tools and Helm set)
    and the field managers that wrote it (``kubectl-create``,
    ``kustomize-controller``, ...)."""
    meta = obj.get("metadata") or {}
    by = (meta.get("labels") or {}).get(MANAGED_BY_LABEL)
    managers = sorted({str(f["manager"]) for f in meta.get("managedFields") or []
                       if isinstance(f, dict) and f.get("manager")})
    parts = ([f"managed by {by}"] if by else []) + ([f"field managers {', '.join(managers)}"] if managers else [])
    return "; ".join(parts) or "no managed-by label, no field manager"


def clean_policy(obj: dict) -> dict:
    """A live policy (NetworkPolicy or CiliumNetworkPolicy) without what the
    server adds (uid, resourceVersion, managedFields, status): what can be
    stored and applied again."""
    meta = obj.get("metadata") or {}
    out_meta = {"name": meta.get("name")}
    if (obj.get("kind") or NP_KIND) not in CLUSTER_SCOPED_KINDS:
        out_meta["namespace"] = meta.get("namespace")
    labels = dict(meta.get("labels") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS}
    if labels:
        out_meta["labels"] = labels
    if annotations:
        out_meta["annotations"] = annotations
    kind = obj.get("kind") or NP_KIND
    return {"apiVersion": obj.get("apiVersion") or POLICY_KINDS.get(kind, NP_API), "kind": kind,
            "metadata": out_meta, "spec": copy.deepcopy(obj.get("spec") or {})}


def mark_ours(obj: dict, step: str) -> dict:
    """A copy of a policy carrying our label and the step that applies it."""
    out = copy.deepcopy(obj)
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    meta["annotations"] = {**(meta.get("annotations") or {}), STEP_ANNOTATION: step}
    return out


def _canon_selector(sel) -> dict | None:
    if sel is None:
        return None
    labels = dict(sel.get("matchLabels") or {})
    exprs = sorted(({"key": e.get("key"), "operator": e.get("operator"),
                     "values": sorted(e.get("values") or [])} for e in sel.get("matchExpressions") or []),
                   key=lambda e: (e["key"], e["operator"], e["values"]))
    out = {}
    if labels:
        out["matchLabels"] = labels
    if exprs:
        out["matchExpressions"] = exprs
    return out


def _canon_rules(rules, peer_key) -> list:
    out = []
    for rule in rules or []:
        rule = rule or {}
        r = {}
        peers = []
        for p in rule.get(peer_key) or []:
            cp = {}
            if "ipBlock" in p:
                cp["ipBlock"] = {"cidr": p["ipBlock"].get("cidr"),
                                 "except": sorted(p["ipBlock"].get("except") or [])}
            for key in ("namespaceSelector", "podSelector"):
                if key in p and p[key] is not None:
                    cp[key] = _canon_selector(p[key])
            peers.append(cp)
        if peers:
            r[peer_key] = peers
        ports = [{k: v for k, v in {"protocol": pr.get("protocol") or "TCP", "port": pr.get("port"),
                                    "endPort": pr.get("endPort")}.items() if v is not None}
                 for pr in rule.get("ports") or []]
        if ports:
            r["ports"] = ports
        out.append(r)
    return out


def _canon_cnp(spec: dict) -> dict:
    """A CiliumNetworkPolicy spec: the CRD defaults nothing we read, so only
    the selector's and the lists' empty parts are normalised."""
    out = {k: copy.deepcopy(v) for k, v in spec.items() if v not in (None, [], {}) and k != "endpointSelector"}
    out["endpointSelector"] = _canon_selector(spec.get("endpointSelector") or {})
    return out


def canonical_spec(spec: dict, kind: str = NP_KIND) -> dict:
    """A NetworkPolicy spec with the API server's defaults filled in and empty
    fields dropped, so a live object compares equal to the manifest it was
    applied from (the server defaults protocol to TCP and fills policyTypes);
    for a CiliumNetworkPolicy, see ``_canon_cnp``."""
    spec = spec or {}
    if kind == CNP_KIND:
        return _canon_cnp(spec)
    if kind == KCNP_KIND:
        # The CRD defaults nothing, and an empty selector means "all": as written.
        return copy.deepcopy(spec)
    types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))
    out = {"podSelector": _canon_selector(spec.get("podSelector") or {}), "policyTypes": sorted(types)}
    if "Ingress" in types:
        out["ingress"] = _canon_rules(spec.get("ingress"), "from")
    if "Egress" in types:
        out["egress"] = _canon_rules(spec.get("egress"), "to")
    return out


def canonical(obj: dict) -> dict:
    """A policy object's canonical spec (by its kind)."""
    return canonical_spec(obj.get("spec") or {}, obj.get("kind") or NP_KIND)


def policy_key(obj: dict) -> tuple[str, str, str]:
    """(namespace, name, kind): a NetworkPolicy and a CiliumNetworkPolicy may
    share a name; a cluster-scoped policy's namespace is ""."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind") or NP_KIND
    return ("" if kind in CLUSTER_SCOPED_KINDS else meta.get("namespace")), meta.get("name"), kind


def key_ref(key: tuple[str, str, str]) -> str:
    """How messages name a policy by its key: ``ns/name`` for a NetworkPolicy,
    ``CiliumNetworkPolicy ns/name`` or ``ClusterNetworkPolicy name`` for the others."""
    ns, name, kind = key
    if kind == NP_KIND:
        return f"{ns}/{name}"
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def same_policy(a: dict, b: dict) -> bool:
    """Equal as far as a restore cares: spec (canonical), labels, annotations."""
    ca, cb = clean_policy(a), clean_policy(b)
    return (ca["kind"] == cb["kind"] and canonical(ca) == canonical(cb)
            and ca["metadata"].get("labels", {}) == cb["metadata"].get("labels", {})
            and ca["metadata"].get("annotations", {}) == cb["metadata"].get("annotations", {}))


def live_policies(kube: Kube, namespaces: list[str]) -> list[dict]:
    """The NetworkPolicies and CiliumNetworkPolicies of some namespaces, and
    every ClusterNetworkPolicy, as complete objects (the API's list carries
    apiVersion and kind on the list, not on each item). A cluster without a
    kind's CRD lists none of that kind."""
    reads = [(api, kind, ns) for kind, api in POLICY_KINDS.items()
             for ns in ([None] if kind in CLUSTER_SCOPED_KINDS else namespaces)]
    if len(reads) <= 1:
        listed = [kube.list(*r) for r in reads]
    else:
        # Made at once: a snapshot and every verification read them all.
        with ThreadPoolExecutor(max_workers=min(8, len(reads)), thread_name_prefix="read",
                                initializer=block_stop_signals) as pool:
            listed = list(pool.map(lambda r: kube.list(*r), reads))
    return [{**item, "apiVersion": api, "kind": kind} for (api, kind, _), items in zip(reads, listed) for item in items]
