"""Calico through the tigera operator (Calico v3.31 docs).

Install: the operator CRDs and the operator with server-side apply (the
upgrade page's form: `kubectl apply --server-side --force-conflicts`, which
also makes a re-run idempotent, where the quickstart's `kubectl create` would
fail on existing objects and a client-side apply exceeds the annotation size
limit of the CRD bundle), then our Installation (cni/calico/).
Ready: TigeraStatus "calico" is Available and calico-node is rolled out.
"""

from __future__ import annotations

from pathlib import Path

from cluster import readiness, versions
from cluster.kube import FIELD_MANAGER, Kube
from cluster.lifecycle import Action, Run, Wait
from cluster.runner import REPO_ROOT

CUSTOM_RESOURCES = REPO_ROOT / "cni" / "calico" / "custom-resources.yaml"
OPERATOR_CRDS = ("installations.operator.tigera.io", "apiservers.operator.tigera.io",
                 "tigerastatuses.operator.tigera.io")

# Cold image pulls of operator, node, typha, cni, csi, kube-controllers and
# apiserver on a laptop connection: 10 minutes before we call it stuck.
READY_TIMEOUT_S = 600
# The CRDs are established within seconds of being created.
CRD_TIMEOUT = "60s"


def kubectl(context: str, *args: str) -> list[str]:
    return ["kubectl", "--context", context, *args]


def install_actions(context: str, custom_resources: Path = CUSTOM_RESOURCES) -> list[Action]:
    return [
        Run(kubectl(context, "apply", "--server-side", "--force-conflicts", "-f",
                    versions.CALICO_OPERATOR_CRDS_URL),
            why=f"Calico {versions.CALICO_VERSION} operator CRDs"),
        Run(kubectl(context, "apply", "--server-side", "--force-conflicts", "-f",
                    versions.CALICO_OPERATOR_URL),
            why="the tigera operator"),
        Run(kubectl(context, "wait", "--for=condition=established", f"--timeout={CRD_TIMEOUT}",
                    *[f"crd/{c}" for c in OPERATOR_CRDS]),
            why="the Installation kind must be served before we create one"),
        Run(kubectl(context, "apply", "--server-side", "--force-conflicts",
                    f"--field-manager={FIELD_MANAGER}", "-f", str(custom_resources)),
            files=(custom_resources,), why="Installation fitted to k3s (pod CIDR, IP forwarding)"),
        Wait("TigeraStatus calico is Available", lambda s: tigerastatus_available(s.kube), READY_TIMEOUT_S),
        Wait("DaemonSet calico-system/calico-node is rolled out",
             lambda s: node_rolled_out(s.kube), READY_TIMEOUT_S),
    ]


def tigerastatus_available(kube: Kube) -> tuple[bool, str]:
    ts = kube.get("operator.tigera.io/v1", "TigeraStatus", "calico")
    if ts is None:
        return False, "TigeraStatus calico not reported yet"
    st = readiness.condition(ts, "Available")
    degraded = readiness.condition(ts, "Degraded")
    return st == "True", f"calico Available={st or '?'} Degraded={degraded or '?'}"


def node_rolled_out(kube: Kube) -> tuple[bool, str]:
    return readiness.workload_ready(kube.get("apps/v1", "DaemonSet", "calico-node", "calico-system"),
                                    "DaemonSet calico-system/calico-node")


def present(kube: Kube) -> bool:
    return kube.get("operator.tigera.io/v1", "Installation", "default") is not None or \
        kube.get("apps/v1", "DaemonSet", "calico-node", "calico-system") is not None


def installed(kube: Kube) -> str | None:
    """A reason when the pinned Calico already runs healthy here, else None."""
    inst = kube.get("operator.tigera.io/v1", "Installation", "default")
    if inst is None:
        return None
    running = (inst.get("status") or {}).get("calicoVersion")
    if running != versions.CALICO_VERSION:
        return None
    ok, _ = tigerastatus_available(kube)
    node_ok, detail = node_rolled_out(kube)
    return f"Calico {running} running, {detail}" if ok and node_ok else None


def health(kube: Kube) -> tuple[bool, str]:
    ok, ts = tigerastatus_available(kube)
    node_ok, node = node_rolled_out(kube)
    inst = kube.get("operator.tigera.io/v1", "Installation", "default") or {}
    ver = (inst.get("status") or {}).get("calicoVersion", "?")
    return ok and node_ok, f"Calico {ver}: {ts}; {node}"


