"""``ClientKube``: the ``Kube`` seam over the official ``kubernetes`` client
(DynamicClient for objects, the stream module for exec and port-forward),
every request and exec stream bounded (``Bounds``), every failure a
``KubeError`` (see cluster.seams.kube)."""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from cluster.errors import KubeConflict, KubeError, KubeUnreachable
from cluster.seams.kube import (
    FIELD_MANAGER,
    ExecResult,
    ExecSession,
    LocalForward,
    Selector,
    first_line,
    render_selector,
)
from cluster.threads import start_quiet


@dataclass(frozen=True)
class Bounds:
    """How long the seam waits for the API server before it counts as gone.

    A hung server (a dead SSH tunnel or load balancer accepts the connection
    and then says nothing) must not hang a run that holds the cluster's lease:
    every request, API discovery's included, and every exec stream is bounded.
    """

    # TCP connect and TLS handshake: where a silent tunnel or balancer hangs.
    connect_s: float = 5.0
    # Any one read of an answer (a list of every pod of a big cluster is
    # seconds; an answer that stalls this long is lost).
    read_s: float = 30.0
    # An exec stream's connect, TLS and HTTP upgrade, and any one read of it
    # once open (the run itself is bounded by the exec's own timeout).
    exec_s: float = 10.0

    @property
    def request(self) -> tuple[float, float]:
        """The client's ``_request_timeout``: (connect, read)."""
        return (self.connect_s, self.read_s)


# Reads (get, list, API discovery) are retried on a transport failure or a
# 429/5xx: the API server restarts while a CNI comes up, and a load balancer
# in front of a managed one drops a connection now and then. 0.5 + 1 + 2 s
# rides out a restart of a few seconds and still fails within ~4 s when the
# server is really gone. Writes are not retried here: the rollout records
# each change before making it and resolves an interrupted one itself.
READ_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _root_cause(e: BaseException) -> BaseException:
    """urllib3's MaxRetryError wraps what really happened (a refused or reset
    connection, a timeout) in a long message; the cause is what to say."""
    seen = 0
    while getattr(e, "reason", None) is not None and isinstance(e.reason, BaseException) and seen < 5:
        e, seen = e.reason, seen + 1
    return e


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What the client raises when the API server does not answer: urllib3's
    errors (refused, reset, timeouts, MaxRetryError), socket and TLS errors
    (OSError), http.client's, and websocket-client's for exec streams."""
    import http.client

    import urllib3.exceptions
    import websocket

    return (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException, websocket.WebSocketException)


def _context_names(path: str) -> list[str] | None:
    """The context names a kubeconfig file lists, or None when it cannot
    say (unreadable, not YAML, no list of contexts)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    contexts = data.get("contexts") if isinstance(data, dict) else None
    if not isinstance(contexts, list):
        return None if contexts is not None else []
    return sorted(str(c["name"]) for c in contexts if isinstance(c, dict) and "name" in c)


def _bounded_api_client(configuration, timeout: tuple[float, float]):
    """An ApiClient whose requests carry ``timeout`` unless the call names
    one: the dynamic client's API discovery names none, and the client's
    default is to wait forever. Bounded where every request passes, the REST
    client (the exec stream bypasses it; websocket-client's default timeout
    bounds that one)."""
    from kubernetes import client
    from kubernetes.client import rest

    class BoundedREST(rest.RESTClientObject):
        def request(self, method, url, *args, _request_timeout=None, **kwargs):
            return super().request(method, url, *args, _request_timeout=_request_timeout or timeout, **kwargs)

    api = client.ApiClient(configuration=configuration)
    api.rest_client = BoundedREST(configuration)
    return api


def _timed_out_reading(e: BaseException) -> bool:
    """A server that accepted the request and then did not answer in time:
    asking again would only double the wait."""
    import urllib3.exceptions

    return isinstance(_root_cause(e), urllib3.exceptions.ReadTimeoutError)


