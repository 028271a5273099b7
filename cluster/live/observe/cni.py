"""Which policy engine runs on a live cluster, and is it healthy?

Read from the objects each CNI leaves behind, so it works on any cluster
(ours from k3d, or one the user names): Calico's tigera operator
Installation and calico-node DaemonSet, Cilium's agent DaemonSet or its
CiliumNodes, and
flannel's node annotation for k3s (whose embedded kube-router policy
controller has no object of its own; k3s records its arguments on the node).
Installing a CNI is the local layer's business (cluster.local.calico,
cluster.local.cilium).
"""

from __future__ import annotations

from cluster.live.observe import readiness
from cluster.seams.kube import Kube

FLANNEL_ANNOTATION = "flannel.alpha.coreos.com/backend-type"
K3S_ARGS_ANNOTATION = "k3s.io/node-args"
CILIUM_NAMESPACE = "kube-system"


# -- Calico (tigera operator) ------------------------------------------------


def calico_status_available(kube: Kube) -> tuple[bool, str]:
    ts = kube.get("operator.tigera.io/v1", "TigeraStatus", "calico")
    if ts is None:
        return False, "TigeraStatus calico not reported yet"
    st = readiness.condition(ts, "Available")
    degraded = readiness.condition(ts, "Degraded")
    return st == "True", f"calico Available={st or '?'} Degraded={degraded or '?'}"


def calico_node_rolled_out(kube: Kube) -> tuple[bool, str]:
    return readiness.workload_ready(kube.get("apps/v1", "DaemonSet", "calico-node", "calico-system"),
                                    "DaemonSet calico-system/calico-node")


def calico_running_version(kube: Kube) -> str | None:
    inst = kube.get("operator.tigera.io/v1", "Installation", "default")
    return None if inst is None else (inst.get("status") or {}).get("calicoVersion")


def calico_present(kube: Kube) -> bool:
    return kube.get("operator.tigera.io/v1", "Installation", "default") is not None or \
        kube.get("apps/v1", "DaemonSet", "calico-node", "calico-system") is not None


def calico_health(kube: Kube) -> tuple[bool, str]:
    ok, ts = calico_status_available(kube)
    node_ok, node = calico_node_rolled_out(kube)
    return ok and node_ok, f"Calico {calico_running_version(kube) or '?'}: {ts}; {node}"


# -- Cilium --------------------------------------------------------------------


def cilium_agent_rolled_out(kube: Kube) -> tuple[bool, str]:
    return readiness.workload_ready(kube.get("apps/v1", "DaemonSet", "cilium", CILIUM_NAMESPACE),
                                    "DaemonSet kube-system/cilium")


def cilium_operator_rolled_out(kube: Kube) -> tuple[bool, str]:
    return readiness.workload_ready(kube.get("apps/v1", "Deployment", "cilium-operator", CILIUM_NAMESPACE),
                                    "Deployment kube-system/cilium-operator")


def hubble_relay_rolled_out(kube: Kube) -> tuple[bool, str]:
    """hubble-relay, which cni/cilium/values.yaml enables for inv observe."""
    return readiness.workload_ready(kube.get("apps/v1", "Deployment", "hubble-relay", CILIUM_NAMESPACE),
                                    "Deployment kube-system/hubble-relay")


def cilium_present(kube: Kube) -> bool:
    """Cilium's agent DaemonSet, or the CiliumNode each agent registers for its
    node (an agent run on the hosts, outside any DaemonSet, registers one too;
    a cluster without Cilium's CRDs lists none)."""
    return kube.get("apps/v1", "DaemonSet", "cilium", CILIUM_NAMESPACE) is not None or \
        bool(kube.list("cilium.io/v2", "CiliumNode"))


def cilium_health(kube: Kube) -> tuple[bool, str]:
    a_ok, a = cilium_agent_rolled_out(kube)
    o_ok, o = cilium_operator_rolled_out(kube)
    return a_ok and o_ok, f"{a}; {o}"


# -- k3s (flannel + kube-router's policy controller) ------------------------------


def k3s_policy_controller_disabled(kube: Kube) -> bool:
    for node in kube.list("v1", "Node"):
        args = ((node.get("metadata") or {}).get("annotations") or {}).get(K3S_ARGS_ANNOTATION, "")
        if "--disable-network-policy" in args:
            return True
    return False


# -- ClusterNetworkPolicy -----------------------------------------------------------

KCNP_CRD = "clusternetworkpolicies.policy.networking.k8s.io"


def crd_established(kube: Kube, name: str = KCNP_CRD) -> tuple[bool, str]:
    """A CRD is served once its Established condition is True (a fresh one has no conditions yet)."""
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    if crd is None:
        return False, f"CRD {name} not there yet"
    conds = {c.get("type"): c.get("status") for c in (crd.get("status") or {}).get("conditions") or []}
    return conds.get("Established") == "True", f"CRD {name} Established={conds.get('Established') or '?'}"


# -- any cluster -----------------------------------------------------------------


def detect_cni(kube: Kube) -> str:
    """Which policy engine runs on a live cluster: calico, cilium, k3s (flannel) or none."""
    if calico_present(kube):
        return "calico"
    if cilium_present(kube):
        return "cilium"
    for node in kube.list("v1", "Node"):
        if FLANNEL_ANNOTATION in ((node.get("metadata") or {}).get("annotations") or {}):
            return "k3s"
    return "none"


def cni_label(cni: str | None) -> str:
    """How messages name the policy engine; a dataplane that leaves no object
    in the API (kube-router run on the hosts, say) is detected as "none"."""
    return "this cluster's CNI" if cni in (None, "none") else cni


def cni_health(kube: Kube, cni: str) -> tuple[bool, str]:
    if cni == "calico":
        return calico_health(kube)
    if cni == "cilium":
        return cilium_health(kube)
    if cni == "k3s":
        off = k3s_policy_controller_disabled(kube)
        return (not off, "flannel + k3s network policy controller"
                + (" (DISABLED by --disable-network-policy)" if off else ""))
    return False, "no CNI detected"
