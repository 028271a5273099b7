"""The one seam for the Docker engine, and its fake.

``DockerAPI`` lists only the calls dashi-cluster makes: the engine's version
(preflight), the containers k3d made for one cluster's nodes (who created
the cluster, with which CNI and image), and whether an image is present or
must be pulled before ``k3d cluster create``. ``SDKDocker`` makes them
through the docker SDK (DOCKER_HOST and friends honoured); ``FakeDocker``
beside it answers from what a test puts in it and records every pull.

Why not ``k3d cluster list -o json`` for the labels and the image: k3d copies
only the labels whose key starts with "k3d" into a node's ``runtimeLabels``,
and reports the container's image ID (sha256:...) as its ``image``
(k3d-io/k3d v5.9.0 pkg/runtimes/docker/translate.go,
TranslateContainerDetailsToNode). The node containers themselves carry every
label and the image reference they were created from (``Config.Image``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from cluster.errors import DashiError

# k3d's labels on every node container of a cluster (k3d-io/k3d v5.9.0
# pkg/types/defaults.go DefaultRuntimeLabels, pkg/types/types.go LabelClusterName
# and LabelRole).
K3D_APP_LABEL = ("app", "k3d")
K3D_CLUSTER_LABEL = "k3d.cluster"
K3D_ROLE_LABEL = "k3d.role"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class NodeContainer:
    """One of k3d's node containers, as Docker reports it."""

    name: str
    role: str  # k3d.role: server, agent, loadbalancer
    image: str  # Config.Image: the reference it was created from, e.g. rancher/k3s:v1.33.4-k3s1
    labels: dict[str, str] = field(default_factory=dict)
    running: bool = False


class PullFailed(DashiError):
    """The engine could not pull an image. ``rate_limited`` when the registry said so."""

    def __init__(self, ref: str, detail: str):
        self.ref = ref
        self.detail = detail
        # Docker Hub answers HTTP 429 with the error code TOOMANYREQUESTS, which
        # the engine passes on as "toomanyrequests: ..." (distribution spec,
        # error codes; Docker Hub's "Usage and limits" page).
        low = detail.lower()
        self.rate_limited = "toomanyrequests" in low or "too many requests" in low
        super().__init__(f"docker could not pull {ref}: {detail}")


class DockerAPI(Protocol):
    def version(self) -> dict:
        """The engine's /version answer (keys "Version", "ApiVersion", "KernelVersion"). Raises DashiError."""

    def node_containers(self, cluster: str) -> list[NodeContainer]:
        """Every container k3d made for ``cluster`` (running or not). Raises DashiError."""

    def image_present(self, ref: str) -> bool:
        """Is the image ``ref`` in the engine's image store? Raises DashiError."""

    def pull(self, ref: str, progress: Progress) -> None:
        """Pull ``ref``, reporting progress as one line at a time. Raises PullFailed."""


def _one_line(e: Exception, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:limit]


