"""The history of changes to a cluster: who applied or rolled back what, when,
from which snapshot, and what the verification found.

``<state>/clusters/<uid>/<profile>/history.jsonl``: one JSON object per line,
appended (each line in one write, then fsync), so a crash loses at most the
line being written and never corrupts the lines before it. A torn last line
is skipped when reading, with a note.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cluster.live.record.files import now_iso, open_private, whoami

EVENTS = ("step-verified", "step-failed", "restored", "verified", "rollback", "resolved", "smoke")


@dataclass
class History:
    path: Path

    @classmethod
    def at(cls, directory: Path) -> "History":
        return cls(directory / "history.jsonl")

    def append(self, event: str, *, context: str, profile: str, step: str | None = None,
               snapshot: str | None = None, ok: bool | None = None, summary: dict | None = None,
               message: str = "") -> dict:
        user, host = whoami()
        entry = {"time": now_iso(), "user": user, "host": host, "context": context, "profile": profile,
                 "event": event, "step": step, "snapshot": snapshot, "ok": ok,
                 "summary": summary or {}, "message": message}
        line = (json.dumps(entry, sort_keys=False) + "\n").encode()
        fd = open_private(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def read(self) -> tuple[list[dict], list[str]]:
        """(entries, notes about unreadable lines)."""
        if not self.path.exists():
            return [], []
        entries, notes = [], []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError
                entries.append(entry)
            except ValueError:
                notes.append(f"{self.path}:{n}: unreadable line skipped")
        return entries, notes
