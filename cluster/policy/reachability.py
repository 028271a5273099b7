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

from dataclasses import replace
from pathlib import Path

from cluster.errors import ManifestError
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.matrix import source_ranges
from cluster.policy.engine.model import Endpoint
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
    if endpoints not in ENDPOINT_MODES:
        raise ManifestError(f"--endpoints: unknown value {endpoints!r} (workloads, pods)")
    eps = per_pod(rs.endpoints, rs.pod_keys) if endpoints == "pods" else list(rs.endpoints)
    eps.sort(key=lambda e: e.key)
    engine = Engine(rs.namespaces, rs.compiled)
    if warnings is not None:
        warnings.extend(engine.notes + engine.overlaps(eps))
    keys = [e.key for e in eps]
    allowed: set[tuple] = set()
    ranges = []
    for d, protocol, segments in engine.port_ranges(eps):
        dst = eps[d]
        # Loopback: one pod to itself is not policy-governed traffic; a
        # workload endpoint with several replicas stands for pod-to-pod.
        loop = 0 if dst.replicas > 1 else 1 << d
        for bits, spans in source_ranges(segments):
            bits &= ~loop
            if not bits:
                continue
            port_list = [[lo, hi] for lo, hi in spans]
            declared = [p.port for p in dst.ports if p.protocol == protocol
                        and any(lo <= p.port <= hi for lo, hi in spans)]
            s_bits, s = bits, 0
            while s_bits:
                low = s_bits & -s_bits
                s = low.bit_length() - 1
                s_bits ^= low
                ranges.append({"src": keys[s], "dst": dst.key, "protocol": protocol, "ports": port_list})
                for port in declared:
                    allowed.add((keys[s], dst.key, protocol, port))
    ranges.sort(key=lambda r: (r["src"], r["dst"], r["protocol"]))
    return {"endpoints": keys,
            "allowed": [{"src": s, "dst": d, "protocol": p, "port": n} for s, d, p, n in sorted(allowed)],
            "ranges": ranges}


def reachability(directory: str | Path, endpoints: str = "workloads", namespace: str = "default") -> dict:
    return compute(read_dir(Path(directory), namespace=namespace), endpoints)


def skipped_line(rs: ResourceSet) -> str | None:
    """The one warning line naming the kinds that were skipped, if any."""
    if not rs.skipped:
        return None
    kinds = ", ".join(f"{k} ({n})" if n > 1 else k for k, n in sorted(rs.skipped.items()))
    total = sum(rs.skipped.values())
    return f"skipped {total} object(s) of kinds that do not take part in NetworkPolicy reachability: {kinds}"