class SDKDocker:
    """The Docker engine through the docker SDK."""

    def __init__(self, base_url: str | None = None, timeout: float = 5.0, pull_timeout: float = 300.0):
        self.base_url = base_url
        # 5s: a local daemon answers /version and container lists in
        # milliseconds; a hung socket should not stall preflight.
        self.timeout = timeout
        # A pull streams a progress message at least every few seconds while
        # layers download or extract; 5 minutes without one is a stalled pull.
        self.pull_timeout = pull_timeout

    def _call(self, what: Callable, timeout: float | None = None):
        import docker
        from docker.errors import APIError, DockerException

        t = timeout or self.timeout
        try:
            client = (docker.DockerClient(base_url=self.base_url, timeout=t) if self.base_url
                      else docker.from_env(timeout=t))
            try:
                return what(client)
            finally:
                client.close()
        except APIError as e:
            # The engine's own message (e.g. what a registry answered), not the
            # SDK's "500 Server Error for http+docker://..." wrapper.
            raise DashiError(_one_line(Exception(e.explanation or e), 300)) from e
        except DockerException as e:
            raise DashiError(_one_line(e, 120)) from e
        except OSError as e:  # socket-level failures the SDK does not wrap
            raise DashiError(_one_line(e)) from e

    def version(self) -> dict:
        return self._call(lambda c: c.version())

    def node_containers(self, cluster: str) -> list[NodeContainer]:
        def ask(c):
            # The filter k3d itself uses to find a cluster's nodes
            # (pkg/client/cluster.go ClusterGet: label k3d.cluster=<name>),
            # plus app=k3d so containers that only borrow the label are ignored.
            found = c.containers.list(all=True, filters={"label": [
                f"{K3D_APP_LABEL[0]}={K3D_APP_LABEL[1]}", f"{K3D_CLUSTER_LABEL}={cluster}"]})
            out = []
            for ct in found:
                cfg = ct.attrs.get("Config") or {}
                labels = dict(cfg.get("Labels") or {})
                out.append(NodeContainer(name=ct.name, role=labels.get(K3D_ROLE_LABEL, ""),
                                         image=cfg.get("Image", ""), labels=labels,
                                         running=bool((ct.attrs.get("State") or {}).get("Running"))))
            return sorted(out, key=lambda n: n.name)
        return self._call(ask)

    def image_present(self, ref: str) -> bool:
        from docker.errors import ImageNotFound

        def ask(c):
            try:
                c.images.get(ref)
                return True
            except ImageNotFound:
                return False
        return self._call(ask)

    def pull(self, ref: str, progress: Progress) -> None:
        from docker.utils import parse_repository_tag

        repo, tag = parse_repository_tag(ref)

        def go(c):
            tally = _PullTally()
            for event in c.api.pull(repo, tag=tag, stream=True, decode=True):
                if event.get("error"):
                    raise PullFailed(ref, str(event["error"]).strip())
                line = tally.add(event)
                if line:
                    progress(line)
        try:
            self._call(go, timeout=self.pull_timeout)
        except PullFailed:
            raise
        except DashiError as e:
            raise PullFailed(ref, str(e)) from e


class _PullTally:
    """Turns the engine's per-layer pull events into one progress line.

    Events (Docker Engine API, POST /images/create): {"status": "Downloading",
    "id": LAYER, "progressDetail": {"current": N, "total": T}}, then
    "Download complete", "Extracting", "Pull complete" or "Already exists".
    """

    _DONE = ("Download complete", "Pull complete", "Already exists")

    def __init__(self):
        self.total: dict[str, int] = {}
        self.current: dict[str, int] = {}
        self.done: set[str] = set()
        self.layers: set[str] = set()

    def add(self, e: dict) -> str | None:
        status, layer = str(e.get("status", "")), e.get("id")
        if layer and not status.startswith("Pulling from"):  # that event's id is the tag
            self.layers.add(layer)
        detail = e.get("progressDetail") or {}
        if layer and status == "Downloading" and detail.get("total"):
            self.total[layer] = int(detail["total"])
            self.current[layer] = int(detail.get("current", 0))
        elif layer and status in self._DONE:
            self.done.add(layer)
            if layer in self.total:
                self.current[layer] = self.total[layer]
        else:
            return None
        mb = 1024 * 1024
        got, want = sum(self.current.values()) / mb, sum(self.total.values()) / mb
        return f"{got:.1f}/{want:.1f} MB, {len(self.done)}/{len(self.layers)} layers"


# --------------------------------------------------------------------------
# The fake, for tests


@dataclass
class FakeDocker:
    """Answers from its fields; records pulls. ``pull_error`` makes every pull fail with that detail."""

    engine_version: dict = field(default_factory=dict)
    containers: list[NodeContainer] = field(default_factory=list)
    images: set[str] = field(default_factory=set)
    error: str | None = None  # the engine is unreachable: every call raises DashiError(error)
    pull_error: str | None = None
    pull_events: list[str] = field(default_factory=lambda: ["12.0/48.0 MB, 0/3 layers", "48.0/48.0 MB, 3/3 layers"])
    pulls: list[str] = field(default_factory=list)

    def _reachable(self) -> None:
        if self.error:
            raise DashiError(self.error)

    def version(self) -> dict:
        self._reachable()
        return dict(self.engine_version)

    def node_containers(self, cluster: str) -> list[NodeContainer]:
        self._reachable()
        return sorted((c for c in self.containers
                       if c.labels.get(K3D_CLUSTER_LABEL) == cluster
                       and c.labels.get(K3D_APP_LABEL[0]) == K3D_APP_LABEL[1]), key=lambda n: n.name)

    def image_present(self, ref: str) -> bool:
        self._reachable()
        return ref in self.images

    def pull(self, ref: str, progress: Progress) -> None:
        self._reachable()
        self.pulls.append(ref)
        if self.pull_error:
            raise PullFailed(ref, self.pull_error)
        for line in self.pull_events:
            progress(line)
        self.images.add(ref)
