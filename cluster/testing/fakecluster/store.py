"""The fake cluster's API server: an object store, its verbs, and the call record.

* an object store keyed by (apiVersion, kind, namespace, name), with
  ``uid``, ``resourceVersion`` and ``generation`` set as the API server
  sets them;
* field ownership (``managedFields``), as the API server keeps it, for what
  a restore relies on (sigs.k8s.io/structured-merge-diff/v4 merge/update.go:
  ``Updater.Apply``, ``prune``, ``Updater.Update``): ``apply`` is a
  server-side apply by our field manager, with force: it merges our
  configuration into the live object, removes a field we applied last time
  and no longer apply only when no other applier owns it, and never removes
  what another manager added (a ``kubectl label`` or ``kubectl edit``);
  forced, it takes over the fields whose values it changes. ``create`` and
  ``update`` (a PUT: the object as given, nothing else kept) give their
  manager, as an Update operation, the fields they add or change, and take
  every field they remove away from whoever owned it. Lists are atomic (one
  field), as every list of a NetworkPolicy is; maps are owned key by key.
  Applying what is already there changes nothing, resourceVersion included;
  ``as_manager(name)`` writes as another field manager;
* ``create`` refuses an existing object and ``update`` a stale
  ``resourceVersion`` or another ``uid`` with 409 (``KubeConflict``), the
  API server's optimistic concurrency (k8s.io/apiserver pkg/registry/
  generic/registry/store.go: Create's AlreadyExists, Update's "the object
  has been modified"; pkg/registry/rest/update.go: the body's uid is a
  precondition); ``delete`` with ``uid``/``resource_version`` deletes only
  that object as it was (DeleteOptions.preconditions), else 409;
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
from dataclasses import dataclass, replace
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


WRITES = ("apply", "create", "update", "delete")


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
    # What a delete or an update required of the live object: (("uid", ...), ("resourceVersion", ...)).
    preconditions: tuple = ()


def _preconditions(uid: str | None, resource_version: str | None) -> tuple:
    return tuple((k, v) for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v)


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


# Maps the API's schema marks atomic (``x-kubernetes-map-type: atomic``):
# a LabelSelector is one field, replaced whole by whoever writes it (the
# real API server: a server-side apply of ours takes back a podSelector
# that a ``kubectl edit`` widened, and drops the key it added).
ATOMIC_MAPS = {"NetworkPolicy": {("spec", "podSelector")},
               **{kind: {("spec", "selector")} for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                                                            "Job")}}


def _merged(live, config, atomic=frozenset(), path=()):
    """``config`` merged over ``live``: maps key by key, anything else
    (scalars, lists, atomic maps) replaced."""
    if isinstance(live, dict) and isinstance(config, dict) and path not in atomic:
        out = dict(live)
        for k, v in config.items():
            out[k] = _merged(live.get(k), v, atomic, path + (k,))
        return out
    return copy_object(config)


# --------------------------------------------------------------------------
# Field ownership

Path = tuple  # a field: the keys from the object's top down
Managers = dict  # (manager, operation) -> the set of paths it owns
# What the API server sets itself: nobody's field.
_SERVER_META = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                          "deletionTimestamp", "managedFields", "selfLink"})


def fields(obj: dict | None) -> dict[Path, object]:
    """The fields a manager can own, with their values: every leaf of the
    object (a scalar, a list, an empty or atomic map), below apiVersion,
    kind, status and the metadata the server sets."""
    out: dict[Path, object] = {}
    atomic = ATOMIC_MAPS.get((obj or {}).get("kind"), set())

    def walk(value, path: Path) -> None:
        if isinstance(value, dict) and value and path not in atomic:
            for k, v in value.items():
                walk(v, path + (k,))
        else:
            out[path] = value

    for k, v in (obj or {}).items():
        if k == "metadata":
            for mk, mv in (v or {}).items():
                if mk not in _SERVER_META:
                    walk(mv, ("metadata", mk))
        elif k not in ("apiVersion", "kind", "status"):
            walk(v, (k,))
    return out


def _remove(obj: dict, path: Path) -> None:
    """Remove a field, and the maps its removal leaves empty (as the API
    server serializes them: an empty ``labels`` is no ``labels``), up to
    ``metadata`` or ``spec``."""
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 1, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def _changes(old: dict[Path, object], new: dict[Path, object]) -> tuple[set, set]:
    """(added or modified, removed) fields from ``old`` to ``new``."""
    changed = {p for p, v in new.items() if p not in old or old[p] != v}
    return changed, set(old) - set(new)


def _fields_v1(paths) -> dict:
    """A FieldsV1 document (``{"f:spec": {"f:podSelector": {}}}``) for a set of paths."""
    out: dict = {}
    for path in sorted(paths, key=lambda p: tuple(map(str, p))):
        node = out
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return out


def _conflict_message(conflicts: dict) -> str:
    parts = [f'conflict with "{m}" using {op}: .{".".join(map(str, p))}'
             for (m, op), paths in sorted(conflicts.items()) for p in sorted(paths, key=lambda p: tuple(map(str, p)))]
    return f"Apply failed with {len(parts)} conflict{'s' if len(parts) != 1 else ''}: " + "\n".join(parts)


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
        self._proxy: str | None = None
        self.clock = clock
        self.calls: list[Call] = []
        self._objects: dict[tuple[str, str, str | None, str], dict] = {}
        self._lock = threading.RLock()
        self._rv = 0
        # Who owns which fields of each object (its managedFields), with when
        # each manager last changed its fields; namespaces being terminated
        # (by clock).
        self._managers: dict[tuple, Managers] = {}
        self._managed_at: dict[tuple, dict] = {}
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

    def proxy(self) -> str | None:
        self._record(Call("proxy"))
        return self._proxy

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
        if verb == "update":
            call = replace(call, preconditions=_preconditions(obj["metadata"].get("uid"),
                                                              obj["metadata"].get("resourceVersion")))
        self._record(call)
        self._check_served(key, verb)
        return key

    def apply(self, obj: dict) -> dict:
        return self._apply_as(obj, FIELD_MANAGER, force=True)

    def create(self, obj: dict) -> dict:
        return self._create_as(obj, FIELD_MANAGER)

    def update(self, obj: dict) -> dict:
        return self._update_as(obj, FIELD_MANAGER)

    def as_manager(self, manager: str) -> "AsManager":
        """This cluster written to by another field manager (``kubectl-edit``,
        a GitOps controller): what someone else's change looks like."""
        return AsManager(self, manager)

    # -- the writes, by field manager ----------------------------------------

    def _apply_as(self, obj: dict, manager: str, *, force: bool) -> dict:
        key = self._write_key(obj, "apply")
        with self._lock:
            self._reap()
            old = self._objects.get(key)
            config = copy_object(obj)
            # A resourceVersion in the configuration is a precondition on an
            # object that exists; one that does not is created regardless
            # (as the API server does).
            rv = config["metadata"].pop("resourceVersion", None)
            if rv and old is not None and rv != old["metadata"]["resourceVersion"]:
                raise self._modified(key)
            me = (manager, "Apply")
            managers = {m: set(paths) for m, paths in self._managers.get(key, {}).items()}
            merged = _merged(old or {}, config, ATOMIC_MAPS.get(key[1], set()))
            applied = set(fields(config))
            # prune: what this manager applied last time and not now goes,
            # unless another applier claims it.
            claimed = set().union(*(p for m, p in managers.items() if m != me and m[1] == "Apply"))
            for path in managers.get(me, set()) - applied - claimed:
                _remove(merged, path)
            managers[me] = applied
            managers = self._owners(managers, me, fields(old), fields(merged), force=force)
            if old is not None and merged == old and managers == self._managers.get(key):
                return copy_object(old)  # nothing changes: the API server writes nothing
            return copy_object(self._apply(merged, key[2], managers=managers, changed=me))

    def _create_as(self, obj: dict, manager: str) -> dict:
        key = self._write_key(obj, "create")
        with self._lock:
            self._reap()
            if key in self._objects:
                raise api_error(409, f'{resource_name(key[1])} "{key[3]}" already exists', KubeConflict)
            if obj["metadata"].get("resourceVersion"):
                raise api_error(400, f"create {key[1]}/{key[3]}: resourceVersion should not be set on objects "
                                     "to be created")
            me = (manager, "Update")
            return copy_object(self._apply(obj, key[2], managers={me: set(fields(obj))}, changed=me))

    def _update_as(self, obj: dict, manager: str) -> dict:
        key = self._write_key(obj, "update")
        with self._lock:
            self._reap()
            old = self._objects.get(key)
            if old is None:
                raise api_error(404, f'{resource_name(key[1])} "{key[3]}" not found')
            uid = obj["metadata"].get("uid")
            if uid and uid != old["metadata"]["uid"]:
                raise self._precondition(key, "UID", uid, old["metadata"]["uid"])
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise self._modified(key)
            me = (manager, "Update")
            new = copy_object(obj)
            new["metadata"].pop("managedFields", None)
            managers = {m: set(paths) for m, paths in self._managers.get(key, {}).items()}
            managers = self._owners(managers, me, fields(old), fields(new), force=True)
            if fields(new) == fields(old) and managers == self._managers.get(key):
                return copy_object(old)  # a PUT that changes nothing writes nothing
            return copy_object(self._apply(new, key[2], managers=managers, changed=me))

    @staticmethod
    def _owners(managers: Managers, me: tuple, old: dict, new: dict, *, force: bool) -> Managers:
        """Who owns what once ``me`` has changed ``old`` into ``new``: the
        other managers lose the fields ``me`` changed (a conflict, unless
        forced) and every field that is gone; ``me`` gains what it changed
        (an Update; an Apply already owns its configuration)."""
        changed, removed = _changes(old, new)
        conflicts = {m: paths & changed for m, paths in managers.items() if m != me and paths & changed}
        if conflicts and not force:
            raise api_error(409, _conflict_message(conflicts), KubeConflict)
        out = {m: (paths - changed - removed) if m != me else paths for m, paths in managers.items()}
        if me[1] == "Update":
            out[me] = (out.get(me, set()) | changed) - removed
        return {m: paths for m, paths in out.items() if paths}

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

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               uid: str | None = None, resource_version: str | None = None) -> bool:
        self._record(Call("delete", api_version, kind, namespace, name,
                          preconditions=_preconditions(uid, resource_version)))
        with self._lock:
            self._reap()
            key = (api_version, kind, namespace if kind not in CLUSTER_SCOPED else None, name)
            live = self._objects.get(key)
            if live is not None and uid and uid != live["metadata"]["uid"]:
                raise self._precondition(key, "UID", uid, live["metadata"]["uid"])
            if live is not None and resource_version and resource_version != live["metadata"]["resourceVersion"]:
                raise self._precondition(key, "ResourceVersion", resource_version,
                                         live["metadata"]["resourceVersion"])
            if kind == "Namespace" and name in self._terminating:
                return True  # already being deleted: the API answers 200 again
            return self._delete(key)

    # -- test controls ------------------------------------------------------

    def calls_of(self, verb: str, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.verb == verb and (kind is None or c.kind == kind)]

    def writes(self, kind: str | None = None) -> list[Call]:
        """The calls that change an object (apply, create, update, delete), in order."""
        return [c for c in self.calls if c.verb in WRITES and (kind is None or c.kind == kind)]

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

    @staticmethod
    def _modified(key: tuple) -> KubeError:
        return api_error(409, f'Operation cannot be fulfilled on {resource_name(key[1])} "{key[3]}": the object '
                              "has been modified; please apply your changes to the latest version and try again",
                         KubeConflict)

    @staticmethod
    def _precondition(key: tuple, what: str, wanted: str, live: str) -> KubeError:
        return api_error(409, f'Operation cannot be fulfilled on {resource_name(key[1])} "{key[3]}": the {what} in '
                              f"the precondition ({wanted}) does not match the {what} in record ({live})",
                         KubeConflict)

    def _apply(self, obj: dict, ns: str | None, *, managers: Managers | None = None,
               changed: tuple | None = None) -> dict:
        """Store ``obj`` (the server's own write when ``managers`` is None:
        ownership stays as it was); ``changed``: the manager whose write it is."""
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
        if managers is not None:
            times = {m: t for m, t in self._managed_at.get(key, {}).items() if m in managers}
            if changed in managers:
                times[changed] = utc_now()
            self._managers[key], self._managed_at[key] = managers, times
        owners = self._managers.get(key) or {}
        meta["managedFields"] = [{"manager": m, "operation": op, "apiVersion": obj["apiVersion"],
                                  "time": self._managed_at.get(key, {}).get((m, op), utc_now()), "fieldsType": "FieldsV1",
                                  "fieldsV1": _fields_v1(paths)} for (m, op), paths in owners.items()]
        if not meta["managedFields"]:
            del meta["managedFields"]
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
                self._forget(k)
            obj["metadata"]["deletionTimestamp"] = utc_now()
            obj["status"] = {"phase": "Terminating"}
            self._bump(obj)
            self._terminating[name] = self.clock()
            self._removed(kind)
            return True
        self._objects.pop(key)
        self._forget(key)
        self._removed(kind)
        uid = obj["metadata"]["uid"]
        for k, child in list(self._objects.items()):
            if any(ref.get("uid") == uid for ref in child["metadata"].get("ownerReferences") or []):
                self._delete(k)
        return True

    def _forget(self, key: tuple) -> None:
        """An object is gone: so is who owned its fields."""
        self._managers.pop(key, None)
        self._managed_at.pop(key, None)


class AsManager:
    """The fake cluster written to by another field manager: ``apply`` (a
    forced server-side apply, as ``ClientKube``'s), ``create`` and ``update``
    as that manager; reads as anyone's."""

    def __init__(self, store: Store, manager: str):
        self.store, self.manager = store, manager

    def apply(self, obj: dict, *, force: bool = True) -> dict:
        return self.store._apply_as(obj, self.manager, force=force)

    def create(self, obj: dict) -> dict:
        return self.store._create_as(obj, self.manager)

    def update(self, obj: dict) -> dict:
        return self.store._update_as(obj, self.manager)

    def __getattr__(self, name):
        return getattr(self.store, name)
