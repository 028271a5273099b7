"""Where the rollout keeps its state on disk, and how it writes it.

Layout (all plain text a person can read; nothing here is needed to run the
cluster, only to change it safely)::

    $DASHI_STATE_DIR/                      default ./.dashi/state (gitignored)
      <context>/                           one directory per kubeconfig context
        lock                               held (flock) while a run changes this cluster;
                                           says who: pid, user, host, command, since
        <profile>/                         one directory per profile applied there
          state.yaml                       the step record: steps applied and verified,
                                           and the step in progress if a run was cut off
          history.jsonl                    one JSON object per event (append-only)
          snapshots/
            index.yaml                     every snapshot: id, file, sha256, when, who,
                                           the step it was taken before, steps applied then
            0001-before-default-deny.yaml  the NetworkPolicies of the profile's namespaces
            0002-before-allow-dns.yaml     (ours, to restore; others', for the record)
            ...

Every file is written atomically: a temporary file in the same directory,
flushed and fsync'd, then renamed over the old one, then the directory is
fsync'd; a crash leaves the old file or the new one, never half of one.
A snapshot file is written before its index entry, so the index never names
a file that is not complete on disk.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from cluster.errors import StateError

STATE_ENV = "DASHI_STATE_DIR"
DEFAULT_STATE_DIR = Path(".dashi") / "state"


def state_root() -> Path:
    """The state directory; a path that is (or lies below) a file is refused
    before anything reads or writes there."""
    root = Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR)
    for p in (root, *root.parents):
        if p.exists():
            if not p.is_dir():
                what = "" if p == root else f" ({p} is a file)"
                raise StateError(f"state directory {root} (${STATE_ENV}) is not a directory{what}")
            break
    return root


def context_slug(context: str) -> str:
    """A directory name for a context. Names like EKS ARNs contain '/' and ':';
    those are replaced, and a short hash keeps two such names apart."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", context).strip(".") or "_"
    if slug != context:
        slug += "-" + hashlib.sha256(context.encode()).hexdigest()[:8]
    return slug


def cluster_dir(context: str, root: Path | None = None) -> Path:
    return (root or state_root()) / context_slug(context)


def profile_dir(context: str, profile: str, root: Path | None = None) -> Path:
    return cluster_dir(context, root) / context_slug(profile)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def whoami() -> tuple[str, str]:
    """(user, host) for the record of who changed a cluster."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = os.environ.get("USER") or f"uid-{os.getuid()}"
    return user, socket.gethostname()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not every
    # platform lets a directory be opened, and then there is nothing to do.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def dump_yaml(data, header: str = "") -> bytes:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    head = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return (head + body).encode()


# --------------------------------------------------------------------------
# The step record


@dataclass
class StepEntry:
    name: str
    snapshot: str  # the snapshot taken before this step
    applied_at: str
    verified_at: str
    user: str
    host: str
    summary: dict = field(default_factory=dict)


@dataclass
class StepRecord:
    """Which steps of a profile are applied (and verified) on a cluster.

    ``steps`` holds only verified steps: a step is recorded when its live
    verification passed. ``in_progress`` is set before a step (or a restore)
    touches the cluster and cleared when it ends either way; if a run is cut
    off (Ctrl-C, a crash), the next run finds it and resolves it.
    """

    profile: str
    context: str
    steps: list[StepEntry] = field(default_factory=list)
    in_progress: dict | None = None
    updated: str = ""

    @property
    def applied(self) -> list[str]:
        return [s.name for s in self.steps]


class RecordStore:
    def __init__(self, directory: Path):
        self.path = directory / "state.yaml"

    def load(self, profile: str, context: str) -> StepRecord:
        if not self.path.exists():
            return StepRecord(profile, context)
        try:
            data = yaml.safe_load(self.path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
                raise ValueError("not a mapping with a 'steps' list")
            steps = [StepEntry(**s) for s in data.get("steps") or []]
            progress = data.get("in_progress")
            if progress is not None and not (isinstance(progress, dict) and progress.get("phase")):
                raise ValueError("in_progress must be a mapping with a phase")
        except (OSError, yaml.YAMLError, TypeError, ValueError) as e:
            raise StateError(f"step record {self.path} is unreadable ({str(e).splitlines()[0]}); "
                                "fix it or move it away (the snapshots next to it are intact)") from None
        return StepRecord(data.get("profile", profile), data.get("context", context), steps, progress,
                          data.get("updated", ""))

    def save(self, record: StepRecord) -> None:
        record.updated = now_iso()
        data = {"profile": record.profile, "context": record.context,
                "steps": [asdict(s) for s in record.steps], "in_progress": record.in_progress,
                "updated": record.updated}
        atomic_write(self.path, dump_yaml(
            data, "dashi-cluster step record: the verified steps of this profile on this cluster.\n"
                  "in_progress is set while a step or a restore is changing the cluster."))
