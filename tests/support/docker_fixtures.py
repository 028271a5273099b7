"""A real Docker engine for the tests marked ``docker``, and what they put in it.

``dockerd`` (one engine per test process, started by the first test that
asks for it) is, in this order: a private dockerd the test run starts
(Debian's docker.io, root only) on a socket under a temporary directory,
isolated from any other engine on the machine and stopped by its pid once
the process's last Docker test is done (``stop_after``), so that its
shutdown (a second or more) overlaps the tests that follow; else an engine
that already answers (DOCKER_HOST or the default socket, e.g. the one
.ci/run starts); else the tests skip and say why. Images are only made
locally: ``import_image`` imports a root filesystem with the static busybox
(Debian's busybox-static) under a name of the test's choosing. Node
containers are created with exactly the labels k3d puts on its nodes
(lifecycle_fixtures.k3d_nodes), under cluster names unique to the test, and
removed afterwards.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
import uuid

import pytest

from support.availability import unavailable
from cluster.errors import DashiError
from cluster.seams.docker_engine import NodeContainer, SDKDocker

# dockerd initialises in seconds; 60s for a loaded CI machine.
START_TIMEOUT_S = 60


def _answers(url: str | None) -> bool:
    try:
        SDKDocker(base_url=url).version()
        return True
    except DashiError:
        return False


def _start_private(tmp_path_factory):
    exe = shutil.which("dockerd")
    if exe is None or os.geteuid() != 0:
        return None, None, ("dockerd is not installed (apt-get install docker.io)" if exe is None
                            else "starting a private dockerd needs root")
    # A short path: unix socket paths are limited to ~107 bytes.
    base = tmp_path_factory.mktemp("dockerd")
    sock = base / "d.sock"
    log = open(base / "dockerd.log", "w")
    # No bridge and no iptables: the test containers run with --network none,
    # and the engine must not touch the machine's firewall.
    proc = subprocess.Popen(
        [exe, "--host", f"unix://{sock}", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
         "--pidfile", str(base / "docker.pid"), "--bridge", "none", "--iptables=false", "--ip6tables=false"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"unix://{sock}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            return None, None, f"dockerd exited at start (exit {proc.returncode}); see {base / 'dockerd.log'}"
        if _answers(url):
            return url, (proc, log), None
        time.sleep(0.5)
    proc.terminate()
    log.close()
    return None, None, f"dockerd did not answer within {START_TIMEOUT_S}s; see {base / 'dockerd.log'}"


# The engine of this process: None until a test asks for it, then
# (url, (proc, log) if we started it, why not when there is none).
_engine: tuple | None = None


def _ensure(tmp_path_factory) -> str | None:
    global _engine
    if _engine is None:
        url, owned, why = _start_private(tmp_path_factory)
        if url is None:
            shared = os.environ.get("DOCKER_HOST")
            if _answers(shared):
                url = shared or ""
            else:
                why = f"no Docker engine: {why}; and none answers at {shared or 'the default socket'}"
        _engine = (url, owned, why)
    url, _, why = _engine
    if url is None:
        unavailable("docker", why)  # remembered: a missing engine is not looked for again
    return url or None  # None: the default socket


@pytest.fixture
def dockerd(tmp_path_factory):
    """The base URL of a Docker engine the tests may use."""
    return _ensure(tmp_path_factory)


def uses_docker(item) -> bool:
    return "dockerd" in item.fixturenames or item.get_closest_marker("docker") is not None


_stopping: list[threading.Thread] = []


def _end(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    log.close()


def stop(wait: bool = True) -> None:
    """Remove the base image and stop the engine if we started it (a later
    test that asks for one starts another). With ``wait`` False the engine
    is stopped in the background; ``stop()`` waits for that too."""
    global _engine
    if _engine is not None:
        url, owned, _ = _engine
        _engine = None
        engine = url or None
        if url is not None and engine in _imported:  # the base image stays in no engine, the user's included
            remove_image(engine, _BASE_REF)
            _imported.discard(engine)
        if owned:
            t = threading.Thread(target=_end, args=owned, name="dockerd-stop")
            t.start()
            _stopping.append(t)
    if wait:
        while _stopping:
            _stopping.pop().join()


def stop_after(item) -> None:
    """Stop the engine once ``item`` is the last test of the run's items
    that may use it (the Docker tests run one after another: one xdist
    scope, tests/parallel_plugin.py)."""
    if _engine is None or not uses_docker(item):
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else []
    if not any(uses_docker(i) for i in later):
        stop(wait=False)


def client(url: str | None):
    import docker

    return docker.DockerClient(base_url=url) if url else docker.from_env()


def busybox_rootfs() -> bytes:
    """A tar of a root filesystem with the static busybox and the applets the containers run."""
    exe = shutil.which("busybox")
    if exe is None:
        unavailable("docker", "busybox is not installed (apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = open(exe, "rb").read()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


# The image every test's references name: imported once per engine, then tagged.
_BASE_REF = "dashi-test/busybox-rootfs:base"
_imported: set[str | None] = set()


def import_image(url: str | None, ref: str) -> str:
    """The busybox root filesystem (`docker import`ed once per engine) tagged
    as ``ref``; returns the image ID."""
    repo, _, tag = ref.rpartition(":")
    c = client(url)
    try:
        if url not in _imported:
            base_repo, _, base_tag = _BASE_REF.rpartition(":")
            c.api.import_image_from_data(busybox_rootfs(), repository=base_repo, tag=base_tag)
            _imported.add(url)
        c.api.tag(_BASE_REF, repo, tag)
        return c.images.get(ref).id
    finally:
        c.close()


def remove_image(url: str | None, ref: str) -> None:
    c = client(url)
    try:
        c.images.remove(ref, force=True)
    except Exception:  # already gone
        pass
    finally:
        c.close()


def unique(prefix: str = "t") -> str:
    """A cluster name no other test (or user) has: k3d-<name>-server-0 stays a valid name."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def create_nodes(url: str | None, nodes: list[NodeContainer]) -> list[str]:
    """Containers for ``nodes``: their name, labels and image, k3d's env, image
    volume and restart policy (pkg/runtimes/docker/translate.go
    TranslateNodeToContainer), running or stopped as given. Returns their IDs."""
    c = client(url)
    ids = []
    try:
        for n in nodes:
            k3s = n.role in ("server", "agent")
            ct = c.containers.create(
                n.image, command=[n.role] if k3s else [], name=n.name, labels=n.labels,
                # Keep the container alive whatever its command: sh -c runs the
                # script with the node's Cmd as positional parameters.
                entrypoint=["/bin/sh", "-c", "exec sleep 3600", "k3d-node"],
                environment=(["K3S_TOKEN=test", "K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml"] if k3s else None),
                volumes=[f"{n.labels['k3d.cluster.imageVolume']}:/k3d/images"] if k3s else None,
                restart_policy={"Name": "unless-stopped"}, network_mode="none")
            if n.running:
                ct.start()
            ids.append(ct.id)
    finally:
        c.close()
    return ids


def remove_cluster(url: str | None, cluster: str) -> None:
    c = client(url)
    try:
        for ct in c.containers.list(all=True, filters={"label": f"k3d.cluster={cluster}"}):
            ct.remove(force=True, v=True)
        for vol in c.volumes.list(filters={"name": f"k3d-{cluster}-images"}):
            vol.remove(force=True)
    finally:
        c.close()
