"""The enforcement canary: proof that NetworkPolicies are enforced here.

In a throwaway namespace: a server pod (agnhost porter on 8080) and a client
pod. The client must reach the server before any policy, be blocked once a
default-deny ingress policy exists, and reach it again once an allow policy
names it; then the namespace is deleted. A CNI that lets the deny through
makes every policy on this cluster documentation only, and we say so.

When a profile holds ClusterNetworkPolicies (``cluster_policy=True``), a
fourth phase proves that kind is enforced too, and above NetworkPolicy: an
Admin-tier Deny of the client, applied over the allow, must block it again
(the CRD must be served first; the cluster-scoped policy is deleted after).

"Blocked" is a timeout (Calico and Cilium drop the packet) or a refusal:
k3s' embedded kube-router controller REJECTs with icmp-port-unreachable
(its KUBE-POD-FW-* chains), which agnhost reports as REFUSED. The first
phase proved the server listens on that port, so a later refusal on it can
only be the policy. Which of the two the deny phase saw is the CNI's deny
behaviour (``CanaryResult.deny_behaviour``): it is kept with the cluster's
state and decides how every later probe's refusal is read (under a CNI
that drops, a refusal means the packet reached the pod).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable

from cluster import versions
from cluster.errors import DashiError
from cluster.live.observe import probe, readiness
from cluster.live.observe.poll import poll_until, wait_until
from cluster.live.setup import standins
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Kube

PORT = 8080
SERVER, CLIENT = "canary-server", "canary-client"
# Policies are programmed asynchronously: upstream e2e re-polls every 1 s for
# up to 10 s; k3s' kube-router on a 2-core laptop can be slower, so 30 s.
PHASE_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 1.0
# Two agnhost pods: an image pull at most (the stand-ins use the same image).
PODS_TIMEOUT_S = 180.0


class NotEnforced(DashiError):
    """The CNI let traffic through that a NetworkPolicy denies."""

    exit_code = 3


def namespace_name() -> str:
    return f"dashi-canary-{secrets.token_hex(3)}"


def _labels(extra: dict | None = None) -> dict:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, "dashi.io/canary": "true", **(extra or {})}


def _pod(ns: str, name: str, args: list[str], env: list[dict] | None = None, probe_port: bool = False) -> dict:
    c = {"name": "agnhost", "image": versions.AGNHOST_IMAGE, "imagePullPolicy": "IfNotPresent",
         "args": args, "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}
    if env:
        c["env"] = env
    if probe_port:
        c["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
        # The kubelet probes from the node; policy-enforcing CNIs always let
        # a node reach its own pods, so readiness survives the deny policy.
        c["readinessProbe"] = {"tcpSocket": {"port": PORT}, "periodSeconds": 2}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": _labels({"app": name})},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [c]}}


def workload_manifests(ns: str) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": _labels()}},
        _pod(ns, SERVER, ["porter"], env=[{"name": f"SERVE_PORT_{PORT}", "value": "canary"}], probe_port=True),
        _pod(ns, CLIENT, ["pause"]),
    ]


def deny_policy(ns: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "canary-default-deny", "namespace": ns, "labels": _labels()},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


KCNP_API = "policy.networking.k8s.io/v1beta1"
KCNP_CRD = "clusternetworkpolicies.policy.networking.k8s.io"
KCNP_PHASE = "cluster-network-policy"


def admin_deny_policy(ns: str) -> dict:
    """An Admin-tier ClusterNetworkPolicy denying the client's ingress to the
    server, over the NetworkPolicy that allows it (cluster-scoped: named after
    the namespace, deleted by the canary itself)."""
    return {"apiVersion": KCNP_API, "kind": "ClusterNetworkPolicy",
            "metadata": {"name": f"{ns}-admin-deny", "labels": _labels()},
            "spec": {"tier": "Admin", "priority": 0,
                     "subject": {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                                          "podSelector": {"matchLabels": {"app": SERVER}}}},
                     "ingress": [{"name": "deny-canary-client", "action": "Deny",
                                  "from": [{"pods": {"namespaceSelector": {
                                      "matchLabels": {"kubernetes.io/metadata.name": ns}},
                                      "podSelector": {"matchLabels": {"app": CLIENT}}}}],
                                  "protocols": [{"tcp": {"destinationPort": {"number": PORT}}}]}]}}


def proves_cluster_policies(evidence: str) -> bool:
    """Whether a canary's summary (kept with the cluster's state) includes a
    passed ClusterNetworkPolicy phase."""
    return f"{KCNP_PHASE}: blocked" in (evidence or "")


def allow_policy(ns: str) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "canary-allow-client", "namespace": ns, "labels": _labels()},
            "spec": {"podSelector": {"matchLabels": {"app": SERVER}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": CLIENT}}}],
                                  "ports": [{"protocol": "TCP", "port": PORT}]}]}}


@dataclass
class Phase:
    name: str
    expect: str  # "reachable" | "blocked"
    observed: str = "not run"  # "reachable" | "blocked" | kind of failure
    kind: str = ""  # the probe's kind: connected, timeout, refused, dns, other
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.observed == self.expect


@dataclass
class CanaryResult:
    namespace: str
    phases: list[Phase] = field(default_factory=list)
    expected: int = 3  # 4 with the ClusterNetworkPolicy phase
    # Why the ClusterNetworkPolicy phase could not run (no CRD served).
    unserved: str = ""

    @property
    def ok(self) -> bool:
        return len(self.phases) == self.expected and all(p.ok for p in self.phases)

    @property
    def enforced(self) -> bool | None:
        """True/False once the deny phase ran; None when it could not run."""
        deny = next((p for p in self.phases if p.name == "deny"), None)
        if deny is None or deny.observed == "not run":
            return None
        return deny.observed == "blocked"

    @property
    def deny_behaviour(self) -> str | None:
        """"drop" or "reject", as the deny phase measured it; None when it did not block."""
        deny = next((p for p in self.phases if p.name == "deny"), None)
        if deny is None or deny.observed != "blocked":
            return None
        return {"timeout": "drop", "refused": "reject"}.get(deny.kind)

    def summary(self) -> str:
        return "; ".join(f"{p.name}: {p.observed}" + (f" ({p.detail})" if p.detail and not p.ok else "")
                         for p in self.phases)


def _observe(kind: str) -> str:
    if kind == "connected":
        return "reachable"
    if kind in ("timeout", "refused"):
        return "blocked"
    return kind


def _phase(kube: Kube, ns: str, ip: str, ph: Phase, connect, sleep, clock, progress) -> Phase:
    def settled() -> tuple[bool, str]:
        res = connect(kube, ns, CLIENT, ip, PORT, "TCP", 1.0)
        ph.observed, ph.kind, ph.detail = _observe(res.kind), res.kind, res.detail or res.kind
        return ph.ok, f"{ph.name}: expect {ph.expect}, observed {ph.observed}"

    ph.seconds = poll_until(settled, timeout_s=PHASE_TIMEOUT_S, interval_s=POLL_INTERVAL_S, clock=clock,
                            sleep=sleep, progress=progress).seconds
    return ph


def plan(ns: str = "dashi-canary-<random>", cluster_policy: bool = False) -> list[tuple[str, object]]:
    """What the canary does, for --dry-run: (description, manifests or None)."""
    steps = [
        ("create the throwaway namespace and two agnhost pods", workload_manifests(ns)),
        (f"probe {CLIENT} -> {SERVER}:{PORT} (agnhost connect): expect reachable", None),
        ("apply a default-deny ingress policy", [deny_policy(ns)]),
        (f"probe again, re-polling up to {int(PHASE_TIMEOUT_S)}s: expect blocked", None),
        ("apply a policy allowing the client on 8080", [allow_policy(ns)]),
        (f"probe again, up to {int(PHASE_TIMEOUT_S)}s: expect reachable", None),
    ]
    if cluster_policy:
        steps += [("the profile holds ClusterNetworkPolicies: apply an Admin Deny of the client over the allow",
                   [admin_deny_policy(ns)]),
                  (f"probe again, up to {int(PHASE_TIMEOUT_S)}s: expect blocked; delete the ClusterNetworkPolicy",
                   None)]
    return steps + [(f"delete namespace {ns}", None)]


def run(kube: Kube, *, sleep: Callable[[float], None], clock: Callable[[], float],
        progress: Callable[[str], None] = lambda d: None, connect=None,
        namespace: str | None = None, cluster_policy: bool = False) -> CanaryResult:
    connect = connect or probe.connect
    ns = namespace or namespace_name()
    result = CanaryResult(ns, expected=4 if cluster_policy else 3)
    if cluster_policy and kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", KCNP_CRD) is None:
        # Nothing to test the kind with: said before anything is created.
        result.unserved = f"the cluster does not serve ClusterNetworkPolicy (no CRD {KCNP_CRD})"
        return result
    kcnp = admin_deny_policy(ns)
    try:
        namespace, *pod_objects = workload_manifests(ns)
        kube.apply(namespace)
        standins.wait_service_accounts(kube, [ns], sleep=sleep, clock=clock, progress=progress)
        for obj in pod_objects:
            kube.apply(obj)
        pods: dict[str, dict | None] = {}

        def both_ready() -> tuple[bool, str]:
            pods.update({n: kube.get("v1", "Pod", n, ns) for n in (SERVER, CLIENT)})
            states = [readiness.workload_ready(p, f"Pod {ns}/{n}") for n, p in pods.items()]
            return all(ok for ok, _ in states), "pods: " + ", ".join(d for _, d in states)

        wait_until("the canary pods are Ready", both_ready, timeout_s=PODS_TIMEOUT_S, interval_s=2.0, clock=clock,
                   sleep=sleep, progress=progress,
                   timed_out=lambda res: f"canary pods not ready after {int(PODS_TIMEOUT_S)}s: "
                                         f"{res.detail.removeprefix('pods: ')}")
        ip = (pods[SERVER].get("status") or {}).get("podIP")
        if not ip:
            raise DashiError(f"canary server pod in {ns} has no IP")

        steps = [("before", "reachable", None), ("deny", "blocked", deny_policy(ns)),
                 ("allow", "reachable", allow_policy(ns))]
        if cluster_policy:
            steps.append((KCNP_PHASE, "blocked", kcnp))
        for name, expect, policy in steps:
            if policy is not None:
                kube.apply(policy)
            ph = _phase(kube, ns, ip, Phase(name, expect), connect, sleep, clock, progress)
            result.phases.append(ph)
            if not ph.ok:
                break
        return result
    finally:
        try:
            if cluster_policy:
                kube.delete(KCNP_API, "ClusterNetworkPolicy", kcnp["metadata"]["name"])
            kube.delete("v1", "Namespace", ns)
        except DashiError:
            pass  # reported by the caller's summary; a leftover namespace is labelled ours


def measure(kube: Kube, state, cni: str, *, sleep: Callable[[float], None], clock: Callable[[], float],
            progress: Callable[[str], None] = lambda d: None, connect=None,
            cluster_policy: bool = False) -> CanaryResult:
    """Run the canary and keep the deny behaviour it measured, if any, in
    ``state`` (the cluster's ``ClusterState``) under the CNI name ``cni``,
    with its summary as evidence (``proves_cluster_policies`` reads it).
    The caller reads the result with ``verdict``."""
    result = run(kube, sleep=sleep, clock=clock, progress=progress, connect=connect, cluster_policy=cluster_policy)
    if result.deny_behaviour:
        state.save_cni(name=cni, deny_behaviour=result.deny_behaviour, evidence=result.summary())
    return result


def verdict(result: CanaryResult, cni: str) -> str:
    """One line for a passing canary; raises with the evidence otherwise."""
    if result.unserved:
        raise NotEnforced(f"{result.unserved}, so this profile's ClusterNetworkPolicy steps cannot apply: install "
                          "it (inv cluster-up --cni cilium does), on a CNI that enforces the kind")
    if result.ok:
        deny = result.phases[1]
        how = "dropped" if deny.kind == "timeout" else "rejected"
        line = f"NetworkPolicy enforced by {cni}: reachable → {how} by deny → reachable with allow"
        if result.expected == 4:
            line += " → blocked by an Admin ClusterNetworkPolicy Deny over the allow (ClusterNetworkPolicy enforced)"
        return line
    before = result.phases[0] if result.phases else None
    if before is None or not before.ok:
        raise DashiError("canary: the client could not reach the server before any policy "
                         f"({before.detail if before else 'no probe ran'}): pod networking is broken, "
                         "so enforcement could not be tested")
    if result.enforced is False:
        raise NotEnforced(
            f"NETWORK POLICIES ARE NOT ENFORCED on this cluster (CNI {cni}): a default-deny policy "
            f"left the canary server reachable for {int(PHASE_TIMEOUT_S)}s. Every NetworkPolicy here is "
            "documentation only. Recreate the cluster with an enforcing CNI (--cni calico or --cni cilium).")
    if len(result.phases) == 4 and not result.phases[3].ok:
        raise NotEnforced(
            f"CLUSTERNETWORKPOLICY IS NOT ENFORCED on this cluster (CNI {cni}): an Admin-tier Deny left the "
            f"canary server reachable for {int(PHASE_TIMEOUT_S)}s, so this profile's ClusterNetworkPolicy steps "
            "would be documentation only. Use a CNI that enforces it: Cilium >= 1.20 with "
            "k8sClusterNetworkPolicy.enabled (inv cluster-up --cni cilium), or Calico >= 3.32; k3s's "
            "kube-router does not")
    raise NotEnforced(f"canary: the allow policy did not restore traffic ({result.summary()}): "
                      f"{cni} enforces deny but not the allow rule as written")
