"""Where the tool keeps what it knows about clusters, and how it writes it.

One fixed place per user, never the working directory: two shells in two
directories of a clone, or two clones, must find the same record and the
same lock. ``$DASHI_STATE_DIR`` if set, else ``$XDG_STATE_HOME/dashi-cluster``,
else ``~/.local/state/dashi-cluster`` (the XDG base directory spec's place
for state that should survive a reboot but is not configuration).

A cluster is known by its identity, the uid of its ``kube-system``
namespace (created once with the cluster and never re-created), not by its
kubeconfig context name: a cluster deleted and re-created under the same
name is another cluster and starts a fresh record (``ClusterState.note``
says so). Layout, all plain text a person can read; nothing here is needed
to run the cluster, only to change it safely::

    <state>/
      contexts.yaml                        context name -> the cluster uid it reached last
      clusters/<kube-system uid>/
        cluster.yaml                       contexts and servers seen, the CNI's deny behaviour
                                           (drop or reject) as the canary measured it
        lock                               held (flock) while a run on this machine changes
                                           the cluster; says who (the cluster-side Lease
                                           keeps other machines out, see cluster.live.lease)
        <profile>/                         one directory per profile applied there
          state.yaml                       the step record: steps applied, which are verified,
                                           and the step in progress if a run was cut off
          history.jsonl                    one JSON object per event (append-only)
          snapshots/
            index.yaml                     every snapshot: id, file, sha256, when, who, and the
                                           steps its content amounts to (derived from the content)
            0001-before-default-deny.yaml  the NetworkPolicies of the profile's namespaces
            ...                            (ours, to restore; others', for the record)
          evidence/                        full reports of failed verifications

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

from cluster import yamlio
from cluster.errors import StateError

STATE_ENV = "DASHI_STATE_DIR"
DENY_BEHAVIOURS = ("drop", "reject")


def state_root() -> Path:
    """The state directory: $DASHI_STATE_DIR, else the XDG state home's
    dashi-cluster. A path that is (or lies below) a file is refused before
    anything reads or writes there."""
    if os.environ.get(STATE_ENV):
        root = Path(os.environ[STATE_ENV])
    else:
        xdg = os.environ.get("XDG_STATE_HOME")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
        root = base / "dashi-cluster"
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
    body = yamlio.dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
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
    """Which steps of a profile are applied on a cluster, and which of them
    are verified.

    ``steps`` are the steps whose policies are in place, in order. A step is
    added when its live verification passes; a restore replaces the list
    with the steps its snapshot holds and clears every ``verified_at``,
    because a restored state is not verified until the matrix is probed
    again. ``verified`` is the one notion of "verified" that status,
    network-policies-up and rollback share: the applied steps, when each of
    them has been verified since the last change. ``in_progress`` is set
    before a step (or a restore) touches the cluster and cleared when it
    ends either way; if a run is cut off (Ctrl-C, a crash, kill -9), the
    next run finds it and resolves it.
    """

    profile: str
    context: str
    steps: list[StepEntry] = field(default_factory=list)
    in_progress: dict | None = None
    updated: str = ""

    @property
    def applied(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def verified(self) -> list[str]:
        """The leading applied steps that are verified (all of them, once verified)."""
        out = []
        for s in self.steps:
            if not s.verified_at:
                break
            out.append(s.name)
        return out

    @property
    def fully_verified(self) -> bool:
        return len(self.verified) == len(self.steps) and not self.in_progress

    def mark_verified(self, when: str) -> list[str]:
        """Record that the live matrix of the applied steps was verified; the steps newly verified."""
        fresh = [s.name for s in self.steps if not s.verified_at]
        for s in self.steps:
            s.verified_at = s.verified_at or when
        return fresh


class RecordStore:
    def __init__(self, directory: Path):
        self.path = directory / "state.yaml"

    def load(self, profile: str, context: str) -> StepRecord:
        if not self.path.exists():
            return StepRecord(profile, context)
        try:
            data = yamlio.load(self.path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("steps", []), list):
                raise ValueError("not a mapping with a 'steps' list")
            steps = [StepEntry(**s) for s in data.get("steps") or []]
            progress = data.get("in_progress")
            if progress is not None and not (isinstance(progress, dict) and progress.get("phase")):
                raise ValueError("in_progress must be a mapping with a phase")
        except (OSError, yamlio.YAMLError, TypeError, ValueError) as e:
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


# --------------------------------------------------------------------------
# A cluster's identity and its directory


@dataclass(frozen=True)
class ClusterIdentity:
    """Which cluster a context reaches: the uid of its kube-system namespace."""

    uid: str
    context: str
    server: str


def identify(kube) -> ClusterIdentity:
    """Ask the cluster who it is. Raises KubeError when it cannot be asked."""
    context, server = kube.context(), kube.server()
    ns = kube.get("v1", "Namespace", "kube-system")
    uid = ((ns or {}).get("metadata") or {}).get("uid")
    if not uid or not re.fullmatch(r"[A-Za-z0-9-]{8,64}", str(uid)):
        raise StateError(f"cannot tell which cluster context {context} ({server}) reaches: its kube-system "
                         "namespace " + ("does not exist" if ns is None else f"has no usable uid ({uid!r})")
                         + "; the rollout keys its record by that uid")
    return ClusterIdentity(str(uid), context, server)


def known_cluster_dir(context: str, root: Path | None = None) -> Path | None:
    """Offline: the record of the cluster a context reached last (from the
    contexts.yaml index that every command updates), or None."""
    root = root or state_root()
    index_path = root / "contexts.yaml"
    try:
        index = yamlio.load(index_path.read_text()) if index_path.exists() else {}
    except (OSError, yamlio.YAMLError):
        return None
    entry = index.get(context) if isinstance(index, dict) else None
    uid = entry.get("uid") if isinstance(entry, dict) else None
    return root / "clusters" / str(uid) if uid else None


class ClusterState:
    """What this machine knows about one cluster: ``<state>/clusters/<uid>/``."""

    def __init__(self, identity: ClusterIdentity, root: Path | None = None):
        self.identity = identity
        self.root = root or state_root()
        self.dir = self.root / "clusters" / identity.uid
        self.path = self.dir / "cluster.yaml"
        # Said once by the first command that finds a context pointing at a
        # cluster other than the one it reached before.
        self.note: str | None = None

    @classmethod
    def open(cls, kube, root: Path | None = None) -> "ClusterState":
        """Identify the cluster behind ``kube``, note a context that now reaches
        another cluster, and remember which cluster the context reached."""
        state = cls(identify(kube), root)
        state._remember_context()
        return state

    def profile_dir(self, profile: str) -> Path:
        return self.dir / context_slug(profile)

    # -- cluster.yaml -----------------------------------------------------

    def load(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = yamlio.load(self.path.read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError("not a mapping")
        except (OSError, yamlio.YAMLError, ValueError) as e:
            raise StateError(f"cluster record {self.path} is unreadable ({str(e).splitlines()[0]}); "
                             "move it away (it only caches what the canary measured)") from None
        return data

    def _save(self, data: dict) -> None:
        atomic_write(self.path, dump_yaml(data, "dashi-cluster: what this machine knows about one cluster,\n"
                                                "named by the uid of its kube-system namespace."))

    @property
    def cni(self) -> dict:
        return self.load().get("cni") or {}

    @property
    def deny_behaviour(self) -> str:
        """``drop`` (Calico, Cilium: a denied packet is silently dropped, a
        probe times out), ``reject`` (k3s's kube-router: answered with ICMP
        port-unreachable, a probe is refused) or ``unknown`` (never measured)."""
        value = self.cni.get("deny_behaviour")
        return value if value in DENY_BEHAVIOURS else "unknown"

    def save_cni(self, *, name: str, deny_behaviour: str, evidence: str = "") -> None:
        if deny_behaviour not in DENY_BEHAVIOURS:
            raise StateError(f"deny behaviour must be one of {', '.join(DENY_BEHAVIOURS)}, not {deny_behaviour!r}")
        data = self.load()
        data["cni"] = {"name": name, "deny_behaviour": deny_behaviour, "measured": now_iso(),
                       "evidence": evidence}
        self._save(data)

    def _remember_context(self) -> None:
        ident = self.identity
        index_path = self.root / "contexts.yaml"
        try:
            index = yamlio.load(index_path.read_text()) if index_path.exists() else {}
        except (OSError, yamlio.YAMLError):
            index = {}  # only a cache of what was seen; rebuilt from here on
        index = index if isinstance(index, dict) else {}
        before = index.get(ident.context) if isinstance(index.get(ident.context), dict) else {}
        if before.get("uid") and before["uid"] != ident.uid:
            old = self.root / "clusters" / str(before["uid"])
            self.note = (f"Context {ident.context} now reaches a different cluster (kube-system uid "
                         f"{ident.uid[:8]}, was {str(before['uid'])[:8]} since {before.get('since', '?')}): "
                         "the cluster was re-created. Starting a fresh record for it"
                         + (f"; the old cluster's record stays in {old}" if old.is_dir() else "") + ".")
        now = now_iso()
        data = self.load()
        if data.get("uid") != ident.uid or ident.context not in (data.get("contexts") or {}):
            data["uid"] = ident.uid
            data.setdefault("contexts", {})[ident.context] = {"server": ident.server, "first_seen": now}
            self._save(data)
        if before.get("uid") != ident.uid:
            index[ident.context] = {"uid": ident.uid, "server": ident.server, "since": now}
            atomic_write(index_path, dump_yaml(index, "dashi-cluster: the cluster (kube-system uid) each "
                                                      "kubeconfig context reached last."))
