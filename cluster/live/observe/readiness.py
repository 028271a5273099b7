"""Is it ready? Read from the objects' status, the way kubectl rollout does.

The Python client has no rollout-status helper, so these mirror kubectl's
logic (k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go): a rollout
is done when the controller has observed the current generation and the
updated/ready counts reach the desired count. Each returns (ready, detail)
so a waiting user sees what is missing.
"""

from __future__ import annotations

from cluster.policy.manifests import obj_ref


def condition(obj: dict | None, ctype: str) -> str | None:
    """Status ("True"/"False"/"Unknown") of a condition, None when absent."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("status"))
    return None


def _observed(obj: dict) -> bool:
    gen = (obj.get("metadata") or {}).get("generation")
    seen = (obj.get("status") or {}).get("observedGeneration")
    return gen is None or (seen is not None and seen >= gen)


def deployment_ready(obj: dict) -> tuple[bool, str]:
    st = obj.get("status") or {}
    want = (obj.get("spec") or {}).get("replicas", 1)
    updated, avail = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
    ok = _observed(obj) and updated >= want and avail >= want
    return ok, f"{obj_ref(obj)} {avail}/{want} available"


def replicaset_ready(obj: dict) -> tuple[bool, str]:
    st = obj.get("status") or {}
    want = (obj.get("spec") or {}).get("replicas", 1)
    avail = st.get("availableReplicas", 0)
    return _observed(obj) and avail >= want, f"{obj_ref(obj)} {avail}/{want} available"


def job_ready(obj: dict) -> tuple[bool, str]:
    """A Job stands in for running pods: ready when as many of its pods are
    Ready as it runs at once (``status.ready``, GA since 1.29), or when it
    has already completed."""
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    want = min(spec.get("parallelism", 1), spec.get("completions") or spec.get("parallelism", 1))
    ready, done = st.get("ready", 0), st.get("succeeded", 0) >= (spec.get("completions") or 1)
    return done or ready >= want, f"{obj_ref(obj)} {'complete' if done else f'{ready}/{want} ready'}"


def statefulset_ready(obj: dict) -> tuple[bool, str]:
    st = obj.get("status") or {}
    want = (obj.get("spec") or {}).get("replicas", 1)
    ready = st.get("readyReplicas", 0)
    rev_ok = st.get("updateRevision") is None or st.get("currentRevision") == st.get("updateRevision")
    ok = _observed(obj) and ready >= want and rev_ok
    return ok, f"{obj_ref(obj)} {ready}/{want} ready"


def daemonset_ready(obj: dict) -> tuple[bool, str]:
    st = obj.get("status") or {}
    want = st.get("desiredNumberScheduled", 0)
    ready, updated = st.get("numberReady", 0), st.get("updatedNumberScheduled", 0)
    # desired 0 means the controller has not scheduled anything yet.
    ok = _observed(obj) and want > 0 and ready >= want and updated >= want
    return ok, f"{obj_ref(obj)} {ready}/{want} ready"


def pod_ready(obj: dict) -> tuple[bool, str]:
    phase = (obj.get("status") or {}).get("phase", "Pending")
    ok = condition(obj, "Ready") == "True"
    return ok, f"{obj_ref(obj)} {'ready' if ok else phase.lower()}"


def node_ready(obj: dict) -> tuple[bool, str]:
    ok = condition(obj, "Ready") == "True"
    return ok, f"node {obj.get('metadata', {}).get('name', '?')} {'Ready' if ok else 'NotReady'}"


# One readiness check per kind the manifests call a workload (WORKLOAD_KINDS),
# and bare Pods.
WORKLOAD_READY = {
    "Deployment": deployment_ready,
    "StatefulSet": statefulset_ready,
    "DaemonSet": daemonset_ready,
    "ReplicaSet": replicaset_ready,
    "Job": job_ready,
    "Pod": pod_ready,
}


def is_workload(obj: dict) -> bool:
    return obj.get("kind") in WORKLOAD_READY


def workload_ready(obj: dict | None, ref: str = "") -> tuple[bool, str]:
    if obj is None:
        return False, f"{ref or 'object'} not found"
    return WORKLOAD_READY[obj["kind"]](obj)
