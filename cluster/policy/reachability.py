"""Reachability of arbitrary resources: the machine-readable face of the engine.

``reachability(directory)`` reads every YAML file below a directory
(Namespaces, Pods, Deployments/StatefulSets/DaemonSets/ReplicaSets/Jobs via
their pod templates, NetworkPolicies) and returns

    {"endpoints": ["ns/name", ...],
     "allowed": [{"src": "ns/name", "dst": "ns/name", "protocol": "TCP", "port": 80}, ...]}

Endpoints are sorted; each destination contributes each container port it
declares; a pod's connection to itself is left out. Other tools drive the
engine through this form.
"""

from __future__ import annotations

from pathlib import Path

from cluster.policy.engine import Engine, compile_policy
from cluster.policy.manifests import read_dir


def reachability(directory: str | Path) -> dict:
    rs = read_dir(Path(directory))
    engine = Engine(rs.namespaces, [compile_policy(p, s) for p, s in zip(rs.policies, rs.policy_sources)])
    endpoints = sorted(rs.endpoints, key=lambda e: e.key)
    matrix = engine.allowed_matrix(endpoints)
    allowed = []
    for (d, q), sources in matrix.items():
        dst = endpoints[d]
        port = dst.ports[q]
        s = sources & ~(1 << d)
        while s:
            low = s & -s
            allowed.append({"src": endpoints[low.bit_length() - 1].key, "dst": dst.key,
                            "protocol": port.protocol, "port": port.port})
            s ^= low
    allowed.sort(key=lambda a: (a["src"], a["dst"], a["protocol"], a["port"]))
    # Two container ports may share a number (TCP and UDP 53 differ by
    # protocol; an exact duplicate is collapsed).
    unique = [a for i, a in enumerate(allowed) if i == 0 or a != allowed[i - 1]]
    return {"endpoints": [e.key for e in endpoints], "allowed": unique}

