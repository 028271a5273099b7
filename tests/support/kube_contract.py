"""One short scenario through the Kube seam, for the fake and the real cluster alike.

``scenario`` drives a ``Kube`` through the calls the rollout depends on and
returns what the seam answered, reduced to facts that must hold on any
conforming API server (no uids or timestamps). ``as_manager(name)`` gives a
``Kube`` writing as another field manager (``kubectl-label``,
``kubectl-edit``): what restore relies on about field ownership (server-side
apply keeps what another manager added; a PUT does not) and about the
uid and resourceVersion preconditions is checked on both. ``tests/seams/test_kube_contract.py``
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


def _owned(obj: dict) -> dict:
    """The facts of a policy field ownership decides: its labels, its
    podSelector, its ports, and who manages it (manager, operation)."""
    return {"labels": (obj["metadata"].get("labels") or {}),
            "podSelector": obj["spec"].get("podSelector"),
            "ports": [p["port"] for rule in obj["spec"].get("ingress") or [] for p in rule.get("ports") or []],
            "managers": sorted({(f["manager"], f["operation"]) for f in obj["metadata"].get("managedFields") or []})}


def _ownership(kube, as_manager: Callable[[str], object], ns: str) -> list[tuple[str, object]]:
    """Server-side apply against someone else's changes, a PUT, and the
    preconditions of updates and deletes (structured-merge-diff's rules, as
    the API server applies them: sigs.k8s.io/structured-merge-diff/v4
    merge/update.go)."""
    out: list[tuple[str, object]] = []
    ours = _policy(ns, "c", {"x": "1"}, [80, 81])

    def get():
        return kube.get(NP, "NetworkPolicy", "c", ns)

    kube.apply(ours)
    live = get()
    live["metadata"]["labels"]["owner"] = "team-b"  # kubectl label
    as_manager("kubectl-label").update(live)
    live = get()
    live["spec"]["podSelector"] = {"matchLabels": {"app": "c", "tier": "any"}}  # kubectl edit
    as_manager("kubectl-edit").update(live)
    out.append(("another manager's label and podSelector", _owned(get())))
    kube.apply(ours)
    out.append(("our apply again: the label stays, the podSelector (atomic) is ours again", _owned(get())))
    kube.apply(_policy(ns, "c", {}, [80]))
    out.append(("our apply without x and port 81: what only we applied goes, the other's label stays",
                _owned(get())))
    live = get()
    meta = live["metadata"]
    snapshot = {**ours, "metadata": {**ours["metadata"], "uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}}
    stale = {**snapshot, "metadata": {**snapshot["metadata"], "resourceVersion": str(int(meta["resourceVersion"]) - 1)}}
    other = {**snapshot, "metadata": {**snapshot["metadata"], "uid": "00000000-0000-0000-0000-000000000000"}}
    out.append(("a PUT with a stale resourceVersion", _outcome(lambda: kube.update(stale))))
    out.append(("a PUT naming another uid", _outcome(lambda: kube.update(other))))
    put = kube.update(snapshot)
    out.append(("a PUT of the snapshot: exactly it", _owned(put)))
    again = kube.update({**snapshot, "metadata": {**snapshot["metadata"],
                                                  "resourceVersion": put["metadata"]["resourceVersion"]}})
    out.append(("a PUT that changes nothing keeps resourceVersion",
                again["metadata"]["resourceVersion"] == put["metadata"]["resourceVersion"]))
    uid, rv = put["metadata"]["uid"], put["metadata"]["resourceVersion"]
    out.append(("a delete naming another uid", _outcome(lambda: kube.delete(
        NP, "NetworkPolicy", "c", ns, uid="00000000-0000-0000-0000-000000000000"))))
    out.append(("a delete with a stale resourceVersion", _outcome(lambda: kube.delete(
        NP, "NetworkPolicy", "c", ns, uid=uid, resource_version=str(int(rv) - 1)))))
    out.append(("a delete with the uid and resourceVersion read", kube.delete(NP, "NetworkPolicy", "c", ns, uid=uid,
                                                                             resource_version=rv)))
    out.append(("a delete with preconditions of an absent object", kube.delete(NP, "NetworkPolicy", "c", ns,
                                                                               uid=uid, resource_version=rv)))
    made = kube.apply({**ours, "metadata": {**ours["metadata"], "resourceVersion": "12345"}})
    out.append(("an apply with a resourceVersion creates an absent object regardless (no guard against a take-over)",
                made["metadata"]["name"]))
    out.append(("a create where it exists", _outcome(lambda: kube.create(_policy(ns, "c", {}, [80])))))
    return out


def scenario(kube, ns: str, *, as_manager: Callable[[str], object], sleep: Callable[[float], None] = time.sleep,
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

    out += _ownership(kube, as_manager, ns)

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
    ("another manager's label and podSelector",
     {"labels": {"x": "1", "owner": "team-b", MANAGED_BY_LABEL: MANAGED_BY_VALUE},
      "podSelector": {"matchLabels": {"app": "c", "tier": "any"}}, "ports": [80, 81],
      "managers": [("dashi-cluster", "Apply"), ("kubectl-edit", "Update"), ("kubectl-label", "Update")]}),
    ("our apply again: the label stays, the podSelector (atomic) is ours again",
     {"labels": {"x": "1", "owner": "team-b", MANAGED_BY_LABEL: MANAGED_BY_VALUE},
      "podSelector": {"matchLabels": {"app": "c"}}, "ports": [80, 81],
      "managers": [("dashi-cluster", "Apply"), ("kubectl-label", "Update")]}),
    ("our apply without x and port 81: what only we applied goes, the other's label stays",
     {"labels": {"owner": "team-b", MANAGED_BY_LABEL: MANAGED_BY_VALUE},
      "podSelector": {"matchLabels": {"app": "c"}}, "ports": [80],
      "managers": [("dashi-cluster", "Apply"), ("kubectl-label", "Update")]}),
    ("a PUT with a stale resourceVersion", "conflict (409)"),
    ("a PUT naming another uid", "conflict (409)"),
    ("a PUT of the snapshot: exactly it",
     {"labels": {"x": "1", MANAGED_BY_LABEL: MANAGED_BY_VALUE},
      "podSelector": {"matchLabels": {"app": "c"}}, "ports": [80, 81],
      "managers": [("dashi-cluster", "Apply"), ("dashi-cluster", "Update")]}),
    ("a PUT that changes nothing keeps resourceVersion", True),
    ("a delete naming another uid", "conflict (409)"),
    ("a delete with a stale resourceVersion", "conflict (409)"),
    ("a delete with the uid and resourceVersion read", True),
    ("a delete with preconditions of an absent object", False),
    ("an apply with a resourceVersion creates an absent object regardless (no guard against a take-over)", "c"),
    ("a create where it exists", "conflict (409)"),
    ("delete of an existing object", True),
    ("delete of an absent object", False),
    ("delete of the namespace", True),
    ("right after: terminating or gone", True),
    ("then gone", True),
]
