"""Preflight: tool versions through the runner fake; the Docker check against a real engine.

The Docker fixture starts Debian's dockerd (docker.io) on a private socket
under a temporary directory, only when the binary exists and we may run it
(root); otherwise those tests skip and say why. It is stopped by its pid.
"""

import os
import shutil
import socket
import subprocess
import time

import pytest

from cluster.local import preflight
from cluster.local.runner import FakeRunner
from lifecycle_fixtures import HELM_VERSION_OUT, K3D_VERSION_OUT, KUBECTL_VERSION_OUT, StubDocker


def runner(k3d=K3D_VERSION_OUT, kubectl=KUBECTL_VERSION_OUT, helm=HELM_VERSION_OUT, tools=None):
    r = FakeRunner(tools=set(tools or {"k3d", "kubectl", "helm", "docker"}))
    r.on("k3d", "version", stdout=k3d)
    r.on("kubectl", "version", stdout=kubectl)
    r.on("helm", "version", stdout=helm)
    return r


def test_all_present_and_recent():
    rep = preflight.check(runner(), StubDocker(), preflight.needs_for("cilium"))
    assert rep.ok, rep.problems
    assert rep.found == {"docker": "24.0.7", "k3d": "v5.9.0", "kubectl": "v1.33.4", "helm": "v3.19.2"}


def test_helm_only_needed_for_cilium():
    assert preflight.needs_for("calico") == ["docker", "k3d", "kubectl"]
    assert preflight.needs_for("k3s") == ["docker", "k3d", "kubectl"]
    assert preflight.needs_for("cilium") == ["docker", "k3d", "kubectl", "docker-cli", "helm"]
    rep = preflight.check(runner(tools={"k3d", "kubectl"}), StubDocker(), preflight.needs_for("calico"))
    assert rep.ok


def test_each_problem_is_one_line_with_a_fix():
    r = runner(k3d="k3d version v5.4.9\n", tools={"k3d"})
    rep = preflight.check(r, StubDocker(error="Cannot connect"), preflight.needs_for("cilium"))
    assert len(rep.problems) == 5
    docker, cli, k3d, kubectl, helm = rep.problems
    assert docker.startswith("docker: daemon not reachable (Cannot connect) — start Docker")
    assert cli.startswith("docker: the docker CLI is not on PATH")
    assert k3d.startswith("k3d: v5.4.9 is too old (need >= v5.5.0: k3d.io/v1alpha5 config files) — run `inv tools`")
    assert kubectl.startswith("kubectl: not found — run `inv tools`")
    assert helm.startswith("helm: not found")
    assert all("\n" not in p for p in rep.problems)
    with pytest.raises(Exception) as ei:
        rep.raise_if_problems()
    assert str(ei.value).count("\n  - ") == 5


def test_old_docker_and_unreadable_versions():
    rep = preflight.check(runner(kubectl="garbage", helm="v2.17.0"), StubDocker(version="19.03.1"),
                          preflight.needs_for("cilium"))
    assert any(p.startswith("docker: engine 19.03.1 is too old") for p in rep.problems)
    assert any(p.startswith("kubectl: does not run") for p in rep.problems)
    assert any(p.startswith("helm: v2.17.0 is too old") for p in rep.problems)


def test_port_free():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not preflight.port_free(port)
    assert preflight.port_free(port)


# -- a real Docker engine -------------------------------------------------------


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    exe = shutil.which("dockerd")
    if exe is None:
        pytest.skip("dockerd is not installed (apt-get install docker.io to run the Docker preflight tests)")
    if os.geteuid() != 0:
        pytest.skip("starting dockerd needs root")
    # A short path: unix socket paths are limited to ~107 bytes.
    base = tmp_path_factory.mktemp("dockerd")
    sock = base / "d.sock"
    log = open(base / "dockerd.log", "w")
    proc = subprocess.Popen(
        [exe, "--host", f"unix://{sock}", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
         "--pidfile", str(base / "docker.pid"), "--bridge", "none", "--iptables=false", "--ip6tables=false"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"unix://{sock}"
    deadline = time.monotonic() + 60  # dockerd initialises in seconds; 60s for a loaded CI machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"dockerd exited at start (exit {proc.returncode}); see {base / 'dockerd.log'}")
        try:
            preflight.SDKDocker(base_url=url).version()
            break
        except Exception:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.skip("dockerd did not answer within 60s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.mark.docker
def test_real_engine_passes_the_docker_check(dockerd):
    info = preflight.SDKDocker(base_url=dockerd).version()
    assert info["Version"]
    rep = preflight.check(runner(), preflight.SDKDocker(base_url=dockerd), ["docker"])
    assert rep.ok, rep.problems
    assert rep.found["docker"] == info["Version"]


@pytest.mark.docker
def test_docker_host_env_is_honoured(dockerd, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    assert preflight.SDKDocker().version()["ApiVersion"]


def test_unreachable_engine_is_one_actionable_line(tmp_path):
    rep = preflight.check(runner(), preflight.SDKDocker(base_url=f"unix://{tmp_path}/absent.sock"), ["docker"])
    (problem,) = rep.problems
    assert problem.startswith("docker: daemon not reachable (") and "start Docker" in problem
    assert "\n" not in problem
