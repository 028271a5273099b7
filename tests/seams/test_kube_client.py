"""ClientKube, the real adapter, against a tiny API server on 127.0.0.1.

The server answers API discovery for core/v1 namespaces and pods and records
each request, so the tests check what the adapter sends (server-side apply
with our field manager and force, label selectors rendered from structures)
and how it maps answers and errors: every failure, the transport's included,
crosses the seam as a KubeError.
"""

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from support.local_world import free_port

from cluster.errors import KubeConflict, KubeError, KubeUnreachable
from cluster.live.observe.poll import poll_until
from cluster.seams.kube import FIELD_MANAGER, equality_selector, render_selector
from cluster.seams.kubeclient import Bounds, ClientKube
from cluster.testing.fakecluster.clock import FakeClock

# The real Kubernetes client against listeners that answer, stall or go silent, its bounds waited out.
pytestmark = pytest.mark.integration

RESOURCES = {
    "kind": "APIResourceList", "groupVersion": "v1",
    "resources": [
        {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
    ],
}


def _status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


# RFC 6455's handshake: the accept key is the client's key with this GUID, SHA-1, base64.
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
def api():
    # "fail": HTTP statuses to answer the next GETs of a namespace with, in order.
    # "hang": what to leave unanswered ("exec": the exec upgrade; "exec-open":
    # the exec stream once open), until the test ends.
    state = {"requests": [], "objects": {}, "fail": [], "hang": set(), "released": threading.Event()}

    class H(BaseHTTPRequestHandler):
        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode() if n else ""
            u = urlparse(self.path)
            state["requests"].append({"method": self.command, "path": u.path, "query": parse_qs(u.query),
                                      "content_type": self.headers.get("Content-Type"), "body": body})
            return u

        def _exec_then_drop(self, hold: bool = False):
            """Accept the exec websocket, then drop the connection, as a
            load balancer or a restarting API server does mid-stream (or,
            with ``hold``, keep it open and say nothing, as a hung one does)."""
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Accept: {accept}\r\n"
                              "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
            self.wfile.flush()
            if hold:
                state["released"].wait()
            self.close_connection = True

        def do_GET(self):
            u = self._record()
            p = u.path
            if p.endswith("/exec") and "exec" in state["hang"]:
                state["released"].wait()  # the upgrade is never answered
                return
            if p.endswith("/exec"):
                return self._exec_then_drop(hold="exec-open" in state["hang"])
            if p.startswith("/api/v1/namespaces/") and state["fail"]:
                code = state["fail"].pop(0)
                return self._send(code, _status(code, "ServiceUnavailable", "etcd leader changed"))
            if p == "/api":
                return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
            if p == "/apis":
                return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
            if p == "/api/v1":
                return self._send(200, RESOURCES)
            if p == "/version":
                return self._send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.4"})
            if p == "/api/v1/namespaces":
                return self._send(200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {},
                                        "items": list(state["objects"].values())})
            if p.endswith("/pods"):
                return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
            if p == "/api/v1/namespaces/taken":
                return self._send(409, _status(409, "AlreadyExists", 'namespaces "taken" already exists'))
            if p == "/api/v1/namespaces/forbidden":
                return self._send(403, _status(403, "Forbidden", 'namespaces "forbidden" is forbidden'))
            name = p.rsplit("/", 1)[-1]
            if p.startswith("/api/v1/namespaces/") and name in state["objects"]:
                return self._send(200, state["objects"][name])
            return self._send(404, _status(404, "NotFound", f'namespaces "{name}" not found'))

        def do_PATCH(self):
            self._record()
            obj = yaml.safe_load(state["requests"][-1]["body"])
            obj["metadata"]["resourceVersion"] = "7"
            state["objects"][obj["metadata"]["name"]] = obj
            return self._send(200, obj)

        def do_DELETE(self):
            u = self._record()
            name = u.path.rsplit("/", 1)[-1]
            if state["objects"].pop(name, None) is None:
                return self._send(404, _status(404, "NotFound", "gone"))
            return self._send(200, {"kind": "Status", "status": "Success"})

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"

    def stop():
        """The API server goes away: its port refuses connections from now on."""
        if not state.get("stopped"):
            state["stopped"] = True
            httpd.shutdown()
            httpd.server_close()

    state["stop"] = stop
    yield state
    state["released"].set()
    stop()