class _StreamSession:
    """An ``ExecSession`` over the Kubernetes client's exec websocket."""

    def __init__(self, ws, what: str, release: Callable[[], None]):
        self._ws = ws
        self._what = what
        self._release = release
        self._pending = ""

    def send(self, text: str) -> None:
        try:
            self._ws.write_stdin(text)
        except _transport_errors() as e:
            raise KubeUnreachable(f"{self._what}: the exec stream dropped: {type(e).__name__}: "
                                  f"{first_line(e)}") from e

    def read_until(self, marker: str, timeout: float) -> str:
        line = marker + "\n"
        deadline = time.monotonic() + timeout
        try:
            while True:
                at = self._pending.find(line)
                if at == 0 or (at > 0 and self._pending[at - 1] == "\n"):
                    out, self._pending = self._pending[:at + len(line)], self._pending[at + len(line):]
                    return out
                remaining = deadline - time.monotonic()
                if not self._ws.is_open():
                    err = self._ws.read_stderr(timeout=0).strip()
                    raise KubeError(f"{self._what}: the process ended" + (f": {err.splitlines()[-1]}" if err else ""))
                if remaining <= 0:
                    raise KubeError(f"{self._what}: no answer within {timeout:g}s")
                self._ws.update(timeout=remaining)
                self._pending += self._ws.read_stdout(timeout=0)
        except _transport_errors() as e:
            raise KubeUnreachable(f"{self._what}: the exec stream dropped: {type(e).__name__}: "
                                  f"{first_line(e)}") from e

    def close(self) -> None:
        try:
            self._ws.close()
        except _transport_errors():
            pass  # closing a stream that already dropped
        self._release()


