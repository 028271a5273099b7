"""Snapshots of the NetworkPolicies of a profile's namespaces (and the
CiliumNetworkPolicies, where the cluster serves them: a cilium variant of a
step applies one; see ``POLICY_KINDS``).

A snapshot is taken before every step and before every rollback. It records
every NetworkPolicy in the profile's namespaces: ours (label
``app.kubernetes.io/managed-by=dashi-cluster``), which a restore makes exist
exactly as recorded, and other people's ("foreign"), kept only as evidence:
a restore never creates, changes or deletes a policy that is not ours.

A snapshot is labelled with what it holds, never with what some record
believed at the time: ``applied`` is the step prefix of the profile that
its policies of ours amount to (``steps_held``), or null when they amount to
none (a step cut off half-applied). Only a snapshot whose content is a step
prefix is ever restored, and its content is checked again when it is
chosen. The baseline is a snapshot like any other: the one taken before the
first step holds no policies of ours; when none is on record, a rollback to
the baseline writes one (``taken_before: baseline``) before restoring it,
so an interrupted rollback names a file that exists.

One snapshot is one YAML file (see ``cluster.state`` for the layout)::

    # dashi-cluster snapshot 0003-before-allow-platform
    id: 0003-before-allow-platform
    profile: dashi
    context: k3d-dashi
    server: https://0.0.0.0:6550
    created: 2025-01-01T10:00:00Z
    user: ada
    host: laptop
    taken_before: allow-platform      # the step about to be applied ("rollback": a rollback)
    applied: [default-deny, allow-dns] # the steps its policies of ours amount to (null: none)
    namespaces: [dashi-platform, ...]
    policies: [...]                   # ours: apiVersion, kind, metadata, spec
    foreign: [...]                    # not ours, never touched

``index.yaml`` lists every snapshot with the sha256 of its file. Loading a
snapshot checks the index entry, the checksum and the content before
anything is applied: a corrupt or missing snapshot is refused with a
message, never half-applied.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cluster import yamlio
from cluster.errors import ManifestError, SnapshotError
from cluster.live.record.files import atomic_write, dump_yaml, now_iso, sha256_hex, whoami
from cluster.live.record.policies import (
    CLUSTER_SCOPED_KINDS,
    POLICY_KINDS,
    canonical,
    clean_policy,
    is_ours,
    policy_key,
)
from cluster.policy.engine.compile import compile_policy

INDEX_VERSION = 1


def steps_held(profile, ours: list[dict]) -> int | None:
    """How many leading steps of ``profile`` the policies ``ours`` amount to
    (names and canonical specs), or None when they match no step prefix."""
    live = {policy_key(p): canonical(p) for p in ours}
    for k in range(len(profile.steps), -1, -1):
        want = {policy_key(p): canonical(p) for p in profile.policies_through(k)}
        if want == live:
            return k
    return None


@dataclass
class SnapshotInfo:
    id: str
    file: str
    sha256: str
    created: str
    user: str
    host: str
    taken_before: str
    # The steps the content amounts to; None: no step prefix of the profile.
    applied: list[str] | None = field(default_factory=list)
    policies: int = 0
    foreign: int = 0

    @property
    def label(self) -> str:
        if self.applied is None:
            return "no step prefix (a step cut off half-applied, or policies changed by hand)"
        return f"{len(self.applied)} step(s)" + (f" through {self.applied[-1]}" if self.applied else ": baseline")


@dataclass
class Snapshot:
    info: SnapshotInfo
    profile: str
    context: str
    namespaces: list[str]
    policies: list[dict]  # ours
    foreign: list[dict]  # not ours; evidence only


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "snapshot"


class SnapshotStore:
    """The snapshots of one profile on one cluster (``<profile dir>/snapshots``)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.index_path = directory / "index.yaml"

    # -- index ----------------------------------------------------------------

    def index(self) -> list[SnapshotInfo]:
        if not self.index_path.exists():
            return []
        try:
            data = yamlio.load(self.index_path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("snapshots"), list):
                raise ValueError("not a mapping with a 'snapshots' list")
            return [SnapshotInfo(**entry) for entry in data["snapshots"]]
        except (OSError, yamlio.YAMLError, TypeError, ValueError) as e:
            raise SnapshotError(f"snapshot index {self.index_path} is corrupt ({str(e).splitlines()[0]}); "
                                "nothing was changed. Repair it from the snapshot files beside it, "
                                "or move the directory away to start over") from None

    def _write_index(self, entries: list[SnapshotInfo]) -> None:
        atomic_write(self.index_path, dump_yaml(
            {"version": INDEX_VERSION, "snapshots": [asdict(e) for e in entries]},
            "dashi-cluster snapshot index. sha256 is the checksum of each file's bytes;\n"
            "a file that does not match is refused."))

    def find(self, snapshot_id: str) -> SnapshotInfo:
        for info in self.index():
            if info.id == snapshot_id:
                return info
        raise SnapshotError(f"no snapshot {snapshot_id!r} in {self.index_path}")

    def latest_holding(self, profile, k: int) -> Snapshot | None:
        """The newest snapshot whose content is exactly the first ``k`` steps of
        ``profile``: its label says so and its loaded content agrees (a label
        written under an older version of the profile is not trusted)."""
        want = [s.name for s in profile.steps[:k]]
        for info in reversed(self.index()):
            if info.applied != want:
                continue
            snap = self.load(info.id)
            if steps_held(profile, snap.policies) == k:
                return snap
        return None

    # -- save / load ----------------------------------------------------------

    def save(self, *, profile, context: str, server: str, taken_before: str,
             live_policies: list[dict]) -> SnapshotInfo:
        """Write the NetworkPolicies of ``profile``'s namespaces as a snapshot,
        labelled with the step prefix they amount to."""
        entries = self.index()
        seq = max((int(e.id.split("-", 1)[0]) for e in entries if e.id.split("-", 1)[0].isdigit()),
                  default=0) + 1
        snap_id = f"{seq:04d}-{_slug('before-' + taken_before)}"
        ours = sorted((clean_policy(p) for p in live_policies if is_ours(p)), key=policy_key)
        foreign = sorted((clean_policy(p) for p in live_policies if not is_ours(p)), key=policy_key)
        k = steps_held(profile, ours)
        applied = None if k is None else [s.name for s in profile.steps[:k]]
        user, host = whoami()
        created = now_iso()
        namespaces = list(profile.profile_namespaces)
        doc = {"id": snap_id, "profile": profile.name, "context": context, "server": server, "created": created,
               "user": user, "host": host, "taken_before": taken_before, "applied": applied,
               "namespaces": namespaces, "policies": ours, "foreign": foreign}
        data = dump_yaml(doc, f"dashi-cluster snapshot {snap_id}\n"
                              f"The NetworkPolicies of profile {profile.name}'s namespaces on {context}, "
                              f"taken before {taken_before}.\n"
                              "`applied` is what its policies of ours amount to (null: no step prefix).\n"
                              "`dashi rollback` restores `policies` exactly; `foreign` (not ours) is never touched.")
        info = SnapshotInfo(id=snap_id, file=f"{snap_id}.yaml", sha256=sha256_hex(data), created=created,
                            user=user, host=host, taken_before=taken_before, applied=applied,
                            policies=len(ours), foreign=len(foreign))
        atomic_write(self.dir / info.file, data)  # the file first: the index never names a partial file
        self._write_index(entries + [info])
        return info

    def load(self, snapshot_id: str) -> Snapshot:
        info = self.find(snapshot_id)
        path = self.dir / info.file
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SnapshotError(f"snapshot {info.id}: file {path} is missing or unreadable ({e.strerror}); "
                                "refusing to restore from it") from None
        actual = sha256_hex(data)
        if actual != info.sha256:
            raise SnapshotError(f"snapshot {info.id}: {path} does not match its checksum "
                                f"(index {info.sha256[:12]}…, file {actual[:12]}…): it was changed or "
                                "damaged after it was taken; refusing to restore from it")
        try:
            doc = yamlio.load(data)
        except yamlio.YAMLError:
            doc = None
        problem = _check_doc(doc, info)
        if problem:
            raise SnapshotError(f"snapshot {info.id}: {path}: {problem}; refusing to restore from it")
        return Snapshot(info, doc["profile"], doc["context"], list(doc["namespaces"]),
                        list(doc["policies"]), list(doc.get("foreign") or []))