def kubeconfig(tmp_path, server, name="k3d-test"):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": "t"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }))
    return str(path)


def test_apply_is_server_side_with_our_field_manager_and_force(api, tmp_path):
    kube = ClientKube(context="k3d-test", kubeconfig=kubeconfig(tmp_path, api["url"]))
    assert kube.context() == "k3d-test"
    assert kube.server() == api["url"]
    live = kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dashi-data"}})
    assert live["metadata"]["resourceVersion"] == "7"
    (patch,) = [r for r in api["requests"] if r["method"] == "PATCH"]
    assert patch["path"] == "/api/v1/namespaces/dashi-data"
    assert patch["content_type"] == "application/apply-patch+yaml"
    assert patch["query"]["fieldManager"] == [FIELD_MANAGER]
    assert patch["query"]["force"] == ["true"]


def test_get_list_delete(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))  # current context
    assert kube.context() == "k3d-test"
    assert kube.get("v1", "Namespace", "absent") is None
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    assert kube.get("v1", "Namespace", "a")["metadata"]["name"] == "a"
    assert [o["metadata"]["name"] for o in kube.list("v1", "Namespace")] == ["a"]
    assert kube.delete("v1", "Namespace", "a") is True
    assert kube.delete("v1", "Namespace", "a") is False


def test_a_delete_with_preconditions_names_the_object_it_read(api, tmp_path):
    """The uid and resourceVersion travel as DeleteOptions.preconditions: the
    API server then deletes that object only (409 otherwise; the contract
    scenario checks that on the real one)."""
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    assert kube.delete("v1", "Namespace", "a", uid="u-1", resource_version="7") is True
    (delete,) = [r for r in api["requests"] if r["method"] == "DELETE"]
    assert json.loads(delete["body"]) == {"apiVersion": "v1", "kind": "DeleteOptions",
                                          "preconditions": {"uid": "u-1", "resourceVersion": "7"}}


def test_the_proxy_a_kubeconfig_names_is_known(tmp_path):
    """A cluster reached through a kubeconfig's proxy-url is never local
    (cluster.live.safety.guard): the seam says which proxy."""
    path = kubeconfig(tmp_path, "https://0.0.0.0:6550")
    assert ClientKube(kubeconfig=path).proxy() is None
    data = yaml.safe_load(Path(path).read_text())
    data["clusters"][0]["cluster"]["proxy-url"] = "http://bastion.example:3128"
    Path(path).write_text(yaml.safe_dump(data))
    assert ClientKube(kubeconfig=path).proxy() == "http://bastion.example:3128"


def test_unserved_kinds_read_as_absent(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    assert kube.get("operator.tigera.io/v1", "TigeraStatus", "calico") is None
    assert kube.list("operator.tigera.io/v1", "TigeraStatus") == []
    with pytest.raises(KubeError, match="does not serve operator.tigera.io/v1 Installation"):
        kube.apply({"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"}})


def test_reads_made_at_once_share_one_discovery(api, tmp_path):
    """A verification reads its lists from several threads, the first of them
    before discovery has run: served and unserved kinds read as they do one
    at a time (the dynamic client's discovery is not safe to run at once)."""
    from concurrent.futures import ThreadPoolExecutor

    for _ in range(5):
        kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
        reads = [("v1", "Namespace"), ("cilium.io/v2", "CiliumNetworkPolicy"), ("v1", "Pod"),
                 ("operator.tigera.io/v1", "TigeraStatus")] * 4
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(lambda r: kube.list(*r), reads)) == [[]] * len(reads)


