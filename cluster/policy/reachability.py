"""Reachability of arbitrary resources: the machine-readable face of the engine.

``reachability(path)`` reads every manifest below a directory (or one file;
see ``cluster.policy.manifests``): Namespaces, Pods,
Deployments/StatefulSets/DaemonSets/ReplicaSets/Jobs/CronJobs via their pod
templates, NetworkPolicies and ClusterNetworkPolicies. Other kinds are
skipped and counted. It returns

    {"endpoints": ["ns/name", ...],
     "allowed": [{"src": "ns/name", "dst": "ns/name", "protocol": "TCP", "port": 80}, ...],
     "ranges": [{"src": "ns/name", "dst": "ns/name", "protocol": "TCP", "ports": [[1, 65535]]}, ...]}

``allowed`` lists each destination's declared container ports;
``ranges`` lists, for every pair and protocol with any allowed traffic,
every allowed port range, declared or not (most Helm charts declare no
containerPort, and their traffic still flows). A pod's connection to
itself (loopback) is left out; a workload with several replicas keeps the
pair with itself, which is traffic between its pods.

``endpoints="pods"`` gives each replica its own endpoint, ``ns/name-0``,
``ns/name-1``, ... (a StatefulSet's pod names; other controllers' pods get
random suffixes on a cluster). Other tools drive the engine through this form.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from cluster.errors import ManifestError
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.matrix import indices, source_ranges
from cluster.policy.engine.model import PROTOCOLS, Endpoint
from cluster.policy.manifests import ResourceSet, read_dir

ENDPOINT_MODES = ("workloads", "pods")


def per_pod(endpoints: list[Endpoint], pods: set[str]) -> list[Endpoint]:
    """One endpoint per replica of each workload (a DaemonSet counts one:
    offline there are no nodes); ``pods`` are the keys of bare Pods, kept."""
    out = []
    for ep in endpoints:
        if ep.key in pods:
            out.append(ep)
            continue
        out.extend(replace(ep, key=f"{ep.key}-{i}", name=f"{ep.name}-{i}", replicas=1)
                   for i in range(ep.replicas))
    keys = [e.key for e in out]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ManifestError(f"--endpoints pods: two endpoints would both be named {dup} "
                            "(a Pod named like a replica of a workload)")
    return out


def compute(rs: ResourceSet, endpoints: str = "workloads", warnings: list[str] | None = None) -> dict:
    """The reachability document; ``warnings`` (when given) receives what the
    prediction rests on that the engine cannot check (unmodelled peers,
    ClusterNetworkPolicies of one tier and priority matching the same traffic)."""
    keys, allowed, ranges = _walk(
        rs, endpoints, warnings, lambda key: key, lambda port_list: port_list,
        lambda src, dst, protocol, ports: {"src": src, "dst": dst, "protocol": protocol, "ports": ports},
        lambda src, dst, protocol, port: {"src": src, "dst": dst, "protocol": protocol, "port": port})
    return {"endpoints": keys, "allowed": allowed, "ranges": ranges}


def compute_json(rs: ResourceSet, endpoints: str = "workloads", warnings: list[str] | None = None) -> str:
    """``json.dumps(compute(rs, endpoints))``, byte for byte, made as text:
    at 10,000 pods the result is a few hundred thousand small objects
    repeating the same few thousand strings and port lists, each of which is
    encoded once (by json.dumps) instead of once per object."""
    keys, allowed, ranges = _walk(
        rs, endpoints, warnings, json.dumps, json.dumps,
        lambda src, dst, protocol, ports: f'{{"src": {src}, "dst": {dst}, "protocol": "{protocol}", "ports": {ports}}}',
        lambda src, dst, protocol, port: f'{{"src": {src}, "dst": {dst}, "protocol": "{protocol}", "port": {port}}}')
    return f'{{"endpoints": [{", ".join(keys)}], "allowed": [{", ".join(allowed)}], "ranges": [{", ".join(ranges)}]}}'


def _walk(rs: ResourceSet, endpoints: str, warnings: list[str] | None, key_form, ports_form, make_range,
          make_allowed):
    """The endpoints (``key_form`` of each key) and the allowed and ranges
    entries (``make_range``, ``make_allowed`` of the key forms, the protocol
    and ``ports_form`` of a port list or a port), in the output's order;
    the engine's warnings added to ``warnings`` when given."""
    if endpoints not in ENDPOINT_MODES:
        raise ManifestError(f"--endpoints: unknown value {endpoints!r} (workloads, pods)")
    eps = per_pod(rs.endpoints, rs.pod_keys) if endpoints == "pods" else list(rs.endpoints)
    eps.sort(key=lambda e: e.key)
    engine = Engine(rs.namespaces, rs.compiled)
    if warnings is not None:
        warnings.extend(engine.notes + engine.overlaps(eps))
    keys = [key_form(e.key) for e in eps]
    # The output is sorted by source, destination, protocol (and port). The
    # endpoints are sorted by key, so each source's entries are made in
    # that order when destinations are taken in turn and their protocols
    # in name order: one list per source, joined at the end, no sort.
    ranges_of: list[list] = [[] for _ in eps]
    allowed_of: list[list] = [[] for _ in eps]
    by_protocol = sorted(PROTOCOLS)
    groups: dict[int, tuple] = {}  # id(segments) -> (segments, source_ranges(segments))

    def emit(d: int, found: dict) -> None:
        dst = eps[d]
        dkey = keys[d]
        # Loopback: one pod to itself is not policy-governed traffic; a
        # workload endpoint with several replicas stands for pod-to-pod.
        loop = 0 if dst.replicas > 1 else 1 << d
        for protocol in by_protocol:
            segments = found.get(protocol)
            if segments is None:
                continue
            cached = groups.get(id(segments))
            if cached is None:
                cached = groups[id(segments)] = (segments, [(bits, ports_form([[lo, hi] for lo, hi in spans]), spans)
                                                            for bits, spans in source_ranges(segments)])
            ports = sorted({p.port for p in dst.ports if p.protocol == protocol})
            for bits, port_list, spans in cached[1]:
                bits &= ~loop
                if not bits:
                    continue
                declared = [n for n in ports if any(lo <= n <= hi for lo, hi in spans)]
                for s in indices(bits):
                    src = keys[s]
                    ranges_of[s].append(make_range(src, dkey, protocol, port_list))
                    if declared:
                        allowed_of[s].extend(make_allowed(src, dkey, protocol, n) for n in declared)

    current, found = -1, {}
    for d, protocol, segments in engine.port_ranges(eps):
        if d != current:
            if found:
                emit(current, found)
            current, found = d, {}
        found[protocol] = segments
    if found:
        emit(current, found)
    return keys, [a for entries in allowed_of for a in entries], [r for entries in ranges_of for r in entries]


def reachability(directory: str | Path, endpoints: str = "workloads", namespace: str = "default") -> dict:
    return compute(read_dir(Path(directory), namespace=namespace), endpoints)


def skipped_line(rs: ResourceSet) -> str | None:
    """The one warning line naming the kinds that were skipped, if any."""
    if not rs.skipped:
        return None
    kinds = ", ".join(f"{k} ({n})" if n > 1 else k for k, n in sorted(rs.skipped.items()))
    total = sum(rs.skipped.values())
    return f"skipped {total} object(s) of kinds that do not take part in NetworkPolicy reachability: {kinds}"
