"""One short scenario through the Kube seam, for the fake and the real cluster alike.

``scenario`` drives a ``Kube`` through the calls the rollout depends on and
returns what the seam answered, reduced to facts that must hold on any
conforming API server (no uids or timestamps). ``tests/seams/test_kube_contract.py``
runs it against ``FakeKube``; ``tests/e2e/test_kube_contract_e2e.py`` runs it
against the real test cluster through ``ClientKube`` and compares both with
``EXPECTED`` and with each other.

Everything happens in one throwaway namespace, deleted at the end.
"""

from __future__ import annotations

import time
from typing import Callable

from cluster.errors import KubeConflict, KubeError
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.live.observe.poll import poll_until

NP = "networking.k8s.io/v1"
LEASE = "coordination.k8s.io/v1"


def _policy(ns: str, name: str, labels: dict, ports: list[int]) -> dict:
    return {"apiVersion": NP, "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": {**labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
            "spec": {"podSelector": {"matchLabels": {"app": name}}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": p} for p in ports]}]}}


def _lease(ns: str, holder: str) -> dict:
    return {"apiVersion": LEASE, "kind": "Lease", "metadata": {"name": "contract", "namespace": ns},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60,
                     "renewTime": "2026-01-01T00:00:00.000000Z"}}


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except KubeConflict:
        return "conflict (409)"
    except KubeError as e:
        return f"error ({e.status})"
    return "ok"


def scenario(kube, ns: str, *, sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic, gone_within_s: float = 120.0) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    live_ns = kube.apply({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": ns, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}}})
    out.append(("the namespace carries its name label",
                (live_ns["metadata"].get("labels") or {}).get("kubernetes.io/metadata.name") == ns))
    def eventually(check: Callable[[], bool], within_s: float, interval_s: float) -> bool:
        return poll_until(lambda: (check(), ""), timeout_s=within_s, interval_s=interval_s, clock=clock,
                          sleep=sleep).done

    out.append(("the controller manager gives it a default ServiceAccount (Pods need it)",
                eventually(lambda: kube.get("v1", "ServiceAccount", "default", ns) is not None, 60.0, 0.5)))
    a = kube.apply(_policy(ns, "a", {"app": "x", "tier": "t1"}, [80]))
    kube.apply(_policy(ns, "b", {"app": "y"}, [81]))
    out.append(("apply returns the live object", {k: k in a["metadata"] for k in ("uid", "resourceVersion",
                                                                                  "generation")}))
    again = kube.apply(_policy(ns, "a", {"app": "x", "tier": "t1"}, [80]))
    out.append(("a no-op apply keeps resourceVersion", again["metadata"]["resourceVersion"] ==
                a["metadata"]["resourceVersion"]))
    changed = kube.apply(_policy(ns, "a", {"app": "x", "tier": "t1"}, [8080]))
    out.append(("a changed spec moves resourceVersion and generation",
                (changed["metadata"]["resourceVersion"] != a["metadata"]["resourceVersion"],
                 changed["metadata"]["generation"] == a["metadata"]["generation"] + 1)))

    def names(selector):
        return sorted(p["metadata"]["name"] for p in kube.list(NP, "NetworkPolicy", ns, selector))

    def expr(key, op, *values):
        return {"key": key, "operator": op, **({"values": list(values)} if values else {})}

    out.append(("selector: matchLabels app=x", names({"matchLabels": {"app": "x"}})))
    out.append(("selector: app In (x, y)", names({"matchExpressions": [expr("app", "In", "x", "y")]})))
    out.append(("selector: app NotIn (y)", names({"matchExpressions": [expr("app", "NotIn", "y")]})))
    out.append(("selector: tier Exists", names({"matchExpressions": [expr("tier", "Exists")]})))
    out.append(("selector: tier DoesNotExist", names({"matchExpressions": [expr("tier", "DoesNotExist")]})))
    out.append(("selector: matchLabels AND matchExpressions",
                names({"matchLabels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                       "matchExpressions": [expr("app", "NotIn", "x")]})))
    out.append(("list items carry apiVersion and kind (the client copies them from the list)",
                [(i.get("apiVersion"), i.get("kind")) for i in kube.list(NP, "NetworkPolicy", ns)]))
    out.append(("get of an absent object", kube.get(NP, "NetworkPolicy", "absent", ns)))

    first = kube.create(_lease(ns, "one"))
    out.append(("create of an existing object", _outcome(lambda: kube.create(_lease(ns, "two")))))
    newer = {**first, "spec": {**first["spec"], "holderIdentity": "two"}}
    out.append(("update with the live resourceVersion", _outcome(lambda: kube.update(newer))))
    out.append(("update with a stale resourceVersion", _outcome(lambda: kube.update(newer))))
    out.append(("the lease holder after the updates",
                kube.get(LEASE, "Lease", "contract", ns)["spec"]["holderIdentity"]))

    out.append(("delete of an existing object", kube.delete(NP, "NetworkPolicy", "b", ns)))
    out.append(("delete of an absent object", kube.delete(NP, "NetworkPolicy", "b", ns)))

    out.append(("delete of the namespace", kube.delete("v1", "Namespace", ns)))
    after = kube.get("v1", "Namespace", ns)
    out.append(("right after: terminating or gone",
                after is None or bool((after.get("metadata") or {}).get("deletionTimestamp"))))
    out.append(("then gone", eventually(lambda: kube.get("v1", "Namespace", ns) is None, gone_within_s, 1.0)))
    return out


EXPECTED: list[tuple[str, object]] = [
    ("the namespace carries its name label", True),
    ("the controller manager gives it a default ServiceAccount (Pods need it)", True),
    ("apply returns the live object", {"uid": True, "resourceVersion": True, "generation": True}),
    ("a no-op apply keeps resourceVersion", True),
    ("a changed spec moves resourceVersion and generation", (True, True)),
    ("selector: matchLabels app=x", ["a"]),
    ("selector: app In (x, y)", ["a", "b"]),
    ("selector: app NotIn (y)", ["a"]),
    ("selector: tier Exists", ["a"]),
    ("selector: tier DoesNotExist", ["b"]),
    ("selector: matchLabels AND matchExpressions", ["b"]),
    ("list items carry apiVersion and kind (the client copies them from the list)",
     [(NP, "NetworkPolicy"), (NP, "NetworkPolicy")]),
    ("get of an absent object", None),
    ("create of an existing object", "conflict (409)"),
    ("update with the live resourceVersion", "ok"),
    ("update with a stale resourceVersion", "conflict (409)"),
    ("the lease holder after the updates", "two"),
    ("delete of an existing object", True),
    ("delete of an absent object", False),
    ("delete of the namespace", True),
    ("right after: terminating or gone", True),
    ("then gone", True),
]
