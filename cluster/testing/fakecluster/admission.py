"""What the fake cluster's API server refuses before it stores an object.

* objects in a missing namespace are refused (404); nothing new may be
  created in a namespace that is being deleted (403), as the namespace
  lifecycle admission plugin refuses;
* a Pod in a namespace whose ``default`` ServiceAccount does not exist yet
  is refused with the ServiceAccount admission plugin's 403
  (plugin/pkg/admission/serviceaccount/admission.go); controllers.py
  creates that ServiceAccount;
* Leases (coordination.k8s.io/v1) are validated as the API server does:
  MicroTime timestamps, a positive ``leaseDurationSeconds``;
* NetworkPolicies are validated as the API server would (422 on bad input).

CiliumNetworkPolicies are validated in cilium.py, against the CRD's schema.
"""

from __future__ import annotations

import re

from cluster.errors import KubeError, ManifestError
from cluster.policy.engine.compile import compile_policy
from cluster.testing.fakecluster.store import Store, api_error, resource_name

_MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _validate_lease(obj: dict) -> None:
    """What the API server checks on a Lease (k8s.io/kubernetes
    pkg/apis/coordination/validation; MicroTime is RFC 3339 with
    microseconds, metav1.RFC3339Micro)."""
    spec = obj.get("spec") or {}
    name = obj["metadata"]["name"]
    for key in ("acquireTime", "renewTime"):
        if spec.get(key) is not None and not (isinstance(spec[key], str) and _MICROTIME.match(spec[key])):
            raise api_error(422, f'Lease.coordination.k8s.io "{name}" is invalid: spec.{key}: {spec[key]!r} is '
                                 "not a MicroTime (2006-01-02T15:04:05.000000Z)")
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d <= 0):
        raise api_error(422, f'Lease.coordination.k8s.io "{name}" is invalid: spec.leaseDurationSeconds: '
                             "must be greater than 0")
    t = spec.get("leaseTransitions")
    if t is not None and (not isinstance(t, int) or t < 0):
        raise api_error(422, f'Lease.coordination.k8s.io "{name}" is invalid: spec.leaseTransitions: must be >= 0')


class Admission(Store):
    """The namespace lifecycle and ServiceAccount admission plugins, and the
    validation of the built-in kinds the project writes."""

    def _admit(self, obj: dict, ns: str | None) -> None:
        kind = obj["kind"]
        meta = obj["metadata"]
        if ns is not None:
            if ("v1", "Namespace", None, ns) not in self._objects:
                raise api_error(404, f'namespaces "{ns}" not found (applying {kind} {ns}/{meta["name"]})')
            if ns in self._terminating and (obj["apiVersion"], kind, ns, meta["name"]) not in self._objects:
                raise api_error(403, f'{resource_name(kind)} "{meta["name"]}" is forbidden: unable to create new '
                                     f"content in namespace {ns} because it is being terminated")
            if kind == "Pod" and ("v1", kind, ns, meta["name"]) not in self._objects \
                    and ("v1", "ServiceAccount", ns, "default") not in self._objects:
                raise api_error(403, f'pods "{meta["name"]}" is forbidden: error looking up service account '
                                     f'{ns}/default: serviceaccount "default" not found')
        if kind == "Lease":
            _validate_lease(obj)
        if kind == "NetworkPolicy":
            try:
                compile_policy(obj)
            except ManifestError as e:
                raise KubeError(f"NetworkPolicy.networking.k8s.io \"{meta['name']}\" is invalid: {e}") from None
        super()._admit(obj, ns)
