"""What every entry point shares: the console and the real Kubernetes client."""

from __future__ import annotations

from cluster.seams.kube import Kube
from cluster.seams.kubeclient import ClientKube
from cluster.ui import make_console

__all__ = ["make_console", "real_kube"]


def real_kube(context: str | None) -> Kube:
    """The real adapter for a kubeconfig context (None: the current one).
    It reads KUBECONFIG as kubectl does."""
    return ClientKube(context=context)
