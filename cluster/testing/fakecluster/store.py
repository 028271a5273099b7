"""The fake cluster's API server: an object store, its verbs, and the call record.

* an object store keyed by (apiVersion, kind, namespace, name); ``apply``
  replaces the object (server-side-apply-ish, with our field manager in
  ``managedFields``) and sets ``uid``, ``resourceVersion`` and ``generation``;
  applying what is already there (our last applied configuration, nothing
  of it changed since) is a no-op that keeps ``resourceVersion``, as the
  API server's apply is;
* ``create`` refuses an existing object and ``update`` a stale
  ``resourceVersion`` with 409 (``KubeConflict``), the API server's
  optimistic concurrency (k8s.io/apiserver pkg/registry/generic/registry/
  store.go: Create's AlreadyExists, Update's "the object has been modified");
* Namespaces get the ``kubernetes.io/metadata.name`` label, as the API
  server does. Deleting a namespace removes its content and leaves it
  ``Terminating`` (a ``deletionTimestamp``) until ``namespace_grace_s`` has
  passed on ``clock`` (the controllers' ``_reap``), then it is gone; what
  the API server refuses meanwhile is in admission.py;
* label selectors arrive as LabelSelector structures and are matched with
  the engine's selector semantics (never a selector string parsed again);
* ``list`` returns items carrying apiVersion and kind: the API server puts
  them on the list object only, and ``ClientKube``'s DynamicClient copies
  them onto every item (kubernetes/dynamic/resource.py, ResourceInstance),
  which is what crosses the seam (the contract scenario checks it on a real
  API server); use ``objects()`` to arrange or inspect state in a test
  without recording a call.

Every call is recorded in ``.calls`` (a list of ``Call``), in order.

What the rest of the cluster does hangs on hooks the store calls, each a
no-op here and overridden by the piece that models it (every piece is a
``Store`` subclass; ``FakeKube`` combines them): ``_inject_fault`` on each
call (faults.py), ``_check_served`` and ``_admit`` before a write
(cilium.py, admission.py), ``_written`` and ``_removed`` after one
(network.py: the CNI reprograms; controllers.py: workloads, pods,
namespaces), and ``_reap`` before every verb (controllers.py: what is due
by the clock).
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Mapping

from cluster import selectors
from cluster.errors import Invalid, KubeConflict, KubeError
from cluster.policy.engine.model import NS_NAME_LABEL
from cluster.seams.kube import FIELD_MANAGER

CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "APIService", "IPPool",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Installation",
    "TigeraStatus", "APIServer", "CiliumNode", "ClusterNetworkPolicy",
})


@dataclass(frozen=True)
class Call:
    """One call made to the fake, as the test wants to assert it."""

    verb: str
    api_version: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    label_selector: Mapping | None = None
    argv: tuple[str, ...] | None = None


def api_error(status: int, message: str, cls=KubeError) -> KubeError:
    e = cls(message)
    e.status = status
    return e


def resource_name(kind: str) -> str:
    """How the API server names a kind in its messages: ``leases.coordination.k8s.io``."""
    return {"Lease": "leases.coordination.k8s.io", "NetworkPolicy": "networkpolicies.networking.k8s.io",
            "Namespace": "namespaces", "Pod": "pods", "ConfigMap": "configmaps",
            "CiliumNetworkPolicy": "ciliumnetworkpolicies.cilium.io",
            "ClusterNetworkPolicy": "clusternetworkpolicies.policy.networking.k8s.io"}.get(kind, kind.lower() + "s")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_SCALARS = (str, int, float, bool, type(None))


def copy_object(obj):
    """``copy.deepcopy`` of an API object, JSON-like (dicts, lists, scalars)
    as the API server's own copies are: several times faster, which the
    tests that drive whole rollouts through the fake feel. Anything else is
    deep-copied as before."""
    t = type(obj)
    if t is dict:
        return {k: v if type(v) in _SCALARS else copy_object(v) for k, v in obj.items()}
    if t is list:
        return [v if type(v) in _SCALARS else copy_object(v) for v in obj]
    if t in _SCALARS:
        return obj
    return copy.deepcopy(obj)


def by_key(item) -> tuple:
    """Stored objects in the order the fake lists them: by their key, as strings."""
    return tuple(str(x) for x in item[0])


def _merged(live, config):
    """``config`` merged over ``live``: what an apply of ``config`` would leave."""
    if isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for k, v in config.items():
            out[k] = _merged(live.get(k), v)
        return out
    return copy_object(config)


# Label selectors (the LabelSelector structure crossing the Kube seam)


def selector_matches(selector, labels: dict) -> bool:
    """Match a LabelSelector mapping (``matchLabels``/``matchExpressions``)
    against labels, with the engine's LabelSelector semantics. A string is
    refused: the seam carries structures, and a second parser of the string
    form would be a second opinion on what a selector means."""
    if selector is None:
        return True
    if not isinstance(selector, Mapping):
        raise KubeError(f"label selector must be a LabelSelector mapping, got {type(selector).__name__} "
                        f"{selector!r}")
    try:
        return selectors.parse(selector, "labelSelector").matches(labels or {})
    except Invalid as e:
        raise KubeError(f"400 BadRequest: invalid label selector: label selector: {e}") from None


class Store:
    """The objects, the API verbs over them, and the record of every call."""

    def _init_store(self, context: str, server: str, clock: Callable[[], float]) -> None:
        self._context = context
        self._server = server
        self.clock = clock
        self.calls: list[Call] = []
        self._objects: dict[tuple[str, str, str | None, str], dict] = {}
        self._lock = threading.RLock()
        self._rv = 0
        # Our last applied configuration per object (what server-side apply's
        # managedFields remember), and namespaces being terminated (by clock).
        self._last_applied: dict[tuple, dict] = {}
        self._terminating: dict[str, float] = {}

    # -- hooks: the other pieces override these ------------------------------

    def _inject_fault(self, call: Call) -> None:
        """Raise for a call that is to fail (faults.py)."""

    def _check_served(self, key: tuple, verb: str) -> None:
        """Refuse a write of a kind the server does not serve (cilium.py)."""

    def _admit(self, obj: dict, ns: str | None) -> None:
        """Refuse what the API server would refuse (admission.py, cilium.py)."""

    def _written(self, obj: dict, old: dict | None) -> None:
        """After ``obj`` is stored (``old``: what it replaced, if anything)."""

    def _removed(self, kind: str) -> None:
        """After an object of ``kind`` is deleted (a Namespace: terminated)."""

    def _reap(self) -> None:
        """Before every verb: what has come due by the clock (controllers.py)."""

    # -- the Kube protocol --------------------------------------------------

    def context(self) -> str:
        self._record(Call("context"))
        return self._context

    def server(self) -> str:
        self._record(Call("server"))
        return self._server

    def _key_of(self, obj: dict, verb: str) -> tuple[tuple, Call]:
        if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind") \
                or not (obj.get("metadata") or {}).get("name"):
            raise KubeError(f"{verb}: the object needs apiVersion, kind and metadata.name")
        kind = obj["kind"]
        ns = None if kind in CLUSTER_SCOPED else (obj["metadata"].get("namespace") or "default")
        return (obj["apiVersion"], kind, ns, obj["metadata"]["name"]), Call(verb, obj["apiVersion"], kind, ns,
                                                                           obj["metadata"]["name"])

    def _write_key(self, obj: dict, verb: str) -> tuple:
        """The key of an object to write, once the call is recorded and its kind served."""
        key, call = self._key_of(obj, verb)
        self._record(call)
        self._check_served(key, verb)
        return key

    def apply(self, obj: dict) -> dict:
        key = self._write_key(obj, "apply")
        with self._lock:
            self._reap()
            old = self._objects.get(key)
            if old is not None and self._last_applied.get(key) == obj and _merged(old, obj) == old:
                # Server-side apply of what we applied last, nothing of it
                # changed since: the API server writes nothing.
                return copy_object(old)
            out = self._apply(obj, key[2])
            self._last_applied[key] = copy_object(obj)
            return copy_object(out)

    def create(self, obj: dict) -> dict:
        key = self._write_key(obj, "create")
        with self._lock:
            self._reap()
            if key in self._objects:
                raise api_error(409, f'{resource_name(key[1])} "{key[3]}" already exists', KubeConflict)
            if obj["metadata"].get("resourceVersion"):
                raise api_error(400, f"create {key[1]}/{key[3]}: resourceVersion should not be set on objects "
                                     "to be created")
            return copy_object(self._apply(obj, key[2]))

    def update(self, obj: dict) -> dict:
        key = self._write_key(obj, "update")
        with self._lock:
            self._reap()
            old = self._objects.get(key)
            if old is None:
                raise api_error(404, f'{resource_name(key[1])} "{key[3]}" not found')
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise api_error(409, f'Operation cannot be fulfilled on {resource_name(key[1])} "{key[3]}": the '
                                     "object has been modified; please apply your changes to the latest version "
                                     "and try again", KubeConflict)
            return copy_object(self._apply(obj, key[2]))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        self._record(Call("get", api_version, kind, namespace, name))
        with self._lock:
            self._reap()
            found = self._objects.get((api_version, kind, namespace if kind not in CLUSTER_SCOPED else None, name))
            return copy_object(found) if found is not None else None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: Mapping | None = None) -> list[dict]:
        self._record(Call("list", api_version, kind, namespace, None, label_selector=label_selector))
        with self._lock:
            self._reap()
            of_kind = [(key, o) for key, o in self._objects.items()
                       if key[0] == api_version and key[1] == kind and (namespace is None or key[2] == namespace)]
            out = [copy_object(o) for _, o in sorted(of_kind, key=by_key)
                   if selector_matches(label_selector, o["metadata"].get("labels") or {})]
        return out

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        self._record(Call("delete", api_version, kind, namespace, name))
        with self._lock:
            self._reap()
            key = (api_version, kind, namespace if kind not in CLUSTER_SCOPED else None, name)
            if kind == "Namespace" and name in self._terminating:
                return True  # already being deleted: the API answers 200 again
            return self._delete(key)

    # -- test controls ------------------------------------------------------

    def calls_of(self, verb: str, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.verb == verb and (kind is None or c.kind == kind)]

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        """Stored objects of a kind, without recording a call (for assertions)."""
        with self._lock:
            of_kind = [(key, o) for key, o in self._objects.items()
                       if key[1] == kind and (namespace is None or key[2] == namespace)]
            return [copy_object(o) for _, o in sorted(of_kind, key=by_key)]

    def pods(self, namespace: str | None = None) -> list[dict]:
        return self.objects("Pod", namespace)

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str | None,
                     status: dict) -> None:
        """Overwrite (merge) an object's status, e.g. a Pod that is not Ready yet."""
        with self._lock:
            obj = self._objects[(api_version, kind, namespace, name)]
            obj.setdefault("status", {}).update(copy_object(status))
            self._bump(obj)

    # -- internals ----------------------------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self._inject_fault(call)

    def _bump(self, obj: dict) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _apply(self, obj: dict, ns: str | None) -> dict:
        obj = copy_object(obj)
        kind = obj["kind"]
        meta = obj["metadata"]
        if ns is not None:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        self._admit(obj, ns)
        if kind == "Namespace":
            meta.setdefault("labels", {})[NS_NAME_LABEL] = meta["name"]
            obj.setdefault("status", {"phase": "Active"})
            if meta["name"] in self._terminating:
                obj["status"] = {"phase": "Terminating"}
        key = (obj["apiVersion"], kind, ns, meta["name"])
        old = self._objects.get(key)
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            if old["metadata"].get("deletionTimestamp"):
                meta["deletionTimestamp"] = old["metadata"]["deletionTimestamp"]
            same = {k: v for k, v in old.items() if k not in ("metadata", "status")} == \
                {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            meta["generation"] = old["metadata"].get("generation", 1) + (0 if same else 1)
            if "status" in old and "status" not in obj:
                obj["status"] = old["status"]
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = utc_now()
            meta["generation"] = 1
        meta["managedFields"] = [{"manager": FIELD_MANAGER, "operation": "Apply",
                                  "apiVersion": obj["apiVersion"], "time": utc_now()}]
        self._bump(obj)
        self._objects[key] = obj
        self._written(obj, old)
        return obj

    def _delete(self, key) -> bool:
        obj = self._objects.get(key)
        if obj is None:
            return False
        _, kind, _, name = key
        if kind == "Namespace":
            # The namespace controller empties it first, then removes it;
            # until then it is Terminating (k8s.io/kubernetes
            # pkg/controller/namespace/deletion).
            for k in [k for k in self._objects if k[2] == name]:
                self._objects.pop(k)
                self._last_applied.pop(k, None)
            obj["metadata"]["deletionTimestamp"] = utc_now()
            obj["status"] = {"phase": "Terminating"}
            self._bump(obj)
            self._terminating[name] = self.clock()
            self._removed(kind)
            return True
        self._objects.pop(key)
        self._last_applied.pop(key, None)
        self._removed(kind)
        uid = obj["metadata"]["uid"]
        for k, child in list(self._objects.items()):
            if any(ref.get("uid") == uid for ref in child["metadata"].get("ownerReferences") or []):
                self._delete(k)
        return True
