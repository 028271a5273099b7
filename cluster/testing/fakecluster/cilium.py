"""The fake cluster as a Cilium cluster, as far as policies go.

``cni="cilium"``: a CiliumNode per node (so the CNI is detected), the
cilium.io/v2 CiliumNetworkPolicy kind served (elsewhere applying one fails,
as on a cluster without the CRD), and Cilium's identities: the API server
is the entity kube-apiserver, which no ipBlock selects. The
CiliumNetworkPolicies are enforced by this module's own small model
(``cnp_allows``), not by the engine: an endpoint selected by one with
egress rules is default-deny for egress, and the allows of
CiliumNetworkPolicies and NetworkPolicies add up (network.py puts them
together). Only the fields it models are accepted (endpointSelector,
egress[].toEntities, egress[].toPorts[].ports); others are refused, so a
test never runs against a model that ignores part of its policy.
"""

from __future__ import annotations

from cluster.errors import KubeError, ManifestError
from cluster.policy.engine.clusterpolicy import check_cluster_policy
from cluster.policy.engine.model import KCNP_KIND
from cluster.testing.fakecluster.store import Store, api_error, selector_matches

CILIUM_API = "cilium.io/v2"
CNP_KIND = "CiliumNetworkPolicy"
# Kubernetes ClusterNetworkPolicy: served where its CRD is (network-policy-api
# v0.3: v1alpha2 and v1beta1), enforced where the simulated CNI implements it.
KCNP_GROUP = "policy.networking.k8s.io"
KCNP_CRD = "clusternetworkpolicies.policy.networking.k8s.io"
KCNP_VERSIONS = ("v1alpha2", "v1beta1")
# The entities the CRD accepts (its enum); the fake enforces kube-apiserver.
_CILIUM_ENTITIES = frozenset({"all", "world", "cluster", "cluster-mesh", "host", "init", "ingress", "unmanaged",
                              "remote-node", "health", "none", "kube-apiserver"})


def _validate_cnp(obj: dict) -> None:
    """What the CRD's schema refuses (ciliumnetworkpolicies.yaml: port is a
    string, entities an enum), and what this fake does not model."""
    name = obj["metadata"]["name"]

    def invalid(msg: str) -> KubeError:
        return api_error(422, f'{CNP_KIND}.cilium.io "{name}" is invalid: {msg}')

    spec = obj.get("spec")
    if not isinstance(spec, dict) or set(obj) - {"apiVersion", "kind", "metadata", "spec", "status"}:
        raise invalid("fake cluster: only spec is modelled")
    if set(spec) - {"endpointSelector", "egress", "description"}:
        raise invalid(f"fake cluster: spec fields not modelled: {sorted(set(spec) - {'endpointSelector', 'egress', 'description'})}")
    for i, rule in enumerate(spec.get("egress") or []):
        if not isinstance(rule, dict) or set(rule) - {"toEntities", "toPorts"} or not rule.get("toEntities"):
            raise invalid(f"spec.egress[{i}]: fake cluster: only toEntities and toPorts are modelled")
        for ent in rule["toEntities"]:
            if ent not in _CILIUM_ENTITIES:
                raise invalid(f"spec.egress[{i}].toEntities: Unsupported value: {ent!r}")
        for pr in rule.get("toPorts") or []:
            for p in (pr or {}).get("ports") or []:
                if not isinstance(p.get("port"), str) or not p["port"].isdigit():
                    raise invalid(f"spec.egress[{i}].toPorts.ports.port: Invalid value: {p.get('port')!r}: "
                                  "fake cluster: a port number as a string")


def cnp_selects(cnp: dict, pod: dict) -> bool:
    """Does a CiliumNetworkPolicy with egress rules select this pod?"""
    spec = cnp.get("spec") or {}
    return bool(spec.get("egress")) and cnp["metadata"].get("namespace") == pod["metadata"]["namespace"] \
        and selector_matches(spec.get("endpointSelector") or {}, pod["metadata"].get("labels") or {})


def cnp_allows(cnp: dict, to_api: bool, port: int, proto: str) -> bool:
    """Does one of its egress rules let this packet out? Only the entity
    kube-apiserver names a destination here; absent toPorts is every port,
    absent or ANY protocol is TCP, UDP and SCTP."""
    for rule in (cnp.get("spec") or {}).get("egress") or []:
        if not (to_api and "kube-apiserver" in rule["toEntities"]):
            continue
        if "toPorts" not in rule:
            return True
        for pr in rule["toPorts"] or []:
            for p in pr.get("ports") or []:
                lo = int(p["port"])
                hi = p.get("endPort") or lo
                if lo <= port <= hi and (p.get("protocol") or "ANY") in ("ANY", proto):
                    return True
    return False


class Cilium(Store):
    """The cilium.io/v2 kinds: served on a Cilium cluster only, and a
    CiliumNetworkPolicy checked against the CRD's schema."""

    def _init_cilium(self, cni: str | None, kcnp_enforced: bool) -> None:
        # cni="cilium": CiliumNodes, the CiliumNetworkPolicy CRD and Cilium's
        # identities (see the module docstring). kcnp_enforced=False: the
        # ClusterNetworkPolicy CRD may be there, but the CNI ignores the kind
        # (kube-router, k3s's controller).
        self.cni = cni
        self.kcnp_enforced = kcnp_enforced

    def kcnp_served(self) -> bool:
        return ("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, KCNP_CRD) in self._objects

    def _check_served(self, key: tuple, verb: str) -> None:
        if key[0] == CILIUM_API and self.cni != "cilium":
            raise api_error(404, f"{verb} {key[1]}/{key[3]}: the server does not serve {CILIUM_API} {key[1]}")
        if key[1] == KCNP_KIND and (key[0] not in {f"{KCNP_GROUP}/{v}" for v in KCNP_VERSIONS}
                                    or not self.kcnp_served()):
            raise api_error(404, f"{verb} {key[1]}/{key[3]}: the server does not serve {key[0]} {key[1]}")
        super()._check_served(key, verb)

    def _admit(self, obj: dict, ns: str | None) -> None:
        super()._admit(obj, ns)
        if obj["kind"] == CNP_KIND:
            _validate_cnp(obj)
        elif obj["kind"] == KCNP_KIND:
            # The CRD's schema and CEL rules, as the engine checks them.
            try:
                check_cluster_policy({k: v for k, v in obj.items() if k != "status"})
            except ManifestError as e:
                raise api_error(422, f'{KCNP_KIND}.{KCNP_GROUP} "{obj["metadata"]["name"]}" is invalid: '
                                     f"{str(e).split(': ', 1)[-1]}") from None
