"""The one seam to the Kubernetes API.

Everything in the package that talks to a cluster depends on the narrow
``Kube`` protocol below, which lists only the calls we make. ``ClientKube``
implements it with the official ``kubernetes`` client; tests use the fake in
``cluster.fakekube``. Objects are plain dicts (as in YAML), addressed by
apiVersion and kind, so one adapter serves core, apps, networking and custom
resources (TigeraStatus) alike.
"""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass
from typing import Protocol

from cluster.errors import KubeError

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


# --------------------------------------------------------------------------
# The real adapter


class ClientKube:
    """``Kube`` over the official client: DynamicClient for objects, stream for exec.

    ``context``/``kubeconfig`` select the cluster (defaults: the current
    context of $KUBECONFIG or ~/.kube/config). Every ApiException becomes a
    KubeError; a kind the server does not serve (say, TigeraStatus before
    Calico is installed) reads as "no such object" in get/list/delete.
    """

    def __init__(self, context: str | None = None, kubeconfig: str | None = None):
        from kubernetes import config as kconfig
        from kubernetes.config.config_exception import ConfigException

        import yaml

        try:
            self._api = kconfig.new_client_from_config(config_file=kubeconfig, context=context)
            if context is None:
                _, active = kconfig.list_kube_config_contexts(config_file=kubeconfig)
                context = active["name"]
        except (ConfigException, OSError, TypeError, KeyError, ValueError, AttributeError, IndexError,
                yaml.YAMLError) as e:
            # The client reads whatever KUBECONFIG names and fails with
            # whatever the bytes provoke; say which file and what, in one line.
            where = f"context {context!r}" if context else "the current context"
            source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            if isinstance(e, UnicodeDecodeError):
                why = "not UTF-8 text"
            elif isinstance(e, yaml.YAMLError):
                why = "invalid YAML: " + " ".join(str(e).split())[:160]
            elif isinstance(e, (ConfigException, OSError)):
                why = " ".join(str(e).split())[:200]
            else:
                why = f"not a kubeconfig ({type(e).__name__}: {e})"
            raise KubeError(f"cannot load {where} from kubeconfig {source}: {why}") from None
        self._context = context
        self._dyn = None
        self._exec_pool: queue.SimpleQueue = queue.SimpleQueue()

    # -- plumbing -----------------------------------------------------------

    def _client(self):
        if self._dyn is None:
            from kubernetes import dynamic

            try:
                self._dyn = dynamic.DynamicClient(self._api)
            except Exception as e:  # discovery: urllib3/ApiException/ssl errors alike
                raise KubeError(f"cannot reach the API server of {self._context} ({self.server()}): "
                                f"{str(e).splitlines()[0][:200]}") from e
        return self._dyn

    def _resource(self, api_version: str, kind: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._client().resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _wrap(e: Exception, what: str) -> KubeError:
        status = getattr(e, "status", None)
        reason = getattr(e, "reason", None) or type(e).__name__
        body = getattr(e, "body", None)
        msg = ""
        if body:
            try:
                import json

                msg = json.loads(body).get("message", "")
            except (ValueError, AttributeError, TypeError):
                msg = str(body)[:200]
        return KubeError(f"{what}: {status or ''} {reason}{': ' + msg if msg else ''}".replace("  ", " "))

    # -- the protocol -------------------------------------------------------

    def context(self) -> str:
        return self._context

    def server(self) -> str:
        return self._api.configuration.host

    def apply(self, obj: dict) -> dict:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError

        md = obj.get("metadata") or {}
        what = f"apply {obj.get('kind')}/{md.get('name')}"
        res = self._resource(obj["apiVersion"], obj["kind"])
        if res is None:
            raise KubeError(f"{what}: the server does not serve {obj['apiVersion']} {obj['kind']}")
        try:
            out = res.server_side_apply(body=obj, name=md.get("name"),
                                        namespace=md.get("namespace") if res.namespaced else None,
                                        field_manager=FIELD_MANAGER, force_conflicts=True)
        except (ApiException, DynamicApiError) as e:
            raise self._wrap(e, what) from e
        return out.to_dict()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

        res = self._resource(api_version, kind)
        if res is None:
            return None
        try:
            return res.get(name=name, namespace=namespace if res.namespaced else None).to_dict()
        except NotFoundError:
            return None
        except (ApiException, DynamicApiError) as e:
            raise self._wrap(e, f"get {kind}/{name}") from e

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict]:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError

        res = self._resource(api_version, kind)
        if res is None:
            return []
        try:
            out = res.get(namespace=namespace if res.namespaced else None, label_selector=label_selector)
        except (ApiException, DynamicApiError) as e:
            raise self._wrap(e, f"list {kind}") from e
        return out.to_dict().get("items") or []

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

        res = self._resource(api_version, kind)
        if res is None:
            return False
        try:
            res.delete(name=name, namespace=namespace if res.namespaced else None)
        except NotFoundError:
            return False
        except (ApiException, DynamicApiError) as e:
            raise self._wrap(e, f"delete {kind}/{name}") from e
        return True

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None,
             timeout: float = 10.0) -> ExecResult:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        # stream() swaps the call_api method of the ApiClient it is given for
        # the duration of the call, so concurrent execs must not share one
        # (nor share ours, or it could be left speaking websocket to every
        # later get/list). Each exec borrows one from a pool and gives it
        # back: building one (TLS context, connection pool) costs more than
        # a whole probe batch, and the prober's threads come and go per run.
        try:
            core = self._exec_pool.get_nowait()
        except queue.Empty:
            core = client.CoreV1Api(client.ApiClient(self._api.configuration))
        kwargs = {"container": container} if container else {}
        try:
            ws = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=list(argv),
                        stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False, **kwargs)
        except ApiException as e:
            raise self._wrap(e, f"exec in {namespace}/{pod}") from e
        try:
            ws.run_forever(timeout=timeout)
            stdout, stderr = ws.read_stdout(), ws.read_stderr()
            if ws.is_open():
                return ExecResult(124, stdout, stderr + f"\nexec timed out after {timeout:.0f}s")
            try:
                rc = ws.returncode
            except (KeyError, IndexError, TypeError, ValueError) as e:
                # The error channel did not carry an exit code (e.g. the
                # binary does not exist): report it as a failed run.
                return ExecResult(126, stdout, stderr + f"\nexec failed: {e!r}")
            return ExecResult(int(rc), stdout, stderr)
        finally:
            ws.close()
            self._exec_pool.put(core)
