"""How the record is written: its place on disk, atomic writes, YAML with a
header, who and when.

Where the tool keeps what it knows about clusters, and how it writes it.

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
                                           keeps other machines out, see cluster.live.safety.lease)
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

The record is private to the user who runs the tool (it names clusters,
contexts, who changed what, and every policy): directories are made 0700
and files 0600, and a directory or file of the record made before with
looser modes is tightened when it is next written.

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
from pathlib import Path

from cluster import yamlio
from cluster.errors import StateError

STATE_ENV = "DASHI_STATE_DIR"


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


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (0700): each missing
    one is made so (``mkdir -p`` would give the parents the umask's 0755),
    and an existing one of this user's with looser modes is tightened."""
    missing = []
    p = path
    while not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass  # made meanwhile by another run
    private(path)
    return path


def private(path: Path) -> None:
    """Take group and other permissions away from ``path`` when it is this
    user's (someone else's directory, say a shared one, keeps its modes)."""
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            path.chmod(st.st_mode & 0o700)
    except OSError:
        pass  # not ours to change; writing there says what is wrong


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a file of the record, made 0600 (and tightened, when an
    earlier version left it readable by others)."""
    private_dir(path.parent)
    fd = os.open(path, flags | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except OSError:
        pass
    return fd


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file only
    (0600: ``mkstemp`` makes the temporary file so, and the rename keeps it)."""
    private_dir(path.parent)
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