def _check_doc(doc, info: SnapshotInfo) -> str | None:
    if not isinstance(doc, dict):
        return "not a YAML mapping"
    for key in ("id", "profile", "context", "namespaces", "policies", "applied"):
        if key not in doc:
            return f"missing {key!r}"
    if doc["id"] != info.id:
        return f"holds snapshot {doc['id']!r}, not {info.id!r}"
    if not isinstance(doc["namespaces"], list) or not isinstance(doc["policies"], list):
        return "namespaces and policies must be lists"
    if doc["applied"] != info.applied:
        return f"holds the label {doc['applied']!r}, the index says {info.applied!r}"
    for i, p in enumerate(doc["policies"]):
        meta = (p or {}).get("metadata") if isinstance(p, dict) else None
        if not isinstance(meta, dict) or p.get("kind") not in POLICY_KINDS or not meta.get("name"):
            return f"policies[{i}] is not a NetworkPolicy (or CiliumNetworkPolicy) with a name"
        if p["kind"] not in CLUSTER_SCOPED_KINDS and meta.get("namespace") not in doc["namespaces"]:
            return f"policies[{i}] ({meta.get('name')}) is outside the snapshot's namespaces"
        if not is_ours(p):
            return f"policies[{i}] ({meta.get('namespace')}/{meta.get('name')}) does not carry our label"
        try:
            compile_policy(p)
        except ManifestError as e:
            return f"policies[{i}] is not a valid {p['kind']} ({e})"
    return None
