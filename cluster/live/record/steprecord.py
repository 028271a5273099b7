"""The step record: which steps of a profile are applied on a cluster, which
are verified, and what a run was doing when it was cut off
(``<profile dir>/state.yaml``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from cluster import yamlio
from cluster.errors import StateError
from cluster.live.record.files import atomic_write, dump_yaml, now_iso, whoami


@dataclass
class StepEntry:
    name: str
    snapshot: str  # the snapshot taken before this step
    applied_at: str
    verified_at: str
    user: str
    host: str
    summary: dict = field(default_factory=dict)


class Phase(str, Enum):
    """What a run was doing to the cluster when it wrote its in-progress note:
    applying a step's policies, verifying a step in place, or restoring a
    snapshot (its verification included). Nothing else is ever recorded."""

    APPLYING = "applying"
    VERIFYING = "verifying"
    RESTORING = "restoring"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


@dataclass
class InProgress:
    """The note a run writes before it changes the cluster, and clears when
    it is done either way: what it was doing, to which step, from which
    snapshot, and who it was. A run cut off in between (Ctrl-C, a crash,
    kill -9) leaves it for the next run, which resolves it."""

    phase: Phase
    step: str | None
    snapshot: str | None
    started: str
    pid: int
    user: str
    host: str
    why: str = ""  # restoring: why the snapshot is being restored
    restored: str = ""  # restoring: when the snapshot's policies were put back (its verification follows)

    @classmethod
    def begin(cls, phase: Phase, *, step: str | None, snapshot: str | None, why: str = "") -> "InProgress":
        """The note of this process, starting now."""
        user, host = whoami()
        return cls(Phase(phase), step, snapshot, now_iso(), os.getpid(), user, host, why)

    @property
    def who(self) -> str:
        return f"pid {self.pid} {self.user}@{self.host} at {self.started}"

    @property
    def puts_step_in_place(self) -> bool:
        """Whether the step named is (partly) live: being applied or verified."""
        return self.phase in (Phase.APPLYING, Phase.VERIFYING) and bool(self.step)

    def to_dict(self) -> dict:
        out = {"phase": self.phase.value, "step": self.step, "snapshot": self.snapshot, "started": self.started,
               "pid": self.pid, "user": self.user, "host": self.host}
        out.update({k: v for k, v in (("why", self.why), ("restored", self.restored)) if v})
        return out

    @classmethod
    def from_dict(cls, data) -> "InProgress":
        """Read the note back; ValueError naming what is wrong."""
        if not isinstance(data, dict) or not data.get("phase"):
            raise ValueError("in_progress must be a mapping with a phase")
        phases = ", ".join(p.value for p in Phase)
        try:
            phase = Phase(data["phase"])
        except ValueError:
            raise ValueError(f"in_progress phase {data['phase']!r} is not one of {phases}") from None
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"in_progress has unknown fields: {', '.join(map(str, unknown))}")
        return cls(phase, _opt_str(data.get("step")), _opt_str(data.get("snapshot")), str(data.get("started") or ""),
                   int(data.get("pid") or 0), str(data.get("user") or "?"), str(data.get("host") or "?"),
                   str(data.get("why") or ""), str(data.get("restored") or ""))


def _opt_str(value) -> str | None:
    return None if value is None else str(value)


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
    in_progress: InProgress | None = None
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
    def in_place(self) -> list[str]:
        """The steps whose policies are (at least partly) live: the applied
        ones, and the one a cut-off run was applying or verifying."""
        ip = self.in_progress
        return self.applied + ([ip.step] if ip and ip.puts_step_in_place else [])

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
            progress = None if progress is None else InProgress.from_dict(progress)
        except (OSError, yamlio.YAMLError, TypeError, ValueError) as e:
            raise StateError(f"step record {self.path} is unreadable ({str(e).splitlines()[0]}); "
                                "fix it or move it away (the snapshots next to it are intact)") from None
        return StepRecord(data.get("profile", profile), data.get("context", context), steps, progress,
                          data.get("updated", ""))

    def save(self, record: StepRecord) -> None:
        record.updated = now_iso()
        data = {"profile": record.profile, "context": record.context,
                "steps": [asdict(s) for s in record.steps],
                "in_progress": record.in_progress.to_dict() if record.in_progress else None,
                "updated": record.updated}
        atomic_write(self.path, dump_yaml(
            data, "dashi-cluster step record: the verified steps of this profile on this cluster.\n"
                  "in_progress is set while a step or a restore is changing the cluster."))


def current_state(cluster_dir: Path, context: str = "") -> dict[str, StepRecord]:
    """The step record of every profile the rollout has recorded in one
    cluster's directory, by profile name (empty when there is none). Every
    command reads "verified" from them the same way
    (``StepRecord.verified``, ``StepRecord.fully_verified``)."""
    if not cluster_dir.is_dir():
        return {}
    records = {}
    for d in sorted(p for p in cluster_dir.iterdir() if p.is_dir()):
        if (d / "state.yaml").exists():
            rec = RecordStore(d).load(d.name, context)
            records[rec.profile] = rec
    return records