def test_api_errors_become_kube_errors(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    with pytest.raises(KubeError, match='get Namespace/forbidden: 403 Forbidden: namespaces "forbidden" is forbidden'):
        kube.get("v1", "Namespace", "forbidden")


def test_unreachable_server_is_a_kube_error(tmp_path):
    slept = []
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, f"http://127.0.0.1:{free_port()}"), sleep=slept.append)
    with pytest.raises(KubeUnreachable) as err:
        kube.get("operator.tigera.io/v1", "Installation", "default")
    # Nothing has answered yet: the error says that alone, not which call
    # came first (here API discovery for a CNI probe).
    assert str(err.value).startswith("cannot reach the API server of k3d-test (http://127.0.0.1:"), str(err.value)
    assert "discover" not in str(err.value) and "Installation" not in str(err.value)
    assert slept == [0.5, 1.0, 2.0]  # a read is retried, boundedly


def test_an_api_server_that_goes_away_mid_run_is_a_kube_error_at_every_call(api, tmp_path):
    """Discovery succeeded while the server was up; every later call meets a
    refused connection, raised by urllib3 below the client, and each must
    cross the seam as KubeUnreachable (one line, no traceback upstairs)."""
    slept = []
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]), sleep=slept.append)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    api["stop"]()
    calls = {
        "get": lambda: kube.get("v1", "Namespace", "a"),
        "list": lambda: kube.list("v1", "Pod", "default"),
        "apply": lambda: kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}),
        "create": lambda: kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}),
        "update": lambda: kube.update({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}),
        "delete": lambda: kube.delete("v1", "Namespace", "a"),
        "exec": lambda: kube.exec("default", "p", ["true"]),
    }
    for verb, call in calls.items():
        with pytest.raises(KubeUnreachable) as err:
            call()
        assert "\n" not in str(err.value), verb
    # Only reads were retried (writes are resolved by the rollout's own record).
    assert slept.count(0.5) >= 2


def test_reads_ride_out_a_few_503s_writes_do_not(api, tmp_path):
    slept = []
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]), sleep=slept.append)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    api["fail"][:] = [503, 503]
    assert kube.get("v1", "Namespace", "a")["metadata"]["name"] == "a"
    assert slept == [0.5, 1.0]
    api["fail"][:] = [503] * 4
    with pytest.raises(KubeError, match="get Namespace/a: 503 .*: etcd leader changed") as err:
        kube.get("v1", "Namespace", "a")
    assert err.value.status == 503 and not isinstance(err.value, KubeUnreachable)


def test_a_409_is_a_conflict(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    with pytest.raises(KubeConflict) as err:
        kube.get("v1", "Namespace", "taken")
    assert err.value.status == 409


def test_a_dropped_exec_websocket_is_a_kube_error(api, tmp_path):
    """The websocket phase of exec: the stream opens, then the connection
    drops. websocket-client raises its own exception there, which used to
    escape the seam and abort a whole probe matrix."""
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    with pytest.raises(KubeUnreachable, match="exec in dashi-data/debug: the exec stream dropped"):
        kube.exec("dashi-data", "debug", ["/agnhost", "connect", "10.42.0.9:80"], timeout=5)
    (req,) = [r for r in api["requests"] if r["path"].endswith("/exec")]
    assert req["path"] == "/api/v1/namespaces/dashi-data/pods/debug/exec"
    assert req["query"]["command"] == ["/agnhost", "connect", "10.42.0.9:80"]


def test_the_poll_loop_outlasts_a_refused_connection(api, tmp_path):
    """retry_api_errors keeps waiting through an API server restart: a
    refused connection is a KubeError now, not a urllib3 exception that ends
    the wait."""
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]), sleep=lambda s: None)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    api["stop"]()
    clock = FakeClock()
    seen = []
    res = poll_until(lambda: (kube.get("v1", "Namespace", "a") is not None, "ready"), timeout_s=3,
                     interval_s=1, clock=clock, sleep=clock.sleep, progress=seen.append, retry_api_errors=True)
    assert not res.done and res.attempts == 4
    assert all(d.startswith("API error: get Namespace/a: cannot reach the API server") for d in seen)


def test_label_selectors_are_rendered_from_structures(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    kube.list("v1", "Pod", "default", {"matchLabels": {"app": "web", "a": "b"},
                                       "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "b"]},
                                                            {"key": "gone", "operator": "DoesNotExist"}]})
    (req,) = [r for r in api["requests"] if r["path"] == "/api/v1/namespaces/default/pods"]
    assert req["query"]["labelSelector"] == ["a=b,app=web,tier in (b,x),!gone"]


