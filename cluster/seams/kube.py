"""The one seam to the Kubernetes API.

Everything in the package that talks to a cluster depends on the narrow
``Kube`` protocol below, which lists only the calls we make. ``ClientKube``
(cluster.seams.kubeclient) implements it with the official ``kubernetes`` client; tests use the fake in
``cluster.testing.fakecluster``. Objects are plain dicts (as in YAML), addressed
by apiVersion and kind, so one adapter serves core, apps, networking,
coordination and custom resources (TigeraStatus, CiliumNetworkPolicy) alike:
the dynamic client discovers a CRD's kind like a built-in one, and a kind
the server does not serve (no Cilium CRDs) lists as nothing.

Every failure crosses the seam as a ``KubeError``: ``KubeUnreachable`` when
the API server did not answer (refused, reset, timed out, a dropped
websocket), ``KubeConflict`` for a 409, a plain ``KubeError`` with the
status otherwise. Label selectors cross it as structures, the API's own
``LabelSelector`` shape (``{"matchLabels": {...}, "matchExpressions":
[...]}``); ``ClientKube`` renders them to the query string.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from cluster.errors import DashiError, Invalid, KubeError
from cluster.selectors import match_labels, parse_equality, render
from cluster.threads import start_quiet

# Our objects carry this label and are written with this field manager, so we
# can tell ours from the user's and never touch what is not ours.
FIELD_MANAGER = "dashi-cluster"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "dashi-cluster"

Selector = Mapping  # a LabelSelector: {"matchLabels": {k: v}, "matchExpressions": [{key, operator, values}]}


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


class Kube(Protocol):
    """The calls we make to a cluster. All raise ``KubeError`` on failure."""

    def context(self) -> str:
        """Name of the kubeconfig context in use."""

    def server(self) -> str:
        """API server URL of that context."""

    def proxy(self) -> str | None:
        """The proxy that context's kubeconfig routes requests through (its
        cluster's ``proxy-url``), or None."""

    def apply(self, obj: dict) -> dict:
        """Server-side apply ``obj`` with our field manager (force conflicts); returns the live object.
        Applying what is already there changes nothing, resourceVersion included."""

    def create(self, obj: dict) -> dict:
        """Create ``obj``; ``KubeConflict`` when it already exists."""

    def update(self, obj: dict) -> dict:
        """Replace the live object with ``obj`` (labels, annotations and spec as given, nothing else kept), with
        our field manager, if its ``metadata.resourceVersion`` is still the live one and, when ``obj`` names a
        ``metadata.uid``, the live object is still that one (not deleted and made again); else ``KubeConflict``."""

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The live object, or None when it does not exist."""

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: Selector | None = None) -> list[dict]:
        """Live objects of a kind (all namespaces when namespace is None)."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               uid: str | None = None, resource_version: str | None = None) -> bool:
        """Delete; True if it existed. Absent objects are not an error. With ``uid`` (and
        ``resource_version``), only the object that was read: ``KubeConflict`` when the live one is another
        (deleted and made again, by someone else) or has changed since."""

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None,
             timeout: float = 10.0) -> ExecResult:
        """Run argv in a container of a pod and return its exit code and output."""

    def open_exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None) -> "ExecSession":
        """Start argv in a container of a pod with its stdin open, and keep it
        running: an ``ExecSession`` to write requests to and read answers from."""

    def port_forward(self, namespace: str, pod: str, port: int) -> "LocalForward":
        """A listener on 127.0.0.1 whose connections reach ``port`` of the pod
        (as ``kubectl port-forward``); close it (or use it as a context
        manager) when done."""


class ExecSession(Protocol):
    """A process started by ``Kube.open_exec`` that reads its stdin. Every
    failure (the stream dropped, the process ended, no answer in time) is a
    KubeError; the session is then unusable and must be closed."""

    def send(self, text: str) -> None:
        """Write ``text`` to the process's stdin."""

    def read_until(self, marker: str, timeout: float) -> str:
        """The process's stdout up to and including the first line that is
        ``marker``, waiting at most ``timeout`` seconds."""

    def close(self) -> None:
        """End the stream (the process sees its stdin close)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, cut to ``limit`` characters."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


# --------------------------------------------------------------------------
# Port-forwards


class LocalForward:
    """A listener on 127.0.0.1 at a free port: every connection to it is
    carried to a remote end that ``open_remote()`` opens (a socket-like
    object: ``sendall``, ``recv``, ``close``), one per connection, and
    bytes are copied both ways until either side closes."""

    def __init__(self, open_remote: Callable[[], object], what: str):
        import socket

        self.what = what
        self._open_remote = open_remote
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = threading.Event()
        self.errors: list[str] = []
        # Its threads, and the ones it starts per connection, leave Ctrl-C to
        # the main thread (they take this one's signal mask).
        start_quiet(threading.Thread(target=self._accept, name=f"forward {what}", daemon=True))

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._carry, args=(conn,), name=f"forward {self.what}", daemon=True).start()

    def _carry(self, conn) -> None:
        try:
            remote = self._open_remote()
        except Exception as e:  # noqa: BLE001 - the seam: reported through errors, the local end closes
            self.errors.append(f"{self.what}: {type(e).__name__}: {first_line(e)}")
            conn.close()
            return

        def pump(src, dst) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(remote, conn), daemon=True).start()
        pump(conn, remote)

    def close(self) -> None:
        self._closed.set()
        self._server.close()

    def __enter__(self) -> "LocalForward":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------
# Label selectors (cluster.selectors), with the seam's errors


def equality_selector(text: str) -> dict:
    """``a=b,c=d`` as a LabelSelector (``selectors.parse_equality``); a
    DashiError when it is not that."""
    try:
        return match_labels(parse_equality(text))
    except Invalid as e:
        raise DashiError(str(e)) from None


def render_selector(selector: Selector | None) -> str | None:
    """The query string form the API takes (``selectors.render``); None for
    "everything". A KubeError when it cannot be written."""
    try:
        return render(selector)
    except Invalid as e:
        raise KubeError(str(e)) from None
