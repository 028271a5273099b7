"""Discovery: the live pods and addresses behind a profile's endpoints, and
for each edge of the matrix which pod probes which address.

Workloads are found by their label selector, debug pods by name, and an
external endpoint (the API server) by the EndpointSlice of the Service the
profile names. A profile that is not fully deployed is refused with what is
missing: probing half of it would only produce noise.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

from cluster.errors import DashiError
from cluster.invoked import command
from cluster.policy.engine.model import Edge, Endpoint
from cluster.seams.kube import Kube, equality_selector
from cluster.selectors import match_labels
from cluster.threads import block_stop_signals


@dataclass(frozen=True)
class Target:
    """How one edge is probed: from a pod, to an address."""

    namespace: str
    pod: str
    host: str
    port: int
    protocol: str = "TCP"
    note: str = ""  # e.g. the live port differs from the profile's


@dataclass
class LiveMatrix:
    endpoints: list[Endpoint]  # the profile's, with live addresses
    targets: dict[Edge, Target | str]  # a string: why the edge cannot be probed
    pods: dict[str, list[dict]] = field(default_factory=dict)  # endpoint key -> live pods used
    notes: list[str] = field(default_factory=list)


# API reads made at once: enough for a profile's endpoints in one or two
# rounds, few enough for any API server's per-client limits.
READERS = 8


def all_at_once(reads: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Each read's answer, the reads made concurrently; the first error
    (in the reads' order) is raised, as it would have been one by one."""
    if len(reads) <= 1:
        return {k: read() for k, read in reads.items()}
    with ThreadPoolExecutor(max_workers=min(READERS, len(reads)), thread_name_prefix="read",
                            initializer=block_stop_signals) as pool:
        futures = {k: pool.submit(read) for k, read in reads.items()}
        return {k: f.result() for k, f in futures.items()}


def _running_ready(pod: dict) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


# Who writes a Service's EndpointSlices in the control plane, by the
# managed-by label they set: the EndpointSlice controller (a Service with a
# selector) and the mirroring controller (one without, from its Endpoints).
SLICE_CONTROLLERS = frozenset({"endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io"})
# The API server writes the ``kubernetes`` Service's own slice itself (its
# endpoint reconciler, k8s.io/kubernetes pkg/controlplane/reconcilers/
# endpointsadapter.go): named after the Service, with no managed-by label
# and this field manager (what kube-apiserver v1.33 writes on the test cluster).
APISERVER_MANAGER = "kube-apiserver"


def _control_plane_slice(slice_: dict, service: str) -> bool:
    """An EndpointSlice the control plane wrote for ``service``, not a
    look-alike anyone with write access to the namespace can label so."""
    meta = slice_.get("metadata") or {}
    by = (meta.get("labels") or {}).get("endpointslice.kubernetes.io/managed-by")
    if by:
        return by in SLICE_CONTROLLERS
    managers = {f.get("manager") for f in meta.get("managedFields") or [] if isinstance(f, dict)}
    return meta.get("name") == service and APISERVER_MANAGER in managers


def _api_address(kube: Kube, ref: str) -> tuple[str, int] | None:
    """Address and port behind a Service (``ns/name``), from its own
    EndpointSlice, the one the control plane writes (the current API),
    falling back to the legacy Endpoints object of that name."""
    ns, _, name = ref.partition("/")
    slices = kube.list("discovery.k8s.io/v1", "EndpointSlice", ns, match_labels({"kubernetes.io/service-name": name}))
    for s in (s for s in slices if _control_plane_slice(s, name)):
        ports = s.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == "https"), None) \
            or (ports[0].get("port") if ports else None)
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for addr in ep.get("addresses") or []:
                if port:
                    return addr, int(port)
    legacy = kube.get("v1", "Endpoints", name, ns)
    for subset in (legacy or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == "https"), None) \
            or (ports[0].get("port") if ports else None)
        for addr in subset.get("addresses") or []:
            if addr.get("ip") and port:
                return addr["ip"], int(port)
    return None


