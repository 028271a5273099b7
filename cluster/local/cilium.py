"""Cilium through its Helm chart, fitted to k3d (values in cni/cilium/).

Before the chart: bpffs at /sys/fs/bpf and cgroup2 at /run/cilium/cgroupv2,
both shared mounts, inside every node container, made only where missing
(Cilium's Rancher Desktop recipe, Documentation/installation/
rancher-desktop-override.yaml; k3d-io/k3d #363 for why nodes lack them).
The chart enables Kubernetes ClusterNetworkPolicy (the values) but leaves
its CRD to the user (Cilium 1.20 Documentation/network/kubernetes/policy.rst,
"Enabling KCNP"): the pinned CRD this tool ships is applied first, its
digest checked, and established before the agent starts watching the kind.
Ready: DaemonSet cilium and Deployment cilium-operator rolled out.
"""

from __future__ import annotations

import hashlib

from cluster import versions
from cluster.errors import DashiError
from cluster.live.observe import cni
from cluster.live.setup.pipeline import Action, Run, Session, Wait
from cluster.local import helm
from cluster.paths import shipped
from cluster.policy.schema import CNP_CRD
from cluster.seams.kube import Kube
from cluster.seams.runner import Runner

VALUES = shipped("cni") / "cilium" / "values.yaml"
NAMESPACE = cni.CILIUM_NAMESPACE
RELEASE = "cilium"

# Agent image pull + BPF program compilation on 2 cores: 10 minutes.
READY_TIMEOUT_S = 600
# A CRD is established within seconds of being created.
CRD_TIMEOUT_S = 60

# Runs in each node container (k3s image: busybox sh, grep, mount). It only
# mounts what /proc/mounts lacks; --make-shared on a shared mount is a no-op.
# Prints what it mounted so the stage can tell "changed" from "already there".
MOUNT_SCRIPT = (
    "set -e; "
    'if ! grep -qs " /sys/fs/bpf bpf " /proc/mounts; then '
    "mount bpffs /sys/fs/bpf -t bpf; echo mounted /sys/fs/bpf; fi; "
    "mount --make-shared /sys/fs/bpf; "
    'if ! grep -qs " /run/cilium/cgroupv2 cgroup2 " /proc/mounts; then '
    "mkdir -p /run/cilium/cgroupv2; mount -t cgroup2 none /run/cilium/cgroupv2; "
    "echo mounted /run/cilium/cgroupv2; fi; "
    "mount --make-shared /run/cilium/cgroupv2"
)


def mount_argv(node: str) -> list[str]:
    return ["docker", "exec", node, "sh", "-c", MOUNT_SCRIPT]


def mount_actions(nodes: list[str]) -> list[Action]:
    return [Run(mount_argv(n), why=f"bpffs + cgroup2 in {n}, only where missing") for n in nodes]


def run_mounts(s: Session, nodes: list[str]) -> tuple[bool, str]:
    """Mount what is missing on each node; (whether anything was mounted, what was done)."""
    mounted = []
    for node in nodes:
        s.progress(node)
        out = s.runner.run(mount_argv(node)).stdout
        mounted += [f"{node}:{line.split()[-1]}" for line in out.splitlines() if line.startswith("mounted ")]
    return bool(mounted), (("mounted " + ", ".join(mounted)) if mounted
                           else "bpffs and cgroup2 already mounted on every node")


def helm_argv(context: str) -> list[str]:
    return ["helm", "upgrade", "--install", RELEASE, "cilium",
            "--repo", versions.CILIUM_CHART_REPO, "--version", versions.CILIUM_VERSION,
            "--namespace", NAMESPACE, "--kube-context", context, "--values", str(VALUES)]


def kcnp_crd() -> str:
    """The shipped ClusterNetworkPolicy CRD's path, once its digest is the pinned one."""
    digest = hashlib.sha256(CNP_CRD.read_bytes()).hexdigest()
    if digest != versions.NETWORK_POLICY_API_SHA256:
        raise DashiError(f"{CNP_CRD}: sha256 {digest} is not the pinned one of network-policy-api "
                         f"{versions.NETWORK_POLICY_API_VERSION} ({versions.NETWORK_POLICY_API_SHA256}): "
                         "reinstall dashi-cluster")
    return str(CNP_CRD)


def install_actions(context: str) -> list[Action]:
    return [
        Run(["kubectl", "--context", context, "apply", "--server-side", "--force-conflicts", "-f", kcnp_crd()],
            why=f"the ClusterNetworkPolicy CRD (sigs.k8s.io/network-policy-api {versions.NETWORK_POLICY_API_VERSION},"
                " sha256 checked), which the chart leaves to the user"),
        Wait(f"CRD {cni.KCNP_CRD} is established", lambda s: cni.crd_established(s.kube), CRD_TIMEOUT_S),
        Run(helm_argv(context), files=(VALUES,), why=f"Cilium {versions.CILIUM_VERSION} Helm chart "
                                                      "(k8sClusterNetworkPolicy enabled)"),
        Wait("DaemonSet kube-system/cilium is rolled out", lambda s: cni.cilium_agent_rolled_out(s.kube), READY_TIMEOUT_S),
        Wait("Deployment kube-system/cilium-operator is rolled out",
             lambda s: cni.cilium_operator_rolled_out(s.kube), READY_TIMEOUT_S),
        Wait("Deployment kube-system/hubble-relay is rolled out (inv observe reads flows through it)",
             lambda s: cni.hubble_relay_rolled_out(s.kube), READY_TIMEOUT_S),
    ]


def installed(runner: Runner, kube: Kube, context: str) -> str | None:
    """A reason when the pinned chart is deployed and rolled out, else None."""
    rel = helm.release(runner, context, NAMESPACE, RELEASE)
    if not rel or rel.get("status") != "deployed" or rel.get("chart") != f"cilium-{versions.CILIUM_VERSION}":
        return None
    if not cni.crd_established(kube)[0]:
        return None
    a_ok, a = cni.cilium_agent_rolled_out(kube)
    o_ok, o = cni.cilium_operator_rolled_out(kube)
    return f"Cilium {versions.CILIUM_VERSION} deployed; {a}; {o}" if a_ok and o_ok else None
