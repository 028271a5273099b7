"""Preflight: is this machine able to run what the chosen CNI needs?

Each problem is one line that says what is wrong and how to fix it. The
Docker engine is asked through the docker SDK behind a one-call interface
(``DockerAPI``), so tests use a real engine where one runs and a stub
otherwise.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from typing import Protocol

from cluster import versions
from cluster.errors import CommandFailed, DashiError, ToolMissing
from cluster.local import helm, k3d
from cluster.local.runner import INSTALL_HINTS, Runner
from cluster.versions import fmt_version


class DockerAPI(Protocol):
    def version(self) -> dict:
        """The engine's /version answer (keys "Version", "ApiVersion"). Raises DashiError."""


class SDKDocker:
    """The Docker engine through the docker SDK (DOCKER_HOST and friends honoured)."""

    def __init__(self, base_url: str | None = None, timeout: float = 5.0):
        self.base_url = base_url
        # 5s: a local daemon answers /version in milliseconds; a hung socket
        # should not stall preflight.
        self.timeout = timeout

    def version(self) -> dict:
        import docker
        from docker.errors import DockerException

        try:
            client = (docker.DockerClient(base_url=self.base_url, timeout=self.timeout) if self.base_url
                      else docker.from_env(timeout=self.timeout))
            try:
                return client.version()
            finally:
                client.close()
        except DockerException as e:
            raise DashiError(str(e).splitlines()[0][:120]) from e
        except OSError as e:  # socket-level failures the SDK does not wrap
            raise DashiError(str(e)[:200]) from e


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


def kubectl_version(runner: Runner) -> tuple[int, int, int]:
    out = runner.run(["kubectl", "version", "--client", "-o", "json"]).stdout
    try:
        git = json.loads(out)["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        git = out
    v = parse_version(git)
    if v is None:
        raise ToolMissing(f"kubectl: cannot read its version from {out.strip()[:80]!r}")
    return v


@dataclass
class Report:
    found: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

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
        report.problems.append(f"{name}: not found — {INSTALL_HINTS[name]}")
        return
    try:
        v = read(runner)
    except (CommandFailed, ToolMissing) as e:
        report.problems.append(f"{name}: does not run ({str(e).splitlines()[0]}) — {INSTALL_HINTS[name]}")
        return
    report.found[name] = fmt_version(v)
    if tuple(v) < tuple(minimum):
        report.problems.append(f"{name}: {fmt_version(v)} is too old (need >= {fmt_version(minimum)}: {why}) — "
                               f"{INSTALL_HINTS[name]}")


def check(runner: Runner, docker: DockerAPI | None, needs: list[str]) -> Report:
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
            except DashiError as e:
                report.problems.append(
                    f"docker: daemon not reachable ({e}) — start Docker (e.g. `sudo systemctl start docker`) "
                    "or point DOCKER_HOST at it")
    if "docker-cli" in needs and runner.which("docker") is None:
        report.problems.append(f"docker: the docker CLI is not on PATH (used to prepare Cilium's mounts in the "
                               f"nodes) — {INSTALL_HINTS['docker']}")
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
