"""Deploy a profile's stand-in workloads and wait until they are Ready.

Serves both `cluster-up` (our k3d cluster) and `prepare` (a cluster the user
names). Objects go through ``Kube.apply`` (server-side apply, our field
manager) and carry our managed-by label; readiness is read from status. A
namespace that already exists without our label belongs to someone else:
we do not deploy into it unless the user says ``adopt``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from cluster.errors import GuardError
from cluster.live.observe import readiness
from cluster.live.observe.poll import wait_until
from cluster.policy.kinds import DEBUG_ANNOTATION
from cluster.policy.manifests import obj_ref
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Kube

# Stand-ins are agnhost pods with 5m CPU requests; the first start pulls the
# agnhost image (~50 MB) once per node. 5 minutes covers a slow connection.
READY_TIMEOUT_S = 300
# A new namespace is usable for Pods only once kube-controller-manager's
# serviceaccount controller has created its "default" ServiceAccount: until
# then the ServiceAccount admission plugin refuses every Pod with 403
# 'error looking up service account NS/default'
# (k8s.io/kubernetes plugin/pkg/admission/serviceaccount/admission.go).
# It takes milliseconds on a healthy cluster, but right after the API server
# restarts, the controller manager's watches come back only after client-go's
# reflector backoff (up to 30 s, jittered to 60 s): measured 47 s on the test
# cluster. Two minutes without one means the controller manager is not running.
SERVICE_ACCOUNT_TIMEOUT_S = 120


def labelled(obj: dict) -> dict:
    """A copy of ``obj`` marked as ours (metadata only, never selectors).

    The debug pods stay unlabelled, as the training chapter's incident has
    it: a label, even ours, is something a selector could catch. They are
    marked by an annotation instead.
    """
    out = copy.deepcopy(obj)
    md = out.setdefault("metadata", {})
    if obj.get("kind") == "Pod" and (md.get("annotations") or {}).get(DEBUG_ANNOTATION) == "debug":
        md.setdefault("annotations", {})[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    else:
        md.setdefault("labels", {})[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    return out


def objects(profile, traffic: bool = False) -> tuple[list[dict], list[dict]]:
    """The namespaces and stand-ins, marked as ours; with ``traffic``, the
    stand-ins that carry traffic (cluster.live.setup.traffic)."""
    workloads = profile.workload_objects
    if traffic:
        from cluster.live.setup.traffic import with_traffic

        workloads = with_traffic(profile, workloads)
    return ([labelled(o) for o in profile.namespace_objects], [labelled(o) for o in workloads])


def check_ownership(kube: Kube, namespaces: list[dict], adopt: bool = False) -> None:
    foreign = []
    for ns in namespaces:
        live = kube.get("v1", "Namespace", ns["metadata"]["name"])
        if live is not None and (live.get("metadata", {}).get("labels") or {}).get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
            foreign.append(ns["metadata"]["name"])
    if foreign and not adopt:
        raise GuardError(f"namespace(s) {', '.join(foreign)} already exist and are not managed by dashi-cluster; "
                         "nothing was changed. Re-run with --adopt to deploy the stand-ins into them anyway.")


def _same(before: dict, after: dict) -> bool:
    """Did an apply leave the object as it was? A no-op server-side apply keeps
    the resourceVersion; failing that, the same generation and labels mean the
    spec and our metadata did not change."""
    mb, ma = before.get("metadata") or {}, after.get("metadata") or {}
    if mb.get("resourceVersion") is not None and mb.get("resourceVersion") == ma.get("resourceVersion"):
        return True
    return (mb.get("generation") is not None and mb.get("generation") == ma.get("generation")
            and (mb.get("labels") or {}) == (ma.get("labels") or {}))


def apply_all(kube: Kube, objs: list[dict]) -> tuple[int, int]:
    """Apply; returns (changed, unchanged) judged by resourceVersion before/after."""
    changed = unchanged = 0
    for obj in objs:
        md = obj["metadata"]
        before = kube.get(obj["apiVersion"], obj["kind"], md["name"], md.get("namespace"))
        after = kube.apply(obj)
        if before is not None and _same(before, after or {}):
            unchanged += 1
        else:
            changed += 1
    return changed, unchanged


def wait_service_accounts(kube: Kube, namespaces: list[str], *, sleep: Callable[[float], None],
                          clock: Callable[[], float], progress: Callable[[str], None] = lambda d: None,
                          timeout_s: float = SERVICE_ACCOUNT_TIMEOUT_S) -> None:
    """Wait until every namespace has its ``default`` ServiceAccount, so the
    Pods that follow are not refused (see SERVICE_ACCOUNT_TIMEOUT_S)."""
    missing: list[str] = []

    def all_there() -> tuple[bool, str]:
        missing[:] = [ns for ns in namespaces if kube.get("v1", "ServiceAccount", "default", ns) is None]
        return not missing, ("waiting for the default ServiceAccount in " + ", ".join(missing)) if missing \
            else "default ServiceAccounts present"

    wait_until("the default ServiceAccounts exist", all_there, timeout_s=timeout_s, interval_s=0.5, clock=clock,
               sleep=sleep, progress=progress,
               timed_out=lambda _: f"namespace(s) {', '.join(missing)} still have no 'default' ServiceAccount after "
                                   f"{int(timeout_s)}s, so no Pod can be created there: is kube-controller-manager "
                                   "running (its serviceaccount controller creates them)?")


@dataclass
class WorkloadState:
    ref: str
    ready: bool
    detail: str


def states(kube: Kube, workloads: list[dict]) -> list[WorkloadState]:
    out = []
    for obj in workloads:
        if not readiness.is_workload(obj):
            continue
        md = obj["metadata"]
        live = kube.get(obj["apiVersion"], obj["kind"], md["name"], md.get("namespace"))
        ok, detail = readiness.workload_ready(live, obj_ref(obj))
        out.append(WorkloadState(obj_ref(obj), ok, detail))
    return out


def wait_ready(kube: Kube, workloads: list[dict], *, timeout_s: float = READY_TIMEOUT_S,
               sleep: Callable[[float], None], clock: Callable[[], float],
               progress: Callable[[str], None] = lambda d: None, interval_s: float = 2.0) -> int:
    seen: list[WorkloadState] = []
    waiting: list[WorkloadState] = []

    def all_ready() -> tuple[bool, str]:
        nonlocal seen, waiting
        seen = states(kube, workloads)
        waiting = [w for w in seen if not w.ready]
        return not waiting, (f"{len(seen) - len(waiting)}/{len(seen)} ready"
                             + (f"; waiting for {waiting[0].detail}" if waiting else ""))

    def timed_out(_) -> str:
        return (f"stand-ins not ready after {int(timeout_s)}s: " + "; ".join(w.detail for w in waiting[:6])
                + (f" (+{len(waiting) - 6} more)" if len(waiting) > 6 else ""))

    wait_until("the stand-ins are Ready", all_ready, timeout_s=timeout_s, interval_s=interval_s, clock=clock,
               sleep=sleep, progress=progress, timed_out=timed_out)
    return len(seen)


def deploy(kube: Kube, profile, *, adopt: bool = False, sleep, clock,
           progress: Callable[[str], None] = lambda d: None, timeout_s: float = READY_TIMEOUT_S,
           traffic: bool = False) -> tuple[bool, str]:
    """Apply namespaces then workloads, wait Ready. Returns (changed, note)."""
    namespaces, workloads = objects(profile, traffic)
    check_ownership(kube, namespaces, adopt)
    progress(f"applying {len(namespaces) + len(workloads)} objects")
    c1, u1 = apply_all(kube, namespaces)
    wait_service_accounts(kube, [ns["metadata"]["name"] for ns in namespaces], sleep=sleep, clock=clock,
                          progress=progress)
    c2, u2 = apply_all(kube, workloads)
    n = wait_ready(kube, workloads, timeout_s=timeout_s, sleep=sleep, clock=clock, progress=progress)
    changed = c1 + c2
    what = f"{changed} changed, {u1 + u2} unchanged" if changed else f"all {u1 + u2} objects unchanged"
    return bool(changed), f"profile {profile.name}: {what}; {n} workloads ready" + (
        "; the stand-ins carry traffic" if traffic else "")
