"""Calico through the tigera operator (Calico v3.31 docs; pinned at v3.32).

Install: the operator CRDs and the operator with server-side apply (the
upgrade page's form: `kubectl apply --server-side --force-conflicts`, which
also makes a re-run idempotent, where the quickstart's `kubectl create` would
fail on existing objects and a client-side apply exceeds the annotation size
limit of the CRD bundle), then our Installation (cni/calico/).
Ready: TigeraStatus "calico" is Available and calico-node is rolled out.
"""

from __future__ import annotations

from pathlib import Path

from cluster import versions
from cluster.live.observe import cni
from cluster.live.setup.pipeline import Action, Run, Wait
from cluster.paths import shipped
from cluster.seams.kube import FIELD_MANAGER, Kube

CUSTOM_RESOURCES = shipped("cni") / "calico" / "custom-resources.yaml"
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
        Wait("TigeraStatus calico is Available", lambda s: cni.calico_status_available(s.kube), READY_TIMEOUT_S),
        Wait("DaemonSet calico-system/calico-node is rolled out",
             lambda s: cni.calico_node_rolled_out(s.kube), READY_TIMEOUT_S),
    ]


def installed(kube: Kube) -> str | None:
    """A reason when the pinned Calico already runs healthy here, else None."""
    running = cni.calico_running_version(kube)
    if running != versions.CALICO_VERSION:
        return None
    ok, _ = cni.calico_status_available(kube)
    node_ok, detail = cni.calico_node_rolled_out(kube)
    return f"Calico {running} running, {detail}" if ok and node_ok else None
