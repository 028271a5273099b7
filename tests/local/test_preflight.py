"""Preflight: tool versions through the runner fake; the Docker check against
a real engine (the ``dockerd`` fixture of tests/support/docker_fixtures.py)."""

import socket

import pytest

from cluster.local import preflight
from cluster.seams.runner import FakeRunner
from support.local_world import DOCKER_VERSION, HELM_VERSION_OUT, K3D_VERSION_OUT, KUBECTL_VERSION_OUT, fake_docker


def runner(k3d=K3D_VERSION_OUT, kubectl=KUBECTL_VERSION_OUT, helm=HELM_VERSION_OUT, tools=None):
    r = FakeRunner(tools=set(tools or {"k3d", "kubectl", "helm", "docker"}))
    r.on("k3d", "version", stdout=k3d)
    r.on("kubectl", "version", stdout=kubectl)
    r.on("helm", "version", stdout=helm)
    return r


def test_all_present_and_recent():
    rep = preflight.check(runner(), fake_docker(), preflight.needs_for("cilium"), cni="cilium")
    assert rep.ok, rep.problems
    assert rep.found == {"docker": "20.10.24+dfsg1", "k3d": "v5.9.0", "kubectl": "v1.33.4", "helm": "v3.19.2"}
    assert rep.warnings == []


def test_helm_only_needed_for_cilium():
    assert preflight.needs_for("calico") == ["docker", "k3d", "kubectl"]
    assert preflight.needs_for("k3s") == ["docker", "k3d", "kubectl"]
    assert preflight.needs_for("cilium") == ["docker", "k3d", "kubectl", "docker-cli", "helm"]
    rep = preflight.check(runner(tools={"k3d", "kubectl"}), fake_docker(), preflight.needs_for("calico"))
    assert rep.ok


def test_each_problem_is_one_line_with_a_fix():
    r = runner(k3d="k3d version v5.4.9\n", tools={"k3d"})
    rep = preflight.check(r, fake_docker(error="Cannot connect"), preflight.needs_for("cilium"))
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
    rep = preflight.check(runner(kubectl="garbage", helm="v2.17.0"), fake_docker(version="19.03.1"),
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


# -- a real Docker engine (tests/support/docker_fixtures.py) ------------------------


@pytest.mark.parametrize("kernel,cni,warned", [
    ("5.4.0-216-generic", "calico", True), ("5.4.0-216-generic", "cilium", True), ("5.4.0-216-generic", "k3s", False),
    ("5.10.0-35-amd64", "cilium", False), ("6.10.14-linuxkit", "calico", False),
    # RHEL 8's 4.18 kernels carry the backports both projects accept as equivalent.
    ("4.18.0-553.el8_10.x86_64", "cilium", False)])
def test_kernel_older_than_the_cni_needs_is_a_warning(kernel, cni, warned):
    rep = preflight.check(runner(), fake_docker(kernel=kernel), preflight.needs_for(cni), cni=cni)
    assert rep.ok  # a warning, not a problem: the kernel may carry backports
    assert bool(rep.warnings) == warned
    if warned:
        (w,) = rep.warnings
        assert w.startswith(f"kernel: the Docker engine runs Linux {kernel}, older than v5.10.0") and "\n" not in w


@pytest.mark.docker
def test_real_engine_passes_the_docker_check(dockerd):
    info = preflight.SDKDocker(base_url=dockerd).version()
    assert info["Version"]
    # The fixture's /version answer has the shape of a real one.
    assert set(DOCKER_VERSION) <= set(info) and info["KernelVersion"]
    rep = preflight.check(runner(), preflight.SDKDocker(base_url=dockerd), ["docker"])
    assert rep.ok, rep.problems
    assert rep.found["docker"] == info["Version"]


@pytest.mark.docker
def test_docker_host_env_is_honoured(dockerd, monkeypatch):
    if dockerd is None:
        pytest.skip("the engine in use is the default one: DOCKER_HOST has nothing to point at")
    monkeypatch.setenv("DOCKER_HOST", dockerd)
    assert preflight.SDKDocker().version()["ApiVersion"]


def test_unreachable_engine_is_one_actionable_line(tmp_path):
    rep = preflight.check(runner(), preflight.SDKDocker(base_url=f"unix://{tmp_path}/absent.sock"), ["docker"])
    (problem,) = rep.problems
    assert problem.startswith("docker: daemon not reachable (") and "start Docker" in problem
    assert "\n" not in problem