def test_selector_rendering_is_apimachinerys():
    assert render_selector(None) is None and render_selector({}) is None
    assert render_selector({"matchExpressions": [{"key": "k", "operator": "NotIn", "values": ["v"]},
                                                 {"key": "e", "operator": "Exists"}]}) == "k notin (v),e"
    assert equality_selector("k8s-app=kube-dns, a=b") == {"matchLabels": {"k8s-app": "kube-dns", "a": "b"}}
    for bad in ("a!=b", "a in (b)", "a==b", "novalue"):
        with pytest.raises(Exception, match="is not key=value"):
            equality_selector(bad)
    with pytest.raises(KubeError, match="must be a LabelSelector mapping"):
        render_selector("a=b")
    with pytest.raises(KubeError, match="matchExpressions\\[0\\] is invalid"):
        render_selector({"matchExpressions": [{"key": "k", "operator": "In"}]})


def test_unknown_context_is_a_kube_error(tmp_path):
    path = kubeconfig(tmp_path, "http://127.0.0.1:1")
    names = ", ".join(sorted(c["name"] for c in yaml.safe_load(Path(path).read_text())["contexts"]))
    with pytest.raises(KubeError) as e:
        ClientKube(context="nope", kubeconfig=path)
    assert str(e.value) == f"cannot load context 'nope' from kubeconfig {path}: it has no such context " \
                           f"(its contexts: {names})"


def test_kubeconfig_is_read_as_it_is_when_the_client_is_made(tmp_path, monkeypatch):
    """KUBECONFIG set after the kubernetes package was imported (a test, a
    forked process, a program that sets it) is the one read; empty is unset."""
    import kubernetes.config  # noqa: F401  (imported before KUBECONFIG changes)

    first, second = kubeconfig(tmp_path, "http://127.0.0.1:1", "k3d-first"), tmp_path / "second"
    second.write_text(Path(first).read_text().replace("k3d-first", "k3d-second"))
    monkeypatch.setenv("KUBECONFIG", first)
    assert ClientKube().context() == "k3d-first"
    monkeypatch.setenv("KUBECONFIG", str(second))
    assert ClientKube().context() == "k3d-second"
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(KubeError) as e:
        ClientKube()
    assert str(e.value) == "cannot load the current context from kubeconfig ~/.kube/config: no such file"


def test_a_kubeconfig_without_contexts_or_missing_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(KubeError) as e:
        ClientKube(context="k3d-x", kubeconfig=str(empty))
    assert str(e.value) == f"cannot load context 'k3d-x' from kubeconfig {empty}: it has no such context " \
                           "(its contexts: none)"
    missing = tmp_path / "missing"
    with pytest.raises(KubeError) as e:
        ClientKube(context="k3d-x", kubeconfig=str(missing))
    assert str(e.value) == f"cannot load context 'k3d-x' from kubeconfig {missing}: no such file"


# -- a server that says nothing ------------------------------------------------

# Short bounds, so a test of "it ends" ends quickly; the product's are in Bounds.
SHORT = Bounds(connect_s=0.3, read_s=0.6, exec_s=0.3)
# What "ends within its bound" allows here: the bounds above with the read
# retries (0 s sleeps here), plus a loaded machine's scheduling.
ENDS_WITHIN_S = 8.0


class SilentPort(int):
    """The silent listener's port; ``held``: the connections it took."""

    def __new__(cls, port: int, held: list):
        self = super().__new__(cls, port)
        self.held = held
        return self