def discover(kube: Kube, profile, edges: list[Edge] | None = None) -> LiveMatrix:
    """Find the live pods and addresses of a profile's endpoints.

    Raises DashiError naming what is missing when a source or destination
    has no Running, Ready pod: probing a half-deployed profile would only
    produce noise.
    """
    live: dict[str, list[dict]] = {}
    address: dict[str, tuple[str, int | None]] = {}
    missing: list[str] = []
    notes: list[str] = []
    # One read per endpoint, all at once: each is an API round trip, and a
    # verification reads them after every step.
    reads = {}
    for ep in profile.endpoints:
        if ep.kind == "debug":
            reads[ep.key] = partial(kube.get, "v1", "Pod", ep.name, ep.namespace)
        elif ep.kind in ("workload", "cluster") and ep.pod_selector:
            reads[ep.key] = partial(kube.list, "v1", "Pod", ep.namespace, equality_selector(ep.pod_selector))
        elif ep.kind == "external" and ep.address_service:
            reads[ep.key] = partial(_api_address, kube, ep.address_service)
    answers = all_at_once(reads)
    for ep in profile.endpoints:
        if ep.kind == "debug":
            pod = answers[ep.key]
            pods = [pod] if pod is not None and _running_ready(pod) else []
        elif ep.kind in ("workload", "cluster"):
            if not ep.pod_selector:
                missing.append(f"{ep.key} (no selector to find its pods)")
                continue
            pods = sorted((p for p in answers[ep.key] if _running_ready(p)), key=lambda p: p["metadata"]["name"])
        elif ep.kind == "external":
            if not ep.address_service:
                notes.append(f"{ep.key}: no live source for its address; using the profile's {ep.ip}")
                continue
            found = answers[ep.key]
            if found is None:
                missing.append(f"{ep.key} (no ready address behind {ep.address_service})")
            else:
                address[ep.key] = (found[0], found[1])
            continue
        else:
            continue
        if not pods:
            how = f"pod {ep.namespace}/{ep.name}" if ep.kind == "debug" \
                else f"pods -n {ep.namespace} -l {ep.pod_selector}"
            missing.append(f"{ep.key} (no Running, Ready {how})")
            continue
        live[ep.key] = pods
        if ep.kind == "workload" and ep.replicas > 1 and len(pods) < 2:
            notes.append(f"{ep.key}: {len(pods)} of {ep.replicas} replicas ready; its pod-to-pod edge is unprobed")
        wanted = {k: v for k, v in ep.labels.items()}
        have = pods[0]["metadata"].get("labels") or {}
        drift = [f"{k}={v}" for k, v in wanted.items() if have.get(k) != v]
        if drift:
            notes.append(f"{ep.key}: live pod {pods[0]['metadata']['name']} lacks labels {', '.join(drift)} "
                         "(policies see the live labels)")
    if missing:
        raise DashiError("cannot probe: " + "; ".join(missing) + f". Is the profile deployed ({command('cluster-up')})?")

    endpoints = []
    for ep in profile.endpoints:
        if ep.key in live:
            endpoints.append(replace(ep, ip=live[ep.key][0]["status"]["podIP"]))
        elif ep.key in address:
            endpoints.append(replace(ep, ip=address[ep.key][0]))
        else:
            endpoints.append(ep)

    targets: dict[Edge, Target | str] = {}
    for edge in (edges if edges is not None else profile.with_endpoints(endpoints).edges()):
        src_pods = live.get(edge.src)
        if not src_pods:
            targets[edge] = f"{edge.src} is not a pod we can exec into"
            continue
        src = src_pods[0]
        ns, name = src["metadata"]["namespace"], src["metadata"]["name"]
        if edge.dst in address:
            host, port = address[edge.dst]
            note = f"live port {port} (profile says {edge.port})" if port != edge.port else ""
            targets[edge] = Target(ns, name, host, port, edge.protocol, note)
            continue
        dst_pods = [p for p in live.get(edge.dst, [])
                    if (p["metadata"]["namespace"], p["metadata"]["name"]) != (ns, name)]
        if not dst_pods:
            targets[edge] = ("a pod's traffic to itself never reaches the network, so policy cannot be probed"
                             if edge.dst == edge.src else f"no live pod for {edge.dst}")
            continue
        targets[edge] = Target(ns, name, dst_pods[0]["status"]["podIP"], edge.port, edge.protocol)
    return LiveMatrix(endpoints, targets, live, notes)

