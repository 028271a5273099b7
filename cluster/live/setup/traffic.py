"""Stand-ins that carry traffic (``--traffic`` of ``prepare`` and
``cluster-up``): every client stand-in connects, on a steady beat, to the
servers its intended edges name, and to those of the profile's
``traffic.unlisted`` edges, so a local cluster has real flows to observe
(``inv observe``) without a real platform.

Each client workload gets one more container, ``traffic``, in the stand-ins'
image: a shell loop that runs ``agnhost connect HOST:PORT`` to each target,
all at once, then sleeps the beat (``traffic.beat_seconds`` of profile.yaml,
2 s by default). Targets are named, not addressed: each destination workload
gets a headless Service ``dashi-traffic-<name>`` (its pods' addresses in
DNS, every declared port), so pods that come and go are found again, and
the lookups are real DNS traffic to the cluster's DNS, as an application's
are. agnhost resolves names itself (Go's resolver), whatever the image's
libc. Edges to endpoints outside the pod network (the Kubernetes API) and
to the cluster's DNS (every lookup is one) are not dialled explicitly.
"""

from __future__ import annotations

import copy

from cluster import versions
from cluster.policy.engine.model import Edge

CONTAINER = "traffic"
SERVICE_PREFIX = "dashi-traffic-"
# $1: the beat in seconds; then HOST:PORT targets. Each beat dials all of
# them in parallel (agnhost connect, a 1 s timeout), then waits the beat.
SCRIPT = r"""b=$1; shift
while :; do
  for t in "$@"; do /agnhost connect "$t" --timeout=1s >/dev/null 2>&1 & done
  wait
  sleep "$b"
done
"""


def _pod_template(obj: dict) -> dict | None:
    if obj.get("kind") == "Pod":
        return obj
    return (obj.get("spec") or {}).get("template")


def _workload_name(obj: dict) -> str:
    return f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"


def edges(profile) -> list[Edge]:
    """The edges the stand-ins dial: intended pod-to-pod edges (not DNS,
    whose lookups carry it anyway) and the unlisted ones."""
    by_key = {ep.key: ep for ep in profile.endpoints}
    out = [ie.edge for ie in profile.intended
           if by_key[ie.edge.dst].kind in ("workload",) and by_key[ie.edge.src].probe_source]
    return out + [u.edge for u in profile.unlisted]


def service_name(workload: str) -> str:
    return (SERVICE_PREFIX + workload.split("/", 1)[1])[:63].rstrip("-")


def with_traffic(profile, workloads: list[dict]) -> list[dict]:
    """The stand-in objects with the traffic containers and the headless
    Services they dial (copies; the profile's objects are left as they are)."""
    dialled = edges(profile)
    targets: dict[str, list[str]] = {}
    for e in dialled:
        ns = e.dst.split("/", 1)[0]
        target = f"{service_name(e.dst)}.{ns}:{e.port}"
        if target not in targets.setdefault(e.src, []):
            targets[e.src].append(target)
    out = []
    servers = {e.dst for e in dialled}
    by_name = {_workload_name(o): o for o in workloads if _pod_template(o) is not None}
    for obj in workloads:
        name = _workload_name(obj)
        if name not in targets or _pod_template(obj) is None:
            out.append(obj)
            continue
        obj = copy.deepcopy(obj)
        template = _pod_template(obj)
        spec = template.setdefault("spec", {})
        # kubectl exec (and the probes, which exec as kubectl does) land in the
        # stand-in, not in the traffic loop.
        first = (spec.get("containers") or [{}])[0].get("name")
        if first:
            template.setdefault("metadata", {}).setdefault("annotations", {})[
                "kubectl.kubernetes.io/default-container"] = first
        spec["containers"] = [c for c in spec.get("containers", []) if c.get("name") != CONTAINER] + [{
            "name": CONTAINER, "image": versions.AGNHOST_IMAGE, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", SCRIPT, "dashi-traffic", f"{profile.traffic_beat_s:g}", *targets[name]],
            "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "256Mi"}}}]
        out.append(obj)
    for dst in sorted(servers):
        src_obj = by_name.get(dst)
        if src_obj is None:
            continue
        ns, _ = dst.split("/", 1)
        template = _pod_template(src_obj)
        selector = ((src_obj.get("spec") or {}).get("selector") or {}).get("matchLabels") \
            or (template.get("metadata") or {}).get("labels") or {}
        ports = [{"name": p.get("name") or f"p{p['containerPort']}", "port": p["containerPort"],
                  "protocol": p.get("protocol", "TCP")}
                 for c in (template.get("spec") or {}).get("containers", []) for p in c.get("ports") or ()]
        out.append({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": service_name(dst), "namespace": ns},
                    "spec": {"clusterIP": "None", "selector": dict(selector), "ports": ports,
                             # Found while starting, too: a client dialling before
                             # its server is Ready still makes a flow.
                             "publishNotReadyAddresses": True}})
    return out
