"""The Docker seam: the same scenarios against the real engine (SDKDocker on
the session's dockerd) and against FakeDocker, so the fake keeps answering
what the engine answers.

The node containers are labelled the way k3d v5.9.0 labels its nodes
(lifecycle_fixtures.k3d_nodes); the images are imported locally; pulls come
from a registry on 127.0.0.1 served by this test (Docker Registry HTTP API
V2, image manifest v2 schema 2), which can also answer like a rate-limited
Docker Hub.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading

import pytest

from cluster.seams.docker_engine import FakeDocker, PullFailed, SDKDocker, _PullTally
from support.docker_fixtures import busybox_rootfs, create_nodes, import_image, remove_cluster, remove_image, unique
from support.local_world import k3d_nodes


@pytest.fixture(params=["real", "fake"])
def engine(request):
    """(DockerAPI, make): ``make(nodes)`` puts node containers into that engine."""
    if request.param == "fake":
        fake = FakeDocker()
        yield fake, lambda nodes, images=(): (fake.containers.extend(nodes), fake.images.update(images))
        return
    url = request.getfixturevalue("dockerd")
    made: list[tuple[str, str]] = []

    def make(nodes, images=()):
        for ref in {n.image for n in nodes} | set(images):
            import_image(url, ref)
            made.append(("image", ref))
        create_nodes(url, nodes)
        made.append(("cluster", nodes[0].labels["k3d.cluster"]))
    yield SDKDocker(base_url=url), make
    for kind, what in reversed(made):
        (remove_cluster if kind == "cluster" else remove_image)(url, what)


def _ref(name: str, what: str = "k3s") -> str:
    # A test-only repository, so no image of the user's is retagged or removed.
    return f"dashi-test/{what}-{name}:v1.33.4-k3s1"


def _nodes(name: str, cni: str | None, **kw):
    return k3d_nodes(name, cni, image=_ref(name), lb_image=_ref(name, "proxy"), **kw)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.docker
def test_node_containers_carry_every_label_and_the_image_name(engine):
    docker, make = engine
    name = unique()
    nodes = _nodes(name, "cilium", agents=1)
    other = _nodes(unique(), "calico")
    make(nodes)
    make(other)
    got = docker.node_containers(name)
    assert [n.name for n in got] == sorted(n.name for n in nodes)
    by_name = {n.name: n for n in nodes}
    for n in got:
        want = by_name[n.name]
        assert (n.role, n.running) == (want.role, True)
        assert n.image == want.image  # Config.Image: the name the container was created from
        assert n.labels == want.labels  # ours included: Docker keeps what k3d's listing drops
    server = next(n for n in got if n.role == "server")
    assert server.labels["app.kubernetes.io/managed-by"] == "dashi-cluster"
    assert server.labels["dashi.io/cni"] == "cilium"
    assert docker.node_containers(unique()) == []


@pytest.mark.docker
def test_a_stopped_cluster_still_reports_its_labels(engine):
    docker, make = engine
    name = unique()
    make(_nodes(name, "calico", running=False))
    got = docker.node_containers(name)
    assert {n.running for n in got} == {False}
    assert {n.labels.get("dashi.io/cni") for n in got if n.role == "server"} == {"calico"}


@pytest.mark.docker
def test_image_present(engine):
    docker, make = engine
    name = unique()
    make([], images=[_ref(name)]) if isinstance(docker, FakeDocker) else make(_nodes(name, None))
    assert docker.image_present(_ref(name))
    assert not docker.image_present(_ref(unique()))


# -- pulls from a registry on 127.0.0.1 ----------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Registry:
    """Just enough of the Registry HTTP API V2 for `docker pull` of one image."""

    def __init__(self):
        rootfs = busybox_rootfs()
        self.layer = gzip.compress(rootfs, compresslevel=1)  # any level is a valid layer; 9 costs ~0.2 s a registry
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                                  "rootfs": {"type": "layers", "diff_ids": [_digest(rootfs)]}}).encode()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": len(self.config), "digest": _digest(self.config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(self.layer), "digest": _digest(self.layer)}]}).encode()
        self.rate_limited = False
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code, body=b"", ctype="application/json", extra=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v2/":
                    return self._send(200, b"{}")
                if "/manifests/" in self.path:
                    if reg.rate_limited:  # Docker Hub's answer (distribution spec, error codes)
                        return self._send(429, json.dumps({"errors": [{
                            "code": "TOOMANYREQUESTS",
                            "message": "You have reached your pull rate limit. "
                                       "You may increase the limit by authenticating and upgrading"}]}).encode())
                    return self._send(200, reg.manifest, "application/vnd.docker.distribution.manifest.v2+json",
                                      {"Docker-Content-Digest": _digest(reg.manifest)})
                blobs = {_digest(reg.layer): reg.layer, _digest(reg.config): reg.config}
                digest = self.path.rsplit("/", 1)[-1]
                if "/blobs/" in self.path and digest in blobs:
                    return self._send(200, blobs[digest], "application/octet-stream",
                                      {"Docker-Content-Digest": digest})
                return self._send(404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN"}]}).encode())

            do_HEAD = do_GET

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry():
    reg = _Registry()
    yield reg
    reg.close()


@pytest.mark.docker
def test_pull_reports_progress_and_makes_the_image_present(dockerd, registry):
    # 127.0.0.0/8 registries are plain HTTP by default for the engine ("insecure-registries").
    ref = f"127.0.0.1:{registry.port}/rancher/k3s:{unique('v')}"
    docker = SDKDocker(base_url=dockerd)
    lines: list[str] = []
    try:
        assert not docker.image_present(ref)
        docker.pull(ref, lines.append)
        assert docker.image_present(ref)
        assert lines and lines[-1].endswith("1/1 layers")
    finally:
        remove_image(dockerd, ref)


@pytest.mark.docker
def test_a_rate_limited_pull_is_recognised(dockerd, registry):
    registry.rate_limited = True
    ref = f"127.0.0.1:{registry.port}/rancher/k3s:{unique('v')}"
    with pytest.raises(PullFailed) as ei:
        SDKDocker(base_url=dockerd).pull(ref, lambda line: None)
    assert ei.value.rate_limited, ei.value.detail
    assert "toomanyrequests" in ei.value.detail.lower()  # what FakeDocker.pull_error scripts in test_lifecycle
    assert "\n" not in str(ei.value)


def test_a_missing_engine_makes_every_call_a_dashi_error(tmp_path):
    docker = SDKDocker(base_url=f"unix://{tmp_path}/absent.sock")
    for call in (docker.version, lambda: docker.node_containers("x"), lambda: docker.image_present("a:b")):
        with pytest.raises(Exception) as ei:
            call()
        assert type(ei.value).__name__ == "DashiError"
    with pytest.raises(PullFailed):
        docker.pull("a:b", lambda line: None)


def test_pull_progress_adds_up_the_layers():
    t = _PullTally()
    events = [{"status": "Pulling from rancher/k3s", "id": "v1.33.4-k3s1"},
              {"status": "Pulling fs layer", "id": "a"}, {"status": "Pulling fs layer", "id": "b"},
              {"status": "Downloading", "id": "a", "progressDetail": {"current": 1048576, "total": 4194304}},
              {"status": "Downloading", "id": "b", "progressDetail": {"current": 0, "total": 2097152}},
              {"status": "Download complete", "id": "a"}, {"status": "Pull complete", "id": "a"},
              {"status": "Digest: sha256:0"}]
    lines = [ln for ln in map(t.add, events) if ln]
    assert lines == ["1.0/4.0 MB, 0/2 layers", "1.0/6.0 MB, 0/2 layers", "4.0/6.0 MB, 1/2 layers",
                     "4.0/6.0 MB, 1/2 layers"]
