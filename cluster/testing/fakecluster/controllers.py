"""What the fake cluster's controllers do when objects are written.

* workloads (the kinds of ``WORKLOAD_KINDS``) are "rolled out" at once:
  their status says ready and Running+Ready Pods appear with real-looking
  names (``web-6d4f9b7c8d-x2k7p``, ``db-0``), the template's labels, and
  addresses 10.42.0.N; a bare Pod is scheduled and running at once too;
* a new namespace gets its ``default`` ServiceAccount, as
  kube-controller-manager's serviceaccount controller creates it:
  ``service_account_delay_s`` later on ``clock`` (0: at once). Until then
  a Pod in it is refused (admission.py); ``service_account_delay_s
  =None`` is a cluster whose controller manager is down: never;
* a namespace being deleted is gone once ``namespace_grace_s`` has passed
  on ``clock``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid

from cluster.errors import KubeError
from cluster.policy.kinds import WORKLOAD_KINDS
from cluster.testing.fakecluster.store import Store, copy_object, utc_now

POD_NETWORK = ipaddress.ip_network("10.42.0.0/16")  # k3s's default cluster CIDR
FIRST_POD_IP = ipaddress.ip_address("10.42.0.10")
# The alphabet Kubernetes uses for generated name suffixes (no vowels, no
# look-alike characters), so fake names look like real ones.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _safe_suffix(seed: str, n: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE[b % len(_SAFE)] for b in digest[:n])


class Controllers(Store):
    """Workloads to pods, pods to running, namespaces to ServiceAccounts,
    terminated namespaces to nothing."""

    def _init_controllers(self, namespace_grace_s: float, service_account_delay_s: float | None) -> None:
        self.namespace_grace_s = namespace_grace_s
        self.service_account_delay_s = service_account_delay_s
        self._next_ip = int(FIRST_POD_IP)
        # Namespaces whose default ServiceAccount the simulated controller
        # manager has not created yet, with when each namespace was created.
        self._sa_pending: dict[str, float] = {}

    def _written(self, obj: dict, old: dict | None) -> None:
        kind = obj["kind"]
        if WORKLOAD_KINDS.get(kind) == obj["apiVersion"]:
            self._reconcile(obj)
        if kind == "Pod":
            self._start_pod(obj, node=self._node_name())
        if kind == "Namespace" and old is None:
            self._sa_pending[obj["metadata"]["name"]] = self.clock()
            self._create_service_accounts()
        super()._written(obj, old)

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
                                       "creationTimestamp": utc_now()}}
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
                self._forget(("v1", "Namespace", None, name))
        super()._reap()

    # -- workloads ----------------------------------------------------------

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
                                   "state": {"running": {"startedAt": utc_now()}}} for c in containers],
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
        template = copy_object(spec.get("template") or {})
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
                                "creationTimestamp": utc_now(), "generation": 1},
                   "spec": copy_object(template.get("spec") or {})}
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
            obj["status"] = {"active": n, "ready": n, "startTime": utc_now()}