class ClientKube:
    """``Kube`` over the official client: DynamicClient for objects, stream for exec.

    ``context``/``kubeconfig`` select the cluster (defaults: the current
    context of $KUBECONFIG or ~/.kube/config). Every failure becomes a
    KubeError (see the module docstring); a kind the server does not serve
    (say, TigeraStatus before Calico is installed) reads as "no such object"
    in get/list/delete.
    """

    def __init__(self, context: str | None = None, kubeconfig: str | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, bounds: Bounds = Bounds(),
                 field_manager: str = FIELD_MANAGER):
        import yaml
        from kubernetes import client
        from kubernetes import config as kconfig
        from kubernetes.config.config_exception import ConfigException

        # KUBECONFIG as it is now, as kubectl reads it (empty means unset):
        # the client's own default is the value it had when it was imported.
        source = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        try:
            cfg = client.Configuration()
            kconfig.load_kube_config(config_file=source, context=context, client_configuration=cfg,
                                     persist_config=False)
            # No retries inside urllib3: it would log each one as a warning on
            # stderr (there is no other handler), and this seam retries reads
            # itself, with a backoff, and says so in one line when it gives up.
            cfg.retries = 0
            if not cfg.verify_ssl:
                # The kubeconfig says insecure-skip-tls-verify; urllib3 would
                # repeat its warning on every request. Once is enough.
                import warnings

                import urllib3.exceptions

                warnings.filterwarnings("once", category=urllib3.exceptions.InsecureRequestWarning)
            try:
                self._api = _bounded_api_client(cfg, bounds.request)
            except ImportError as e:
                # urllib3 speaks SOCKS only with PySocks installed; the
                # client imports it when the kubeconfig names such a proxy.
                raise KubeError(f"cannot use {'context ' + repr(context) if context else 'the current context'} "
                                f"of kubeconfig {source}: its proxy-url {cfg.proxy} is a SOCKS proxy, which needs "
                                f"PySocks (pip install pysocks) ({type(e).__name__}: {first_line(e)})") from None
            if context is None:
                _, active = kconfig.list_kube_config_contexts(config_file=source)
                context = active["name"]
        except (ConfigException, OSError, TypeError, KeyError, ValueError, AttributeError, IndexError,
                yaml.YAMLError) as e:
            # The client reads whatever KUBECONFIG names and fails with
            # whatever the bytes provoke; say which file and what, in one line.
            where = f"context {context!r}" if context else "the current context"
            if isinstance(e, UnicodeDecodeError):
                why = "not UTF-8 text"
            elif isinstance(e, yaml.YAMLError):
                why = "invalid YAML: " + " ".join(str(e).split())[:160]
            elif isinstance(e, (ConfigException, OSError)):
                why = " ".join(str(e).split())[:200]
                # One file (not a KUBECONFIG list): say what is wrong with it.
                paths = [x for x in str(source).split(os.pathsep) if x]
                path = os.path.expanduser(paths[0]) if len(paths) == 1 else None
                if path is not None and not os.path.exists(path):
                    why = "no such file"
                elif path is not None and isinstance(e, ConfigException) and context:
                    names = _context_names(path)
                    if names is not None and context not in names:
                        why = f"it has no such context (its contexts: {', '.join(names) or 'none'})"
            else:
                why = f"not a kubeconfig ({type(e).__name__}: {e})"
            raise KubeError(f"cannot load {where} from kubeconfig {source}: {why}") from None
        self._context = context
        self._bounds = bounds
        self._field_manager = field_manager
        # Whether the API server has answered this client yet: a first call
        # that cannot reach it is reported as that alone ("cannot reach the
        # API server of ..."), not as the call that happened to come first
        # (a CNI probe's "discover operator.tigera.io/v1 Installation").
        self._answered = False
        self._dyn = None
        # The dynamic client's discovery (its resource cache, filled on first
        # use) is not safe to run from several threads at once: reads made at
        # once (a verification's) meet here one at a time.
        self._discovery = threading.RLock()
        # When a read last timed out (the server took the request and said
        # nothing), and its error: a call that was already waiting then (for
        # the discovery lock, behind the read that timed out) fails with it at
        # once instead of waiting out a bound of its own, so reads made at
        # once end within one bound, not one bound each.
        self._silent: tuple[float, KubeUnreachable] | None = None
        self._exec_pool: queue.SimpleQueue = queue.SimpleQueue()
        self._containers: dict[tuple[str, str], str | None] = {}  # see _default_container
        self._sleep = sleep

    # -- plumbing -----------------------------------------------------------

    def _error(self, e: BaseException, what: str) -> KubeError:
        """The KubeError for anything the client raised during ``what``."""
        from kubernetes.client.exceptions import ApiException

        if isinstance(e, KubeError):
            return e
        if isinstance(e, ApiException):
            status, reason = getattr(e, "status", None), getattr(e, "reason", None) or type(e).__name__
            if not status:
                # stream() turns everything that goes wrong while opening the
                # websocket into ApiException(status=0): an HTTP answer during
                # the handshake ("Handshake status 404 ...") or none at all.
                text = str(reason)
                if text.startswith("Handshake status "):
                    code = text.split()[2]
                    err = KubeError(f"{what}: {first_line(text)}")
                    err.status = int(code) if code.isdigit() else None
                    return err
                return KubeUnreachable(f"{self._doing(what)}cannot reach the API server of {self._context} "
                                       f"({self.server()}): {text.splitlines()[0][:200] if text else 'no answer'}")
            msg = ""
            body = getattr(e, "body", None)
            if body:
                try:
                    import json

                    msg = json.loads(body).get("message", "")
                except (ValueError, AttributeError, TypeError):
                    msg = str(body)[:200]
            cls = KubeConflict if status == 409 else KubeError
            err = cls(f"{what}: {status} {reason}{': ' + msg if msg else ''}")
            err.status = status
            return err
        if isinstance(e, _transport_errors()):
            cause = _root_cause(e)
            return KubeUnreachable(f"{self._doing(what)}cannot reach the API server of {self._context} "
                                   f"({self.server()}): {type(cause).__name__}: {first_line(cause)}")
        return KubeError(f"{what}: {type(e).__name__}: {first_line(e)}")

    def _doing(self, what: str) -> str:
        """The prefix of an unreachable error: what was being done, once the
        server has answered (mid-run, it says where the run stopped)."""
        return f"{what}: " if self._answered else ""

    def _call(self, what: str, fn: Callable, *, read: bool):
        """Run one API call; map its failure; retry a read that may succeed on a second try."""
        delays = READ_RETRY_DELAYS_S if read else ()
        started = time.monotonic()
        for attempt in range(len(delays) + 1):
            try:
                self._check_silent(started)
                result = fn()
                self._answered = True
                if self._silent is not None and self._silent[0] < started:
                    self._silent = None  # it answers again
                return result
            except Exception as e:  # noqa: BLE001 - the seam: every client failure becomes a KubeError
                err = self._error(e, what)
                echoed = getattr(e, "echoed", False)  # another call's timeout, met while waiting
                timed_out = isinstance(err, KubeUnreachable) and (echoed or _timed_out_reading(e))
                if timed_out and not echoed:
                    self._silent = (time.monotonic(), err)
                transient = (isinstance(err, KubeUnreachable) and not timed_out) or err.status in RETRY_STATUSES
                if not transient or attempt == len(delays):
                    raise err from e
                if isinstance(err, KubeUnreachable):
                    self._dyn = None  # re-run discovery against the server that comes back
            self._sleep(delays[attempt])

    def _check_silent(self, started: float) -> None:
        """Raise the read timeout another call met while this one was waiting."""
        silent = self._silent
        if silent is not None and silent[0] >= started:
            err = KubeUnreachable(str(silent[1]))
            err.echoed = True  # a read timeout: not asked again (see _call)
            raise err

    def _client(self):
        with self._discovery:
            if self._dyn is None:
                from kubernetes import dynamic

                self._dyn = dynamic.DynamicClient(self._api)
            return self._dyn

    def _resource(self, api_version: str, kind: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        started = time.monotonic()

        def find():
            try:
                with self._discovery:
                    self._check_silent(started)  # waited behind a discovery the server never answered
                    return self._client().resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                return None

        return self._call(f"discover {api_version} {kind}", find, read=True)

    def _served(self, obj: dict, verb: str):
        md = obj.get("metadata") or {}
        what = f"{verb} {obj.get('kind')}/{md.get('name')}"
        res = self._resource(obj["apiVersion"], obj["kind"])
        if res is None:
            raise KubeError(f"{what}: the server does not serve {obj['apiVersion']} {obj['kind']}")
        return res, what, md.get("name"), md.get("namespace") if res.namespaced else None

    # -- the protocol -------------------------------------------------------

    def context(self) -> str:
        return self._context

    def server(self) -> str:
        return self._api.configuration.host

    def proxy(self) -> str | None:
        return self._api.configuration.proxy or None

    def apply(self, obj: dict) -> dict:
        res, what, name, ns = self._served(obj, "apply")
        return self._call(what, lambda: res.server_side_apply(
            body=obj, name=name, namespace=ns, field_manager=self._field_manager, force_conflicts=True,
            _request_timeout=self._bounds.request).to_dict(), read=False)

    def create(self, obj: dict) -> dict:
        res, what, _, ns = self._served(obj, "create")
        return self._call(what, lambda: res.create(body=obj, namespace=ns, field_manager=self._field_manager,
                                                   _request_timeout=self._bounds.request).to_dict(), read=False)

    def update(self, obj: dict) -> dict:
        # A PUT: the API server takes metadata.uid in the body as a
        # precondition and metadata.resourceVersion as the optimistic lock
        # (k8s.io/apiserver pkg/registry/rest/update.go, defaultUpdatedObjectInfo.Preconditions;
        # pkg/registry/generic/registry/store.go, Update), 409 when either is stale.
        res, what, name, ns = self._served(obj, "update")
        return self._call(what, lambda: res.replace(body=obj, name=name, namespace=ns,
                                                    field_manager=self._field_manager,
                                                    _request_timeout=self._bounds.request).to_dict(), read=False)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self._resource(api_version, kind)
        if res is None:
            return None

        def read():
            try:
                return res.get(name=name, namespace=namespace if res.namespaced else None,
                               _request_timeout=self._bounds.request).to_dict()
            except NotFoundError:
                return None

        return self._call(f"get {kind}/{name}", read, read=True)

    def list(self, api_version: str, kind: str, namespace: str | None = None,
             label_selector: Selector | None = None) -> list[dict]:
        selector = render_selector(label_selector)
        res = self._resource(api_version, kind)
        if res is None:
            return []
        out = self._call(f"list {kind}", lambda: res.get(
            namespace=namespace if res.namespaced else None, label_selector=selector,
            _request_timeout=self._bounds.request).to_dict(), read=True)
        return out.get("items") or []

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               uid: str | None = None, resource_version: str | None = None) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self._resource(api_version, kind)
        if res is None:
            return False
        # DeleteOptions.preconditions: the API server deletes only the object
        # with that uid (and resourceVersion), else 409.
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": pre} if pre else None

        def remove():
            try:
                res.delete(name=name, namespace=namespace if res.namespaced else None, body=body,
                           _request_timeout=self._bounds.request)
            except NotFoundError:
                return False
            return True

        return self._call(f"delete {kind}/{name}", remove, read=False)

    def _open_stream(self, namespace: str, pod: str, argv: list[str], container: str | None, *, stdin: bool):
        """The ApiClient an exec borrowed and its open websocket stream."""
        from kubernetes import client
        from kubernetes.stream import stream

        what = f"exec in {namespace}/{pod}"
        # stream() swaps the call_api method of the ApiClient it is given for
        # the duration of the call, so concurrent execs must not share one
        # (nor share ours, or it could be left speaking websocket to every
        # later get/list). Each exec borrows one from a pool and gives it
        # back: building one (TLS context, connection pool) costs more than
        # a whole probe batch, and the prober's threads come and go per run.
        try:
            core = self._exec_pool.get_nowait()
        except queue.Empty:
            core = client.CoreV1Api(_bounded_api_client(self._api.configuration, self._bounds.request))
        kwargs = {"container": container} if container else {}
        opened: dict = {}

        def open_stream() -> None:
            try:
                opened["ws"] = stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=list(argv),
                                      stderr=True, stdin=stdin, stdout=True, tty=False, _preload_content=False,
                                      **kwargs)
            except Exception as e:  # noqa: BLE001 - the seam: raised below, in the caller's thread
                opened["error"] = e

        # The client opens the websocket (connect, TLS, upgrade) with no
        # timeout and offers none: the opening runs in a thread of its own,
        # and a server that does not complete it in time is left behind
        # with its client (never returned to the pool).
        opener = threading.Thread(target=open_stream, name=f"exec-open {namespace}/{pod}", daemon=True)
        start_quiet(opener)
        opener.join(self._bounds.exec_s)
        if opener.is_alive():
            raise KubeUnreachable(f"{what}: cannot reach the API server of {self._context} ({self.server()}): "
                                  f"the exec stream did not open within {self._bounds.exec_s:g}s")
        if "error" in opened:
            self._exec_pool.put(core)
            if container is None and "400" in str(opened["error"]):
                # A pod of several containers needs one named (the API server
                # answers 400): the default one, as kubectl picks it.
                chosen = self._default_container(namespace, pod)
                if chosen is not None:
                    return self._open_stream(namespace, pod, argv, chosen, stdin=stdin)
            raise self._error(opened["error"], what) from opened["error"]
        ws = opened["ws"]
        # Once open, every read of the stream is bounded too: a frame that
        # starts and never ends must not hold the run.
        ws.sock.settimeout(self._bounds.exec_s)
        return core, ws

    def open_exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None) -> ExecSession:
        core, ws = self._open_stream(namespace, pod, argv, container, stdin=True)
        return _StreamSession(ws, f"exec in {namespace}/{pod}", lambda: self._exec_pool.put(core))

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None = None,
             timeout: float = 10.0) -> ExecResult:
        what = f"exec in {namespace}/{pod}"
        core, ws = self._open_stream(namespace, pod, argv, container, stdin=False)
        try:
            # The websocket phase: a connection reset, a TLS error or the
            # server closing the stream mid-run surfaces from websocket-client
            # and the socket layer, not as ApiException.
            ws.run_forever(timeout=timeout)
            # What arrived so far, without waiting: a stream still open after
            # its timeout would otherwise be read until it closes, forever.
            stdout, stderr = ws.read_stdout(timeout=0), ws.read_stderr(timeout=0)
            if ws.is_open():
                return ExecResult(124, stdout, stderr + f"\nexec timed out after {timeout:.0f}s")
            try:
                rc = ws.returncode
            except (KeyError, IndexError, TypeError, ValueError) as e:
                # The error channel did not carry an exit code (e.g. the
                # binary does not exist): report it as a failed run.
                return ExecResult(126, stdout, stderr + f"\nexec failed: {e!r}")
            return ExecResult(int(rc), stdout, stderr)
        except _transport_errors() as e:
            raise KubeUnreachable(f"{what}: the exec stream dropped: {type(e).__name__}: {first_line(e)}") from e
        finally:
            try:
                ws.close()
            except _transport_errors():
                pass  # closing a stream that already dropped
            self._exec_pool.put(core)

    # The container exec uses in a pod of several, picked as kubectl picks
    # it: the kubectl.kubernetes.io/default-container annotation, else the
    # first container (None for a pod of one). Read once per pod and command.
    DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"

    def _default_container(self, namespace: str, pod: str) -> str | None:
        key = (namespace, pod)
        if key not in self._containers:
            live = self.get("v1", "Pod", pod, namespace) or {}
            names = [c.get("name") for c in (live.get("spec") or {}).get("containers") or []]
            chosen = ((live.get("metadata") or {}).get("annotations") or {}).get(self.DEFAULT_CONTAINER_ANNOTATION)
            self._containers[key] = None if len(names) < 2 else chosen if chosen in names else names[0]
        return self._containers[key]

    def port_forward(self, namespace: str, pod: str, port: int) -> LocalForward:
        from kubernetes import client
        from kubernetes.stream import portforward

        what = f"port-forward to {namespace}/{pod}:{port}"
        self._call(f"get pod {namespace}/{pod}", lambda: client.CoreV1Api(self._api).read_namespaced_pod(
            pod, namespace, _request_timeout=self._bounds.request), read=True)

        def open_remote():
            # One API client per connection: portforward() swaps its call_api
            # for the websocket's, as stream() does for exec.
            core = client.CoreV1Api(_bounded_api_client(self._api.configuration, self._bounds.request))
            pf = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
            sock = pf.socket(port)
            sock.setblocking(True)
            return sock

        return LocalForward(open_remote, what)
