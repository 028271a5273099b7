"""A recording of observed flows on disk, and flows gathered per key.

A recording is a directory, written whole into a temporary sibling and
renamed into place (a cut-off recording never replaces the last good one)::

    meta.json    where the flows came from, when, how many were seen, kept,
                 skipped and lost, and the caps (flows, bytes) and whether
                 one was reached
    peers.jsonl  each end of a flow once, one JSON object per line (its id
                 is its line number, from 0)
    flows.tsv    one line per flow: src id, dst id, port, protocol, verdict,
                 count, time (seconds since the epoch)

Reading it back gathers flows per (src, dst, port, protocol, verdict) with
their count, first and last time: a million lines take well under a second
(benchmarks/bench_flows.py), and the replay then asks the engine once per
distinct edge, never once per flow.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cluster.errors import ManifestError
from cluster.policy.flows.model import Flow, Peer

VERSION = 1
META, PEERS, FLOWS = "meta.json", "peers.jsonl", "flows.tsv"
# What a recording keeps at most unless told otherwise: a million flows
# replay in about a second, and at ~40 bytes a line fit in 64 MiB.
DEFAULT_MAX_FLOWS = 1_000_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

Key = tuple[int, int, int, str, str]  # src id, dst id, port (0: none), protocol, verdict


@dataclass
class Gathered:
    """Flows per key: count, first and last time (0 when unknown)."""

    peers: list[Peer]
    by_key: dict[Key, list] = field(default_factory=dict)  # key -> [count, first, last]
    meta: dict = field(default_factory=dict)

    @property
    def flows(self) -> int:
        return sum(v[0] for v in self.by_key.values())


class Gatherer:
    """Gathers Flow values as they come (a file, a live stream)."""

    def __init__(self):
        self.peers: list[Peer] = []
        self._ids: dict[Peer, int] = {}
        self.by_key: dict[Key, list] = {}

    def peer_id(self, peer: Peer) -> int:
        i = self._ids.get(peer)
        if i is None:
            i = self._ids[peer] = len(self.peers)
            self.peers.append(peer)
        return i

    def key(self, flow: Flow) -> Key:
        return (self.peer_id(flow.src), self.peer_id(flow.dst), flow.port or 0, flow.protocol or "-", flow.verdict)

    def add(self, flow: Flow, key: Key | None = None) -> None:
        key = key or self.key(flow)
        t = flow.time or 0.0
        e = self.by_key.get(key)
        if e is None:
            self.by_key[key] = [flow.count, t, t]
        else:
            e[0] += flow.count
            if t and (not e[1] or t < e[1]):
                e[1] = t
            if t > e[2]:
                e[2] = t

    def result(self, meta: dict | None = None) -> Gathered:
        return Gathered(self.peers, self.by_key, meta or {})


class RecordingWriter:
    """Writes a recording, keeping at most ``max_flows`` flows and
    ``max_bytes`` bytes of flow lines; ``add`` says False once a cap is
    reached (the caller counts what it could not keep)."""

    def __init__(self, directory: str | Path, *, max_flows: int = DEFAULT_MAX_FLOWS,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(directory)
        self.tmp = self.dir.with_name(self.dir.name + f".tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.max_flows, self.max_bytes = max_flows, max_bytes
        self.kept = self.bytes = 0
        self.capped = ""  # which cap was reached, if one was
        self.gatherer = Gatherer()
        self._peers_written = 0
        self._flows = (self.tmp / FLOWS).open("w", encoding="utf-8")
        self._peers = (self.tmp / PEERS).open("w", encoding="utf-8")

    def add(self, flow: Flow) -> bool:
        if self.capped:
            return False
        if self.kept >= self.max_flows:
            self.capped = f"{self.max_flows} flows"
            return False
        key = self.gatherer.key(flow)
        line = f"{key[0]}\t{key[1]}\t{key[2]}\t{key[3]}\t{key[4]}\t{flow.count}\t{flow.time or 0:.6f}\n"
        if self.bytes + len(line) > self.max_bytes:
            self.capped = f"{self.max_bytes} bytes"
            return False
        peers = self.gatherer.peers
        while self._peers_written < len(peers):
            self._peers.write(json.dumps(peers[self._peers_written].to_dict(), sort_keys=True) + "\n")
            self._peers_written += 1
        self._flows.write(line)
        self.bytes += len(line)
        self.kept += 1
        self.gatherer.add(flow, key)
        return True

    def close(self, meta: dict) -> Path:
        """Finish: meta.json, then the directory renamed into place."""
        for fh in (self._flows, self._peers):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        meta = {"version": VERSION, **meta, "kept": self.kept, "bytes": self.bytes,
                "cap": {"flows": self.max_flows, "bytes": self.max_bytes}, "capped": self.capped or None}
        (self.tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        old = self.dir.with_name(self.dir.name + f".old-{os.getpid()}")
        if self.dir.exists():
            self.dir.rename(old)
        self.tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)
        return self.dir

    def abort(self) -> None:
        for fh in (self._flows, self._peers):
            fh.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_recording(directory: str | Path, flows: Iterable[Flow], meta: dict, *,
                    max_flows: int = DEFAULT_MAX_FLOWS, max_bytes: int = DEFAULT_MAX_BYTES,
                    late_meta: Callable[[], dict] = dict) -> tuple[Path, dict]:
    """Record ``flows`` (counting those a cap left out); returns the path and
    its meta. ``late_meta()`` adds what is known only once the flows have
    been read (what the reader skipped)."""
    w = RecordingWriter(directory, max_flows=max_flows, max_bytes=max_bytes)
    seen = 0
    try:
        for flow in flows:
            seen += 1
            w.add(flow)
    except BaseException:
        w.abort()
        raise
    meta = {**meta, **late_meta(), "seen": seen, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = w.close(meta)
    return path, json.loads((path / META).read_text())


def is_recording(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def read_recording(directory: str | Path) -> Gathered:
    d = Path(directory)
    where = str(d)
    try:
        meta = json.loads((d / META).read_text(encoding="utf-8"))
        peers = [Peer.from_dict(json.loads(line)) for line in (d / PEERS).open(encoding="utf-8") if line.strip()]
        fh = (d / FLOWS).open(encoding="utf-8")
    except FileNotFoundError as e:
        raise ManifestError(f"not a flow recording ({Path(e.filename).name} is missing): record one with "
                            "inv observe", path=where) from None
    except (OSError, ValueError) as e:
        raise ManifestError(f"unreadable flow recording: {e}", path=where) from None
    if meta.get("version") != VERSION:
        raise ManifestError(f"flow recording version {meta.get('version')!r}, this tool reads {VERSION}",
                            path=where)
    raw: dict[str, list] = {}
    with fh:
        # Time is the last column: the rest is the key, gathered as text and
        # split once per distinct key (a million lines, a few hundred keys).
        # First and last are in the order the flows were recorded.
        for line in fh:
            head, _, t = line.rpartition("\t")
            e = raw.get(head)
            if e is None:
                raw[head] = [1, t, t]
            else:
                e[0] += 1
                e[2] = t
    by_key: dict[Key, list] = {}
    for head, (lines, first, last) in raw.items():
        try:
            s, dst, port, proto, verdict, count = head.split("\t")
            key = (int(s), int(dst), int(port), proto, verdict)
            n, t0, t1 = int(count) * lines, float(first), float(last)
        except ValueError:
            raise ManifestError(f"{FLOWS}: malformed line {head!r}", path=where) from None
        if not (0 <= key[0] < len(peers) and 0 <= key[1] < len(peers)):
            raise ManifestError(f"{FLOWS}: a line names peer {max(key[:2])}, but {PEERS} has {len(peers)}",
                                path=where)
        e = by_key.get(key)
        if e is None:
            by_key[key] = [n, t0, t1]
        else:  # the same edge with another count per line (Calico's aggregates)
            e[0] += n
            e[1] = min(e[1], t0) if e[1] and t0 else e[1] or t0
            e[2] = max(e[2], t1)
    return Gathered(peers, by_key, meta)
