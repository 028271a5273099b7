"""Cilium through its Helm chart, fitted to k3d (values in cni/cilium/).

Before the chart: bpffs at /sys/fs/bpf and cgroup2 at /run/cilium/cgroupv2,
both shared mounts, inside every node container, made only where missing
(Cilium's Rancher Desktop recipe, Documentation/installation/
rancher-desktop-override.yaml; k3d-io/k3d #363 for why nodes lack them).
Ready: DaemonSet cilium and Deployment cilium-operator rolled out.
"""

from __future__ import annotations

from cluster import versions
from cluster.live.observe import cni
from cluster.live.setup.pipeline import Action, Run, Session, Wait
from cluster.local import helm
from cluster.paths import shipped
from cluster.seams.kube import Kube
from cluster.seams.runner import Runner

VALUES = shipped("cni") / "cilium" / "values.yaml"
NAMESPACE = cni.CILIUM_NAMESPACE
RELEASE = "cilium"

# Agent image pull + BPF program compilation on 2 cores: 10 minutes.
READY_TIMEOUT_S = 600

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


def install_actions(context: str) -> list[Action]:
    return [
        Run(helm_argv(context), files=(VALUES,), why=f"Cilium {versions.CILIUM_VERSION} Helm chart"),
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
    a_ok, a = cni.cilium_agent_rolled_out(kube)
    o_ok, o = cni.cilium_operator_rolled_out(kube)
    return f"Cilium {versions.CILIUM_VERSION} deployed; {a}; {o}" if a_ok and o_ok else None
