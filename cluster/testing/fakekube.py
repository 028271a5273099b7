"""An in-memory cluster behind the ``Kube`` seam, for tests and benchmarks.

``FakeKube`` behaves like a small k3d cluster as far as this project looks:

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
  server does; objects in a missing namespace are refused (404). Deleting a
  namespace removes its content and leaves it ``Terminating`` (a
  ``deletionTimestamp``) until ``namespace_grace_s`` has passed on ``clock``,
  then it is gone; nothing new may be created in it meanwhile (403), as the
  namespace lifecycle admission plugin refuses;
* a new namespace gets its ``default`` ServiceAccount, as
  kube-controller-manager's serviceaccount controller creates it:
  ``service_account_delay_s`` later on ``clock`` (0: at once). Until then
  a Pod in it is refused with the ServiceAccount admission plugin's 403
  (plugin/pkg/admission/serviceaccount/admission.go); ``service_account_delay_s
  =None`` is a cluster whose controller manager is down: never;
* label selectors arrive as LabelSelector structures and are matched with
  the engine's selector semantics (never a selector string parsed again);
* Leases (coordination.k8s.io/v1) are validated as the API server does:
  MicroTime timestamps, a positive ``leaseDurationSeconds``;
* ``list`` returns items carrying apiVersion and kind: the API server puts
  them on the list object only, and ``ClientKube``'s DynamicClient copies
  them onto every item (kubernetes/dynamic/resource.py, ResourceInstance),
  which is what crosses the seam (the contract scenario checks it on a real
  API server); use ``objects()`` to arrange or inspect state in a test
  without recording a call;
* NetworkPolicies are validated as the API server would (422 on bad input);
* workloads (the kinds of ``WORKLOAD_KINDS``) are "rolled out" at once:
  their status says ready and Running+Ready Pods appear with real-looking
  names (``web-6d4f9b7c8d-x2k7p``, ``db-0``), the template's labels, and
  addresses 10.42.0.N;
* seeded like k3s: namespaces default/kube-system/kube-public/kube-node-lease,
  one Ready Node, CoreDNS (``k8s-app=kube-dns``, UDP+TCP 53) and the
  ``default/kubernetes`` Service with its Endpoints and EndpointSlice pointing
  at a TEST-NET address (``API_ADDRESS``, data only, never contacted);
* ``exec`` of ``agnhost connect`` answers like agnhost: exit 0 when the
  connection is made, exit 1 and ``TIMEOUT`` when a policy drops it,
  ``REFUSED`` when it gets through but nothing listens, ``DNS`` when a name
  does not resolve. Whether a policy drops it is decided by the project's
  engine over the NetworkPolicies the simulated CNI has programmed;
* ``cni="cilium"``: a Cilium cluster as far as policies go: a CiliumNode
  per node (so the CNI is detected), the cilium.io/v2 CiliumNetworkPolicy
  kind served (elsewhere applying one fails, as on a cluster without the
  CRD), and Cilium's identities: the API server is the entity
  kube-apiserver, which no ipBlock selects. The CiliumNetworkPolicies are
  enforced by this module's own small model (``_cnp_allows``), not by the
  engine: an endpoint selected by one with egress rules is default-deny for
  egress, and the allows of CiliumNetworkPolicies and NetworkPolicies add
  up. Only the fields it models are accepted (endpointSelector,
  egress[].toEntities, egress[].toPorts[].ports); others are refused, so a
  test never runs against a model that ignores part of its policy.

Knobs for the failure modes a rollout must survive:

* ``enforce=False``: a CNI that enforces nothing (k3s with flannel and the
  policy controller off);
* ``lag_probes`` / ``lag_seconds``: a CNI that is slow to apply: a policy
  change takes effect only after that many probes or that much time (by
  ``clock``), so a prober that does not re-poll sees stale traffic;
* ``fail(verb, kind, ...)``: raise ``KubeError`` (or any exception, e.g.
  ``KeyboardInterrupt`` for a Ctrl-C) on matching calls;
* ``stop_api()`` / ``start_api()``: the API server goes away and comes back;
  meanwhile every call but ``context``/``server`` (kubeconfig data, no
  request) raises ``KubeUnreachable``, as ``ClientKube`` does for a refused
  connection;
* ``exec_latency`` / ``time_scale``: make probes take (simulated) time, for
  the fan-out benchmark: each exec costs ``exec_latency`` seconds, and a
  dropped connection additionally waits ``time_scale`` x agnhost's timeout.

Every call is recorded in ``.calls`` (a list of ``Call``), in order.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping

from cluster.errors import KubeConflict, KubeError, KubeUnreachable, ManifestError
from cluster.live.observe.probe import BATCH_SCRIPT, SHELL
from cluster.policy.engine import NS_NAME_LABEL, Endpoint, Engine, Port, compile_policy, parse_selector
from cluster.policy.manifests import WORKLOAD_KINDS
from cluster.seams.kube import FIELD_MANAGER, ExecResult

# TEST-NET-1 (RFC 5737): documentation addresses, used here as data only.
# Deliberately not the profile's offline stand-in (192.0.2.10), so tests can
# tell live addresses from offline ones.
API_ADDRESS = "192.0.2.20"
API_PORT = 6443
POD_NETWORK = ipaddress.ip_network("10.42.0.0/16")  # k3s's default cluster CIDR
FIRST_POD_IP = ipaddress.ip_address("10.42.0.10")


@lru_cache(maxsize=4096)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "APIService", "IPPool",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Installation",
    "TigeraStatus", "APIServer", "CiliumNode",
})
CILIUM_API = "cilium.io/v2"
CNP_KIND = "CiliumNetworkPolicy"
POLICY_KINDS = ("NetworkPolicy", CNP_KIND)
# The entities the CRD accepts (its enum); the fake enforces kube-apiserver.
_CILIUM_ENTITIES = frozenset({"all", "world", "cluster", "cluster-mesh", "host", "init", "ingress", "unmanaged",
                              "remote-node", "health", "none", "kube-apiserver"})
# The alphabet Kubernetes uses for generated name suffixes (no vowels, no
# look-alike characters), so fake names look like real ones.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


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


@dataclass
class _Failure:
    verb: str
    kind: str | None
    name: str | None
    namespace: str | None
    after: int
    times: int | None
    exc: BaseException | Callable[[Call], BaseException]
    seen: int = 0
    raised: int = 0


def _safe_suffix(seed: str, n: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:n])


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _resource_name(kind: str) -> str:
    """How the API server names a kind in its messages: ``leases.coordination.k8s.io``."""
    return {"Lease": "leases.coordination.k8s.io", "NetworkPolicy": "networkpolicies.networking.k8s.io",
            "Namespace": "namespaces", "Pod": "pods", "ConfigMap": "configmaps",
            CNP_KIND: "ciliumnetworkpolicies.cilium.io"}.get(kind, kind.lower() + "s")


# --------------------------------------------------------------------------
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
        return parse_selector(selector, "", "label selector", "labelSelector").matches(labels or {})
    except ManifestError as e:
        raise KubeError(f"400 BadRequest: invalid label selector: {e}") from None


_MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _validate_lease(obj: dict) -> None:
    """What the API server checks on a Lease (k8s.io/kubernetes
    pkg/apis/coordination/validation; MicroTime is RFC 3339 with
    microseconds, metav1.RFC3339Micro)."""
    spec = obj.get("spec") or {}
    name = obj["metadata"]["name"]
    for key in ("acquireTime", "renewTime"):
        if spec.get(key) is not None and not (isinstance(spec[key], str) and _MICROTIME.match(spec[key])):
            raise _err(422, f'Lease.coordination.k8s.io "{name}" is invalid: spec.{key}: {spec[key]!r} is not '
                            "a MicroTime (2006-01-02T15:04:05.000000Z)")
    d = spec.get("leaseDurationSeconds")
    if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d <= 0):
        raise _err(422, f'Lease.coordination.k8s.io "{name}" is invalid: spec.leaseDurationSeconds: '
                        "must be greater than 0")
    t = spec.get("leaseTransitions")
    if t is not None and (not isinstance(t, int) or t < 0):
        raise _err(422, f'Lease.coordination.k8s.io "{name}" is invalid: spec.leaseTransitions: must be >= 0')


def _validate_cnp(obj: dict) -> None:
    """What the CRD's schema refuses (ciliumnetworkpolicies.yaml: port is a
    string, entities an enum), and what this fake does not model."""
    name = obj["metadata"]["name"]

    def invalid(msg: str) -> KubeError:
        return _err(422, f'{CNP_KIND}.cilium.io "{name}" is invalid: {msg}')

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


def _cnp_selects(cnp: dict, pod: dict) -> bool:
    """Does a CiliumNetworkPolicy with egress rules select this pod?"""
    spec = cnp.get("spec") or {}
    return bool(spec.get("egress")) and cnp["metadata"].get("namespace") == pod["metadata"]["namespace"] \
        and selector_matches(spec.get("endpointSelector") or {}, pod["metadata"].get("labels") or {})


def _cnp_allows(cnp: dict, to_api: bool, port: int, proto: str) -> bool:
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


def _err(status: int, message: str, cls=KubeError) -> KubeError:
    e = cls(message)
    e.status = status
    return e


_SCALARS = (str, int, float, bool, type(None))


def _copy(obj):
    """``copy.deepcopy`` of an API object, JSON-like (dicts, lists, scalars)
    as the API server's own copies are: several times faster, which the
    tests that drive whole rollouts through the fake feel. Anything else is
    deep-copied as before."""
    t = type(obj)
    if t is dict:
        return {k: v if type(v) in _SCALARS else _copy(v) for k, v in obj.items()}
    if t is list:
        return [v if type(v) in _SCALARS else _copy(v) for v in obj]
    if t in _SCALARS:
        return obj
    return copy.deepcopy(obj)


def _sort_key(item) -> tuple:
    """Stored objects in the order the fake lists them: by their key, as strings."""
    return tuple(str(x) for x in item[0])


def _merged(live, config):
    """``config`` merged over ``live``: what an apply of ``config`` would leave."""
    if isinstance(live, dict) and isinstance(config, dict):
        out = dict(live)
        for k, v in config.items():
            out[k] = _merged(live.get(k), v)
        return out
    return _copy(config)


# --------------------------------------------------------------------------
# The fake


class FakeKube:
    """A cluster in memory. See the module docstring for what it simulates."""

    def __init__(self, context: str = "k3d-dashi", server: str = "https://0.0.0.0:6550", *,
                 enforce: bool = True, reject: bool = False, lag_probes: int = 0, lag_seconds: float = 0.0,
                 clock: Callable[[], float] = time.monotonic, exec_latency: float = 0.0,
                 time_scale: float = 0.0, sleep: Callable[[float], None] = time.sleep,
                 seed: bool = True, shell: bool = True, api_port: int = API_PORT, namespace_grace_s: float = 0.0,
                 cni: str | None = None, service_account_delay_s: float | None = 0.0):
        self._context = context
        # cni="cilium": CiliumNodes, the CiliumNetworkPolicy CRD and Cilium's
        # identities (see the module docstring).
        self.cni = cni
        self._server = server
        self.enforce = enforce
        # reject=True: denied packets are answered with ICMP port-unreachable
        # (REFUSED), as k3s's kube-router does, instead of dropped (TIMEOUT).
        self.reject = reject
        # shell=False: the pods' image has no /bin/sh (only agnhost), so the
        # prober must fall back to one exec per edge.
        self.shell = shell
        self.lag_probes = lag_probes
        self.lag_seconds = lag_seconds
        self.clock = clock
        self.exec_latency = exec_latency
        self.time_scale = time_scale
        self.sleep = sleep
        # The port the API server listens on behind the kubernetes Service
        # (6443 on k3s, 443 on most managed clusters).
        self.api_port = api_port
        self.namespace_grace_s = namespace_grace_s
        self.service_account_delay_s = service_account_delay_s
        self.api_down = False
        self.calls: list[Call] = []
        self._objects: dict[tuple[str, str, str | None, str], dict] = {}
        self._lock = threading.RLock()
        self._rv = 0
        self._next_ip = int(FIRST_POD_IP)
        self._failures: list[_Failure] = []
        self._exec_handlers: list[tuple[Callable[[str, str, list[str]], bool], Callable]] = []
        # The simulated CNI: the policy set it has programmed, and the change
        # it has not yet caught up with.
        self._enforced: list[dict] = []
        self._dirty = False
        self._changed_at = 0.0
        self._probes_since_change = 0
        self._engine_cache: tuple | None = None
        # What probes derive from the objects (pods by IP, endpoints,
        # namespaces), worked out once per state of the store: see _derived.
        self._derived_cache: tuple | None = None
        # Our last applied configuration per object (what server-side apply's
        # managedFields remember), and namespaces being terminated (by clock).
        self._last_applied: dict[tuple, dict] = {}
        self._terminating: dict[str, float] = {}
        # Namespaces whose default ServiceAccount the simulated controller
        # manager has not created yet, with when each namespace was created.
        self._sa_pending: dict[str, float] = {}
        if seed:
            self._seed()

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

    def _check_served(self, key: tuple, verb: str) -> None:
        if key[0] == CILIUM_API and self.cni != "cilium":
            raise _err(404, f"{verb} {key[1]}/{key[3]}: the server does not serve {CILIUM_API} {key[1]}")

    def apply(self, obj: dict) -> dict:
        key, call = self._key_of(obj, "apply")
        self._record(call)
        self._check_served(key, "apply")
        with self._lock:
            self._reap()
            old = self._objects.get(key)
            if old is not None and self._last_applied.get(key) == obj and _merged(old, obj) == old:
                # Server-side apply of what we applied last, nothing of it
                # changed since: the API server writes nothing.
                return _copy(old)
            out = self._apply(obj, key[2])
            self._last_applied[key] = _copy(obj)
            return _copy(out)

    def create(self, obj: dict) -> dict:
        key, call = self._key_of(obj, "create")
        self._record(call)
        self._check_served(key, "create")
        with self._lock:
            self._reap()
            if key in self._objects:
                raise _err(409, f'{_resource_name(key[1])} "{key[3]}" already exists', KubeConflict)
            if obj["metadata"].get("resourceVersion"):
                raise _err(400, f"create {key[1]}/{key[3]}: resourceVersion should not be set on objects "
                                "to be created")
            return _copy(self._apply(obj, key[2]))

    def update(self, obj: dict) -> dict:
        key, call = self._key_of(obj, "update")
        self._record(call)
        self._check_served(key, "update")
        with self._lock:
            self._reap()
            old = self._objects.get(key)
            if old is None:
                raise _err(404, f'{_resource_name(key[1])} "{key[3]}" not found')
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise _err(409, f'Operation cannot be fulfilled on {_resource_name(key[1])} "{key[3]}": the '
                                "object has been modified; please apply your changes to the latest version "
                                "and try again", KubeConflict)
            return _copy(self._apply(obj, key[2]))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        self._record(Call("get", api_version, kind, namespace, name))
        with self._lock:
            self._reap()
            found = self._objects.get((api_version, kind, namespace if kind not in CLUSTER_SCOPED else None, name))
            return _copy(found) if found is not None else None

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: Mapping | None = None) -> list[dict]:
        self._record(Call("list", api_version, kind, namespace, None, label_selector=label_selector))
        with self._lock:
            self._reap()
            of_kind = [(key, o) for key, o in self._objects.items()
                       if key[0] == api_version and key[1] == kind and (namespace is None or key[2] == namespace)]
            out = [_copy(o) for _, o in sorted(of_kind, key=_sort_key)
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

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None,
             timeout: float = 10.0) -> ExecResult:
        self._record(Call("exec", "v1", "Pod", namespace, pod, argv=tuple(argv)))
        with self._lock:
            self._reap()
            target = self._objects.get(("v1", "Pod", namespace, pod))
            if target is None:
                raise KubeError(f'pods "{pod}" not found in namespace {namespace}')
            if (target.get("status") or {}).get("phase") != "Running":
                raise KubeError(f"cannot exec into pod {namespace}/{pod}: it is not running")
            for match, handler in self._exec_handlers:
                if match(namespace, pod, list(argv)):
                    return handler(namespace, pod, list(argv))
        if len(argv) >= 2 and argv[0].rsplit("/", 1)[-1] == "agnhost" and argv[1] == "connect":
            result, waited = self._agnhost_connect(namespace, pod, list(argv[2:]))
            cost = self.exec_latency + waited * self.time_scale
            if cost > 0:
                self.sleep(min(cost, timeout))
            return result
        if len(argv) >= 3 and argv[:3] == [SHELL, "-c", BATCH_SCRIPT] and self.shell:
            result, waited = self._probe_batch(namespace, pod, list(argv[3:]))
            cost = self.exec_latency + waited * self.time_scale
            if cost > 0:
                self.sleep(min(cost, timeout))
            return result
        return ExecResult(127, "", f'exec: "{argv[0] if argv else ""}": executable file not found in $PATH')

    # -- test controls ------------------------------------------------------

    def fail(self, verb: str, kind: str | None = None, *, name: str | None = None,
             namespace: str | None = None, after: int = 0, times: int | None = 1,
             exc: BaseException | Callable[[Call], BaseException] | None = None) -> None:
        """Make matching calls raise: skip ``after`` matches, then raise ``times``
        times (None: forever). ``exc`` defaults to a KubeError like the API's."""
        if exc is None:
            def exc(call: Call) -> BaseException:
                what = f"{call.kind} {call.namespace + '/' if call.namespace else ''}{call.name or ''}".strip()
                return KubeError(f"{call.verb} {what}: Internal error occurred: injected failure")
        with self._lock:
            self._failures.append(_Failure(verb, kind, name, namespace, after, times, exc))

    def stop_api(self) -> None:
        """The API server stops answering (kill, restart, a network cut)."""
        self.api_down = True

    def start_api(self) -> None:
        self.api_down = False

    def on_exec(self, match: Callable[[str, str, list[str]], bool],
                handler: Callable[[str, str, list[str]], ExecResult]) -> None:
        """Answer matching execs (namespace, pod, argv) with ``handler``."""
        self._exec_handlers.append((match, handler))

    def calls_of(self, verb: str, kind: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.verb == verb and (kind is None or c.kind == kind)]

    def objects(self, kind: str, namespace: str | None = None) -> list[dict]:
        """Stored objects of a kind, without recording a call (for assertions)."""
        with self._lock:
            return [_copy(o) for _, o in sorted(((key, o) for key, o in self._objects.items()
                                                 if key[1] == kind and (namespace is None or key[2] == namespace)),
                                                key=_sort_key)]

    def pods(self, namespace: str | None = None) -> list[dict]:
        return self.objects("Pod", namespace)

    def patch_status(self, api_version: str, kind: str, name: str, namespace: str | None,
                     status: dict) -> None:
        """Overwrite (merge) an object's status, e.g. a Pod that is not Ready yet."""
        with self._lock:
            obj = self._objects[(api_version, kind, namespace, name)]
            obj.setdefault("status", {}).update(_copy(status))
            self._bump(obj)

    def policies_in_effect(self) -> list[dict]:
        """What the simulated CNI enforces right now (lag included)."""
        with self._lock:
            self._catch_up(count_probe=False)
            return _copy(self._enforced)

    # -- internals: calls, failures -----------------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            if self.api_down and call.verb not in ("context", "server"):
                raise KubeUnreachable(f"{call.verb} {call.kind or ''}/{call.name or ''}: cannot reach the API server "
                                      f"of {self._context} ({self._server}): connection refused")
            for f in self._failures:
                if f.verb != call.verb or (f.kind and f.kind != call.kind) \
                        or (f.name and f.name != call.name) or (f.namespace and f.namespace != call.namespace):
                    continue
                f.seen += 1
                if f.seen <= f.after or (f.times is not None and f.raised >= f.times):
                    continue
                f.raised += 1
                raise f.exc(call) if callable(f.exc) and not isinstance(f.exc, BaseException) else f.exc

    # -- internals: the store ----------------------------------------------

    def _bump(self, obj: dict) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def _apply(self, obj: dict, ns: str | None) -> dict:
        obj = _copy(obj)
        kind = obj["kind"]
        meta = obj["metadata"]
        if ns is not None:
            meta["namespace"] = ns
            if ("v1", "Namespace", None, ns) not in self._objects:
                raise _err(404, f'namespaces "{ns}" not found (applying {kind} {ns}/{meta["name"]})')
            if ns in self._terminating and (obj["apiVersion"], kind, ns, meta["name"]) not in self._objects:
                raise _err(403, f'{_resource_name(kind)} "{meta["name"]}" is forbidden: unable to create new '
                                f"content in namespace {ns} because it is being terminated")
            if kind == "Pod" and ("v1", kind, ns, meta["name"]) not in self._objects \
                    and ("v1", "ServiceAccount", ns, "default") not in self._objects:
                raise _err(403, f'pods "{meta["name"]}" is forbidden: error looking up service account '
                                f'{ns}/default: serviceaccount "default" not found')
        else:
            meta.pop("namespace", None)
        if kind == "Lease":
            _validate_lease(obj)
        if kind == "NetworkPolicy":
            try:
                compile_policy(obj)
            except ManifestError as e:
                raise KubeError(f"NetworkPolicy.networking.k8s.io \"{meta['name']}\" is invalid: {e}") from None
        if kind == CNP_KIND:
            _validate_cnp(obj)
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
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
        meta["managedFields"] = [{"manager": FIELD_MANAGER, "operation": "Apply",
                                  "apiVersion": obj["apiVersion"], "time": _now()}]
        self._bump(obj)
        self._objects[key] = obj
        if kind in POLICY_KINDS:
            self._policies_changed()
        if WORKLOAD_KINDS.get(kind) == obj["apiVersion"]:
            self._reconcile(obj)
        if kind == "Pod":
            self._start_pod(obj, node=self._node_name())
        if kind == "Namespace" and old is None:
            self._sa_pending[meta["name"]] = self.clock()
            self._create_service_accounts()
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
            obj["metadata"]["deletionTimestamp"] = _now()
            obj["status"] = {"phase": "Terminating"}
            self._bump(obj)
            self._terminating[name] = self.clock()
            self._policies_changed()
            return True
        self._objects.pop(key)
        self._last_applied.pop(key, None)
        if kind in POLICY_KINDS:
            self._policies_changed()
        uid = obj["metadata"]["uid"]
        for k, child in list(self._objects.items()):
            if any(ref.get("uid") == uid for ref in child["metadata"].get("ownerReferences") or []):
                self._delete(k)
        return True

    def _create_service_accounts(self) -> None:
        """The serviceaccount controller: a namespace's ``default`` one, once
        ``service_account_delay_s`` has passed (never when it is None)."""
        if self.service_account_delay_s is None:
            return
        now = self.clock()
        for ns, since in list(self._sa_pending.items()):
            if now - since >= self.service_account_delay_s:
                del self._sa_pending[ns]
                if ("v1", "Namespace", None, ns) in self._objects and ns not in self._terminating:
                    sa = {"apiVersion": "v1", "kind": "ServiceAccount",
                          "metadata": {"name": "default", "namespace": ns, "uid": str(uuid.uuid4()),
                                       "creationTimestamp": _now()}}
                    self._bump(sa)
                    self._objects[("v1", "ServiceAccount", ns, "default")] = sa

    def _reap(self) -> None:
        """Remove the namespaces whose termination is over; create the
        ServiceAccounts that are due."""
        self._create_service_accounts()
        now = self.clock()
        for name, since in list(self._terminating.items()):
            if now - since >= self.namespace_grace_s:
                del self._terminating[name]
                self._objects.pop(("v1", "Namespace", None, name), None)
                self._last_applied.pop(("v1", "Namespace", None, name), None)

    # -- internals: workloads ----------------------------------------------

    def _node_name(self) -> str:
        nodes = [k for k in self._objects if k[1] == "Node"]
        return nodes[0][3] if nodes else "node-0"

    def _alloc_ip(self) -> str:
        ip = ipaddress.ip_address(self._next_ip)
        self._next_ip += 1
        if ip not in POD_NETWORK:
            raise KubeError("fake cluster: pod network exhausted")
        return str(ip)

    def _start_pod(self, pod: dict, node: str) -> None:
        spec = pod.setdefault("spec", {})
        spec.setdefault("nodeName", node)
        status = pod.get("status") or {}
        ip = status.get("podIP") or self._alloc_ip()
        containers = spec.get("containers") or []
        pod["status"] = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "172.18.0.2",
            "conditions": [{"type": t, "status": "True"}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c.get("name"), "ready": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": _now()}}} for c in containers],
        }

    def _owned_pods(self, owner: dict) -> list[dict]:
        uid = owner["metadata"]["uid"]
        return [o for k, o in self._objects.items() if k[1] == "Pod"
                and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def _reconcile(self, obj: dict) -> None:
        kind = obj["kind"]
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        spec = obj.get("spec") or {}
        template = _copy(spec.get("template") or {})
        tlabels = dict((template.get("metadata") or {}).get("labels") or {})
        thash = _safe_suffix(json.dumps(template, sort_keys=True), 10)
        nodes = sorted(k[3] for k in self._objects if k[1] == "Node") or ["node-0"]
        if kind == "DaemonSet":
            want = len(nodes)
        elif kind == "Job":
            want = 1
        else:
            want = spec.get("replicas", 1)
        owner_ref = {"apiVersion": obj["apiVersion"], "kind": kind, "name": name,
                     "uid": meta["uid"], "controller": True}
        current = self._owned_pods(obj)
        # A changed template replaces every pod, as a rollout would.
        for pod in current:
            if pod["metadata"].get("annotations", {}).get("fake.dashi.io/template-hash") != thash:
                self._objects.pop(("v1", "Pod", ns, pod["metadata"]["name"]))
        current = self._owned_pods(obj)
        if kind == "StatefulSet":
            names = [f"{name}-{i}" for i in range(want)]
        else:
            existing = sorted(p["metadata"]["name"] for p in current)
            names = existing[:want]
            i = 0
            while len(names) < want:
                prefix = f"{name}-{thash}-" if kind == "Deployment" else f"{name}-"
                candidate = prefix + _safe_suffix(f"{ns}/{name}/{thash}/{i}", 5)
                if candidate not in names:
                    names.append(candidate)
                i += 1
        for pod in current:
            if pod["metadata"]["name"] not in names:
                self._objects.pop(("v1", "Pod", ns, pod["metadata"]["name"]))
        have = {p["metadata"]["name"] for p in self._owned_pods(obj)}
        for i, pod_name in enumerate(names):
            if pod_name in have:
                continue
            labels = dict(tlabels)
            if kind == "Deployment":
                labels["pod-template-hash"] = thash
            elif kind == "StatefulSet":
                labels.update({"controller-revision-hash": f"{name}-{thash}",
                               "statefulset.kubernetes.io/pod-name": pod_name,
                               "apps.kubernetes.io/pod-index": str(i)})
            elif kind == "DaemonSet":
                labels.update({"controller-revision-hash": thash, "pod-template-generation": "1"})
            elif kind == "Job":
                labels.update({"job-name": name, "batch.kubernetes.io/job-name": name})
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod_name, "namespace": ns, "labels": labels,
                                "annotations": {**((template.get("metadata") or {}).get("annotations") or {}),
                                                "fake.dashi.io/template-hash": thash},
                                "ownerReferences": [owner_ref], "uid": str(uuid.uuid4()),
                                "creationTimestamp": _now(), "generation": 1},
                   "spec": _copy(template.get("spec") or {})}
            if kind == "StatefulSet":
                pod["spec"]["hostname"] = pod_name
            self._start_pod(pod, node=nodes[i % len(nodes)])
            self._bump(pod)
            self._objects[("v1", "Pod", ns, pod_name)] = pod
        gen = meta["generation"]
        n = len(names)
        if kind in ("Deployment", "ReplicaSet"):
            obj["status"] = {"observedGeneration": gen, "replicas": n, "readyReplicas": n,
                             "availableReplicas": n, "updatedReplicas": n,
                             "conditions": [{"type": "Available", "status": "True"},
                                            {"type": "Progressing", "status": "True",
                                             "reason": "NewReplicaSetAvailable"}]}
        elif kind == "StatefulSet":
            rev = f"{name}-{thash}"
            obj["status"] = {"observedGeneration": gen, "replicas": n, "readyReplicas": n,
                             "availableReplicas": n, "currentReplicas": n, "updatedReplicas": n,
                             "currentRevision": rev, "updateRevision": rev}
        elif kind == "DaemonSet":
            obj["status"] = {"observedGeneration": gen, "desiredNumberScheduled": n,
                             "currentNumberScheduled": n, "numberReady": n, "numberAvailable": n,
                             "updatedNumberScheduled": n, "numberMisscheduled": 0}
        else:
            obj["status"] = {"active": n, "ready": n, "startTime": _now()}

    # -- internals: seed ----------------------------------------------------

    def _seed(self) -> None:
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, None)
        node = f"{self._context}-server-0" if self._context.startswith("k3d-") else "node-0"
        self._apply({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node,
                                                           "node-role.kubernetes.io/control-plane": "true"}},
                     "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}]}}, None)
        self._apply({"apiVersion": "apps/v1", "kind": "Deployment",
                     "metadata": {"name": "coredns", "namespace": "kube-system",
                                  "labels": {"k8s-app": "kube-dns"}},
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                              "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                                           "spec": {"containers": [{
                                               "name": "coredns", "image": "rancher/mirrored-coredns-coredns",
                                               "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                                         {"name": "dns-tcp", "containerPort": 53,
                                                          "protocol": "TCP"},
                                                         {"name": "metrics", "containerPort": 9153,
                                                          "protocol": "TCP"}]}]}}}}, "kube-system")
        self._apply({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                  "labels": {"k8s-app": "kube-dns"}},
                     "spec": {"clusterIP": "10.43.0.10", "selector": {"k8s-app": "kube-dns"},
                              "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}, "kube-system")
        self._apply({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": {"clusterIP": "10.43.0.1",
                              "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                         "targetPort": self.api_port}]}}, "default")
        self._apply({"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": "kubernetes", "namespace": "default"},
                     "subsets": [{"addresses": [{"ip": API_ADDRESS}],
                                  "ports": [{"name": "https", "port": self.api_port, "protocol": "TCP"}]}]},
                    "default")
        self._apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"kubernetes.io/service-name": "kubernetes"}},
                     "addressType": "IPv4",
                     "endpoints": [{"addresses": [API_ADDRESS], "conditions": {"ready": True}}],
                     "ports": [{"name": "https", "port": self.api_port, "protocol": "TCP"}]}, "default")
        if self.cni == "cilium":
            self._apply({"apiVersion": CILIUM_API, "kind": "CiliumNode", "metadata": {"name": node},
                         "spec": {"addresses": [{"type": "InternalIP", "ip": "172.18.0.2"}]}}, None)
        self.calls.clear()

    # -- internals: the simulated network ------------------------------------

    def _policies_changed(self) -> None:
        self._dirty = True
        self._changed_at = self.clock()
        self._probes_since_change = 0

    def _catch_up(self, count_probe: bool) -> None:
        if not self._dirty:
            return
        if count_probe:
            self._probes_since_change += 1
        lagging = bool(self.lag_probes or self.lag_seconds)
        due = (not lagging
               or (self.lag_probes and self._probes_since_change > self.lag_probes)
               or (self.lag_seconds and self.clock() - self._changed_at >= self.lag_seconds))
        if due:
            self._enforced = [_copy(o) for _, o in sorted(((k, o) for k, o in self._objects.items()
                                                           if k[1] in POLICY_KINDS), key=_sort_key)]
            self._dirty = False

    @staticmethod
    def _listening(pod: dict) -> set[tuple[int, str]]:
        """(port, protocol) a pod serves: its container ports, plus agnhost
        porter's SERVE_PORT_N variables (porter serves TCP)."""
        out = set()
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                out.add((p["containerPort"], p.get("protocol") or "TCP"))
            if "porter" in (c.get("args") or []):
                for env in c.get("env") or []:
                    m = re.match(r"^SERVE_PORT_(\d+)$", env.get("name", ""))
                    if m:
                        out.add((int(m.group(1)), "TCP"))
        return out

    def _derived(self) -> dict:
        """A memo for what probes derive from the objects, valid while the
        store is unchanged: every write bumps the resource version and every
        removal shrinks the store."""
        key = (self._rv, len(self._objects))
        if self._derived_cache is None or self._derived_cache[0] != key:
            self._derived_cache = (key, {})
        return self._derived_cache[1]

    def _pod_by_ip(self, ip: str) -> dict | None:
        memo = self._derived()
        if "pods_by_ip" not in memo:
            by_ip: dict[str, dict] = {}
            for k, o in self._objects.items():
                pod_ip = (o.get("status") or {}).get("podIP") if k[1] == "Pod" else None
                if pod_ip is not None:
                    by_ip.setdefault(pod_ip, o)
            memo["pods_by_ip"] = by_ip
        return memo["pods_by_ip"].get(ip)

    def _per_pod(self, what: str, pod: dict, build: Callable[[dict], object]):
        memo = self._derived().setdefault(what, {})
        got = memo.get(id(pod))
        if got is None or got[0] is not pod:
            got = memo[id(pod)] = (pod, build(pod))
        return got[1]

    def _pod_endpoint(self, pod: dict) -> Endpoint:
        return self._per_pod("endpoint", pod, self._endpoint_of)

    @staticmethod
    def _endpoint_of(pod: dict) -> Endpoint:
        meta = pod["metadata"]
        ports = tuple(Port(p.get("name"), p["containerPort"], p.get("protocol") or "TCP")
                      for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or [])
        return Endpoint(key=f"{meta['namespace']}/{meta['name']}", namespace=meta["namespace"],
                        name=meta["name"], kind="workload", labels=dict(meta.get("labels") or {}),
                        ports=ports, ip=(pod.get("status") or {}).get("podIP"))

    def _engine(self) -> Engine:
        # Compiling every policy per probe would serialise a 240-probe matrix
        # on the store lock; the enforced set only changes when the CNI catches up.
        memo = self._derived()
        if "namespaces" not in memo:
            namespaces = {k[3]: (o["metadata"].get("labels") or {}) for k, o in self._objects.items()
                          if k[1] == "Namespace"}
            memo["namespaces"] = (namespaces, tuple(sorted((n, tuple(sorted(lb.items())))
                                                           for n, lb in namespaces.items())))
        namespaces, labels = memo["namespaces"]
        key = (id(self._enforced), labels)
        if self._engine_cache is None or self._engine_cache[0] != key:
            self._engine_cache = (key, Engine(namespaces, [o for o in self._enforced
                                                           if o["kind"] == "NetworkPolicy"]))
        return self._engine_cache[1]

    def _resolve(self, host: str) -> dict | str | None:
        """A pod (by IP, or by Service DNS name), the API address, or None."""
        if not _is_ip(host):
            parts = host.split(".")
            if len(parts) >= 2 and (len(parts) == 2 or parts[2] == "svc"):
                svc = self._objects.get(("v1", "Service", parts[1], parts[0]))
                if svc is not None:
                    if svc["metadata"]["name"] == "kubernetes" and parts[1] == "default":
                        return API_ADDRESS
                    sel = (svc.get("spec") or {}).get("selector") or {}
                    for k, o in sorted(self._objects.items(), key=lambda kv: kv[0][3]):
                        if k[1] == "Pod" and k[2] == parts[1] and sel and all(
                                (o["metadata"].get("labels") or {}).get(a) == b for a, b in sel.items()):
                            return o
            return "nxdomain"
        if host == API_ADDRESS:
            return API_ADDRESS
        return self._pod_by_ip(host)

    def _probe_batch(self, namespace: str, pod_name: str, args: list[str]) -> tuple[ExecResult, float]:
        """cluster.live.observe.probe.BATCH_SCRIPT's behaviour: its probes run at once,
        each printing "@@ INDEX EXITCODE OUTPUT"; the exec takes as long as the
        slowest probe. DNS probes answer as busybox nslookup does (see
        ``_nslookup``)."""
        if len(args) < 5:
            return ExecResult(2, "", "sh: usage"), 0.0
        _name, agnhost, timeout, seconds, tcp_tool = args[:5]
        triples = args[5:]
        # The stand-ins' busybox nc passes the script's self-check.
        lines, waited = [f"@@ tool {'nc' if tcp_tool == 'auto' else 'agnhost'}"], 0.0
        for j in range(0, len(triples) - len(triples) % 3, 3):
            i, kind, target = triples[j:j + 3]
            if kind == "dns":
                rc, text, w = self._nslookup(namespace, pod_name, target, float(seconds))
            else:
                res, w = self._agnhost_connect(namespace, pod_name, [target, f"--timeout={timeout}",
                                                                     f"--protocol={kind}"])
                rc, text = res.returncode, " ".join((res.stdout + res.stderr).split())
            waited = max(waited, w)
            lines.append(f"@@ {i} {rc} {text[:300]}")
        return ExecResult(0, "\n".join(lines) + ("\n" if lines else ""), ""), waited

    def _nslookup(self, namespace: str, pod_name: str, host: str, seconds: float) -> tuple[int, str, float]:
        """``timeout N nslookup -type=a kubernetes.default HOST`` (busybox 1.35),
        as measured on a real one: an answering server prints "Server:" and,
        for this name, NXDOMAIN, exit 1; a rejected query prints "nslookup:
        read: Connection refused" until timeout kills it (exit 143); silence
        is exit 143 with no output."""
        outcome, dns = self._path(namespace, pod_name, host, 53, "UDP")
        if outcome == "open" and dns:
            return 1, f"Server: {host} Address: {host}:53 ** server can't find kubernetes.default: NXDOMAIN", 0.0
        if outcome in ("rejected", "no-listener"):
            return 143, "nslookup: read: Connection refused", seconds
        return 143, "", seconds

    def _path(self, namespace: str, pod_name: str, host: str, port: int, proto: str) -> tuple[str, bool]:
        """What happens to a packet from a pod to host:port: "open", "dropped"
        or "rejected" by a policy, "no-listener", "nxdomain", "no-route";
        and whether the destination is cluster DNS on 53."""
        with self._lock:
            self._catch_up(count_probe=True)
            src = self._pod_endpoint(self._objects[("v1", "Pod", namespace, pod_name)])
            target = self._resolve(host)
            if target == "nxdomain":
                return "nxdomain", False
            if target is None:
                return "no-route", False
            if target == API_ADDRESS:
                # Cilium gives the API server the kube-apiserver identity
                # (the node's address: host), which no ipBlock selects
                # (measured on the e2e cilium lane): for NetworkPolicies it
                # has no address there.
                dst = Endpoint(key="external/kube-api", namespace=None, name="kube-api", kind="external",
                               ports=(Port("https", self.api_port, "TCP"),),
                               ip=None if self.cni == "cilium" else API_ADDRESS)
                listening = {(self.api_port, "TCP")}
                is_dns = False
            else:
                dst = self._pod_endpoint(target)
                listening = self._per_pod("listening", target, self._listening)
                is_dns = (target["metadata"].get("labels") or {}).get("k8s-app") == "kube-dns" and port == 53
            allowed = True
            if self.enforce:
                verdict = self._engine().evaluate(src, dst, port, proto)
                allowed = verdict.allowed
                src_pod = self._objects[("v1", "Pod", namespace, pod_name)]
                cnps = [o for o in self._enforced if o["kind"] == CNP_KIND and _cnp_selects(o, src_pod)]
                if cnps:
                    # Cilium: selected for egress, so default-deny; the allows
                    # of both kinds add up.
                    egress = (verdict.egress.isolated and verdict.egress.allowed) or \
                        any(_cnp_allows(c, target == API_ADDRESS, port, proto) for c in cnps)
                    allowed = egress and verdict.ingress.allowed
        if not allowed:
            return ("rejected" if self.reject else "dropped"), is_dns
        if (port, proto) not in listening:
            return "no-listener", is_dns
        return "open", is_dns

    def _agnhost_connect(self, namespace: str, pod_name: str, args: list[str]) -> tuple[ExecResult, float]:
        """agnhost connect's behaviour (test/images/agnhost/connect): exit 0 on a
        connection; else exit 1 and one of TIMEOUT, REFUSED, DNS, OTHER, UNKNOWN
        on stderr. Returns the result and the seconds a real run would wait."""
        dest, timeout_s, protocol = None, 0.0, "tcp"
        for a in args:
            if a.startswith("--timeout="):
                m = re.match(r"^(\d+(?:\.\d+)?)(ms|s)$", a.split("=", 1)[1])
                if not m:
                    return ExecResult(1, "", f"Error: invalid argument {a!r}"), 0.0
                timeout_s = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            elif a.startswith("--protocol="):
                protocol = a.split("=", 1)[1]
            elif a.startswith("-"):
                return ExecResult(1, "", f"Error: unknown flag: {a}"), 0.0
            elif dest is None:
                dest = a
            else:
                return ExecResult(1, "", "Error: accepts 1 arg(s)"), 0.0
        if dest is None:
            return ExecResult(1, "", "Error: accepts 1 arg(s), received 0"), 0.0
        if protocol not in ("tcp", "udp", "sctp"):
            return ExecResult(1, "", f"Unsupported protocol\n{protocol}"), 0.0
        host, sep, port_s = dest.rpartition(":")
        host = host.strip("[]")
        if not sep or not port_s.isdigit():
            return ExecResult(1, "", f"UNKNOWN: address {dest}: missing port in address"), 0.0
        port, proto = int(port_s), protocol.upper()
        outcome, is_dns = self._path(namespace, pod_name, host, port, proto)
        src_ip = (self._objects[("v1", "Pod", namespace, pod_name)].get("status") or {}).get("podIP")
        if outcome == "nxdomain":
            return ExecResult(1, "", f"DNS: lookup {host}: no such host"), 0.0
        if outcome == "no-route":
            # Nothing routes to that address inside the fake: silence.
            return ExecResult(1, "", "TIMEOUT\n" if proto != "UDP" else "TIMEOUT: i/o timeout\n"), timeout_s
        if outcome == "rejected":
            return ExecResult(1, "", "REFUSED\n"), 0.0
        if outcome == "dropped":
            if proto == "UDP":
                return ExecResult(1, "", f"TIMEOUT: read udp {src_ip}:40000->{host}:{port}: i/o timeout\n"), timeout_s
            return ExecResult(1, "", "TIMEOUT\n"), timeout_s
        if outcome == "no-listener":
            if proto == "UDP":
                return ExecResult(1, "", f"REFUSED: read udp {src_ip}:40000->{host}:{port}: "
                                         "recvfrom: connection refused\n"), 0.0
            return ExecResult(1, "", "REFUSED\n"), 0.0
        if proto == "UDP" and is_dns:
            # agnhost sends "hostname\n" (9 bytes); a DNS server drops anything
            # shorter than a 12-byte header without answering, so an allowed
            # probe times out exactly like a dropped one.
            return ExecResult(1, "", f"TIMEOUT: read udp {src_ip}:40000->{host}:{port}: i/o timeout\n"), timeout_s
        return ExecResult(0, "", ""), 0.0


class FakeClock:
    """A clock whose ``sleep`` advances time instantly: share one between a
    FakeKube (lag_seconds) and a prober so polling tests run in no time."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds
