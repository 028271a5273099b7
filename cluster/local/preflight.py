"""Preflight: is this machine able to run what the chosen CNI needs?

Each problem is one line that says what is wrong and how to fix it; a
warning is one line about a risk that does not stop the run. The Docker
engine is asked through the Docker seam (cluster.seams.docker_engine), so
tests use a real engine where one runs and the fake otherwise.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field

from cluster import versions
from cluster.errors import CommandFailed, DashiError, ToolMissing
from cluster.local import helm, k3d
from cluster.seams.docker_engine import DockerAPI, SDKDocker
from cluster.seams.runner import Runner, install_hint, tool_version
from cluster.versions import fmt_version

__all__ = ["DockerAPI", "SDKDocker", "Report", "check", "needs_for", "port_free", "kubectl_version"]


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


KUBECTL_VERSION_ARGV = ["kubectl", "version", "--client", "-o", "json"]


def parse_kubectl_version(out: str) -> tuple[int, int, int] | None:
    """clientVersion.gitVersion of `kubectl version --client -o json` (k8s.io/kubectl
    pkg/cmd/version: {"clientVersion": {..., "gitVersion": "v1.33.4", ...}, "kustomizeVersion": ...})."""
    try:
        git = json.loads(out)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        return None
    return parse_version(str(git))


def kubectl_version(runner: Runner) -> tuple[int, int, int]:
    return tool_version(runner, KUBECTL_VERSION_ARGV, parse_kubectl_version)


@dataclass
class Report:
    found: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # risks that do not stop a run

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ToolMissing("preflight found problems:\n" + "\n".join(f"  - {p}" for p in self.problems))


def needs_for(cni: str) -> list[str]:
    """Tools cluster-up uses for a CNI. The docker CLI only for Cilium's node mounts."""
    need = ["docker", "k3d", "kubectl"]
    if cni == "cilium":
        need += ["docker-cli", "helm"]
    return need


def _tool(report: Report, name: str, runner: Runner, read, minimum: tuple[int, ...], why: str) -> None:
    if runner.which(name) is None:
        report.problems.append(f"{name}: not found — {install_hint(name)}")
        return
    try:
        v = read(runner)
    except (CommandFailed, ToolMissing) as e:
        report.problems.append(f"{name}: does not run ({str(e).splitlines()[0]}) — {install_hint(name)}")
        return
    report.found[name] = fmt_version(v)
    if tuple(v) < tuple(minimum):
        report.problems.append(f"{name}: {fmt_version(v)} is too old (need >= {fmt_version(minimum)}: {why}) — "
                               f"{install_hint(name)}")


def _kernel(report: Report, info: dict, cni: str | None) -> None:
    """The nodes of a k3d cluster are containers: they run on the Docker
    engine's kernel (on macOS and Windows, Docker Desktop's VM), which is what
    /version reports as KernelVersion."""
    need = versions.CNI_MIN_KERNEL.get(cni or "")
    kernel = str(info.get("KernelVersion", ""))
    v = parse_version(kernel)
    if need is None or v is None or v >= need:
        return
    # RHEL 8 kernels (4.18.0-*.el8*) carry the backports both projects accept
    # as equivalent (Cilium: "4.18 on RHEL 8.10"; Calico lists RHEL 8).
    if re.search(r"\.el8", kernel):
        return
    report.warnings.append(f"kernel: the Docker engine runs Linux {kernel}, older than {fmt_version(need)}, the "
                           f"minimum of {cni} {versions.CNI_VERSION_OF[cni]} — expect the CNI not to start; "
                           "use a newer kernel (or Docker Desktop) or --cni k3s")


def check(runner: Runner, docker: DockerAPI | None, needs: list[str], cni: str | None = None) -> Report:
    report = Report()
    if "docker" in needs:
        if docker is None:
            report.problems.append("docker: no Docker engine client — install Docker")
        else:
            try:
                info = docker.version()
                v = parse_version(str(info.get("Version", "")))
                report.found["docker"] = str(info.get("Version", "?"))
                if v is not None and v < versions.DOCKER_MIN_VERSION:
                    report.problems.append(
                        f"docker: engine {info.get('Version')} is too old (k3d v5 needs >= "
                        f"{fmt_version(versions.DOCKER_MIN_VERSION)}) — upgrade Docker")
                _kernel(report, info, cni)
            except DashiError as e:
                report.problems.append(
                    f"docker: daemon not reachable ({e}) — start Docker (e.g. `sudo systemctl start docker`) "
                    "or point DOCKER_HOST at it")
    if "docker-cli" in needs and runner.which("docker") is None:
        report.problems.append(f"docker: the docker CLI is not on PATH (used to prepare Cilium's mounts in the "
                               f"nodes) — {install_hint('docker')}")
    if "k3d" in needs:
        _tool(report, "k3d", runner, k3d.version, versions.K3D_MIN_VERSION, "k3d.io/v1alpha5 config files")
    if "kubectl" in needs:
        _tool(report, "kubectl", runner, kubectl_version, versions.KUBECTL_MIN_VERSION, "server-side apply")
    if "helm" in needs:
        _tool(report, "helm", runner, helm.version, versions.HELM_MIN_VERSION, "Helm 3 charts")
    return report


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can we bind host:port? (What k3d's API port mapping will need.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
