"""The step record: which steps of a profile are applied on a cluster, which
are verified, and what a run was doing when it was cut off
(``<profile dir>/state.yaml``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cluster import yamlio
from cluster.errors import StateError
from cluster.live.record.files import atomic_write, dump_yaml, now_iso


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