@pytest.fixture
def silent():
    """A TCP listener on 127.0.0.1 that accepts every connection and never
    says a word: a dead SSH tunnel or load balancer in front of an API server."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held, done = [], threading.Event()

    def accept():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield SilentPort(listener.getsockname()[1], held)
    done.set()
    listener.close()
    for conn in held:
        conn.close()


def _ends(call):
    """Run ``call``; what it raised and how long it took."""
    t0 = time.monotonic()
    with pytest.raises(KubeUnreachable) as err:
        call()
    return err.value, time.monotonic() - t0


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_every_call_to_a_silent_api_server_ends_within_its_bound(silent, tmp_path, scheme):
    """https: the TLS handshake never completes (the connect bound); http: the
    request is sent and never answered (the read bound). Either way every
    call, API discovery included, is one KubeUnreachable, in bounded time."""
    slept = []
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, f"{scheme}://127.0.0.1:{silent}"), sleep=slept.append,
                      bounds=SHORT)
    calls = {
        "get": lambda: kube.get("v1", "Namespace", "a"),
        "list": lambda: kube.list("v1", "Pod", "default"),
        "apply": lambda: kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}),
        "delete": lambda: kube.delete("v1", "Namespace", "a"),
        "exec": lambda: kube.exec("default", "p", ["true"], timeout=0.5),
    }
    errors = {}
    for verb, call in calls.items():
        err, took = _ends(call)
        assert "\n" not in str(err) and "cannot reach the API server of k3d-test" in str(err), verb
        assert took < ENDS_WITHIN_S, (verb, took)
        errors[verb] = str(err)
    # The TLS handshake is bounded by connect_s, the answer by read_s; urllib3
    # calls both a read timeout. Neither is asked again: a server that took a
    # connection and said nothing says nothing the next time either (a refused
    # connection, a restart, is what the read retries ride out).
    bound = SHORT.connect_s if scheme == "https" else SHORT.read_s
    for verb in ("get", "list", "apply", "delete"):
        assert "ReadTimeoutError: " in errors[verb] and f"(read timeout={bound})" in errors[verb], verb
    assert errors["exec"].endswith("the exec stream did not open within 0.3s")
    assert slept == []


def test_an_exec_whose_upgrade_is_never_answered_ends_within_its_bound(api, tmp_path):
    api["hang"].add("exec")
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]), bounds=SHORT)
    assert kube.get("v1", "Namespace", "absent") is None  # the API itself answers
    err, took = _ends(lambda: kube.exec("dashi-data", "debug", ["true"], timeout=0.5))
    assert str(err).startswith("exec in dashi-data/debug: cannot reach the API server of k3d-test")
    assert took < ENDS_WITHIN_S


def test_an_open_exec_stream_that_says_nothing_times_out(api, tmp_path):
    """The stream opens and then stays silent: the exec ends at its timeout
    (exit 124, as timeout(1) says), and what arrived so far is read without
    waiting for a stream that never closes."""
    api["hang"].add("exec-open")
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]), bounds=SHORT)
    t0 = time.monotonic()
    res = kube.exec("dashi-data", "debug", ["true"], timeout=0.5)
    assert (res.returncode, res.stdout) == (124, "") and res.stderr.endswith("exec timed out after 0s")
    assert time.monotonic() - t0 < ENDS_WITHIN_S


def test_reads_made_at_once_against_a_silent_server_end_within_one_bound_not_one_each(silent, tmp_path):
    """A verification's threads read at once; the first to reach discovery
    waits out the read bound and the others wait behind it for the discovery
    lock. They fail with its error when it ends instead of each sending a
    discovery of its own and waiting out the bound again, one after the
    other (on the kube-router lane a run went silent mid-verification and
    took 167 s, five 30 s bounds in a row)."""
    from concurrent.futures import ThreadPoolExecutor

    slept = []
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, f"http://127.0.0.1:{silent}"), sleep=slept.append,
                      bounds=SHORT)
    barrier = threading.Barrier(8)

    def read(_):
        barrier.wait()
        return _ends(lambda: kube.list("v1", "Pod", "default"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ended = list(pool.map(read, range(8)))
    assert all("ReadTimeoutError" in str(err) for err, _ in ended), ended
    assert len(silent.held) == 1  # one request reached the server; the others failed with its answer
    assert slept == []  # and none of them retried it as if the connection had been refused
    # A read made after that one ended is its own attempt (the server may be back).
    err, _ = _ends(lambda: kube.list("v1", "Pod", "default"))
    assert len(silent.held) == 2
