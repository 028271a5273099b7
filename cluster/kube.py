"""The one seam to the Kubernetes API.

Everything in the package that talks to a cluster depends on the narrow
``Kube`` protocol below, which lists only the calls we make. ``ClientKube``
implements it with the official ``kubernetes`` client; tests use the fake in
``cluster.fakekube``. Objects are plain dicts (as in YAML), addressed by
apiVersion and kind, so one adapter serves core, apps, networking and custom
resources (TigeraStatus) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Our objects carry this label and are written with this field manager, so we
# can tell ours from the user's and never touch what is not ours.
FIELD_MANAGER = "dashi-cluster"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "dashi-cluster"


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


class Kube(Protocol):
    """The calls we make to a cluster. All raise ``KubeError`` on API failure."""

    def context(self) -> str:
        """Name of the kubeconfig context in use."""

    def server(self) -> str:
        """API server URL of that context."""

    def apply(self, obj: dict) -> dict:
        """Server-side apply ``obj`` with our field manager (force conflicts); returns the live object."""

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The live object, or None when it does not exist."""

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict]:
        """Live objects of a kind (all namespaces when namespace is None)."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete; True if it existed. Absent objects are not an error."""

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None,
             timeout: float = 10.0) -> ExecResult:
        """Run argv in a container of a pod and return its exit code and output."""
