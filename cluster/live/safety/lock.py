"""One run at a time per machine may change a cluster: this machine's lock.

The lock is an exclusive ``flock`` on ``<state>/clusters/<uid>/lock``, one
per cluster (known by the uid of its kube-system namespace, whatever
context names it), shared by every profile. The kernel drops it when the
process ends, however it ends (Ctrl-C, kill -9, a crash), so a lock never
goes stale; the file's content only says who holds it, for the message the
second run prints. What a cut-off run leaves half done is recorded
separately (``in_progress`` in the step record) and resolved by the next
run.

The lock keeps runs of this machine apart, and is taken first because it
costs nothing. Runs of other machines share only the cluster: the
cluster's lease (``cluster.live.safety.lease``) keeps them apart.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from cluster.errors import LockError
from cluster.live.record.files import now_iso, open_private, whoami


class ClusterLock:
    """``with ClusterLock(dir, command):`` holds the lock or raises LockError."""

    def __init__(self, directory: Path, command: str = ""):
        self.path = directory / "lock"
        self.command = command
        self._fd: int | None = None

    def holder(self) -> dict | None:
        """Who holds (or last held) the lock, from the file's content."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            data = json.loads(text)
            return data if isinstance(data, dict) else None
        except ValueError:
            return None

    def is_held(self) -> bool:
        """True when another process holds the lock right now."""
        if self._fd is not None:
            return True
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we might have just taken
        return False

    def acquire(self) -> None:
        if self._fd is not None:
            raise LockError(f"lock {self.path} is already held by this process")
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder() or {}
            who = (f"pid {h.get('pid', '?')} ({h.get('user', '?')}@{h.get('host', '?')}, "
                   f"`{h.get('command', '?')}` since {h.get('since', '?')})") if h else "another process"
            raise LockError(f"another run is changing this cluster: {who}. Wait for it to finish "
                            f"(lock: {self.path})") from None
        user, host = whoami()
        info = {"pid": os.getpid(), "user": user, "host": host, "command": self.command, "since": now_iso()}
        # Rewrite in place: the file must stay the same inode we hold the lock on.
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty file: nobody holds it
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> "ClusterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
