"""ClientKube, the real adapter, against a tiny API server on 127.0.0.1.

The server answers API discovery for core/v1 namespaces and pods and records
each request, so the tests check what the adapter sends (server-side apply
with our field manager and force) and how it maps answers and errors.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from cluster.errors import KubeError
from cluster.live.kube import FIELD_MANAGER, ClientKube
from lifecycle_fixtures import free_port

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


@pytest.fixture
def api():
    state = {"requests": [], "objects": {}}

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

        def do_GET(self):
            u = self._record()
            p = u.path
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
    yield state
    httpd.shutdown()
    httpd.server_close()


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


def test_unserved_kinds_read_as_absent(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    assert kube.get("operator.tigera.io/v1", "TigeraStatus", "calico") is None
    assert kube.list("operator.tigera.io/v1", "TigeraStatus") == []
    with pytest.raises(KubeError, match="does not serve operator.tigera.io/v1 Installation"):
        kube.apply({"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"}})


def test_api_errors_become_kube_errors(api, tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, api["url"]))
    with pytest.raises(KubeError, match='get Namespace/forbidden: 403 Forbidden: namespaces "forbidden" is forbidden'):
        kube.get("v1", "Namespace", "forbidden")


def test_unreachable_server_is_a_kube_error(tmp_path):
    kube = ClientKube(kubeconfig=kubeconfig(tmp_path, f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(KubeError, match="cannot reach the API server of k3d-test"):
        kube.get("v1", "Namespace", "x")


def test_unknown_context_is_a_kube_error(tmp_path):
    with pytest.raises(KubeError, match="cannot load context 'nope' from kubeconfig"):
        ClientKube(context="nope", kubeconfig=kubeconfig(tmp_path, "http://127.0.0.1:1"))
