"""Recording the flows a cluster really carries, from Hubble.

``record`` follows Hubble's flow stream for a given time and writes what
arrives into a recording (``cluster.policy.flows.recording``), within its
caps on flows and bytes. Each ``flow.Flow`` message is read into the same
fields ``hubble observe -o json`` prints, and from there by the one reader
of Hubble's flows (``cluster.policy.flows.formats.hubble_flow``), so a
live recording and a file handed over are read alike. What Hubble says it
lost (``lost_events``) is counted and reported, as is what a cap left out.

``drops`` reads the flows Hubble dropped in a time window: after a step,
the CNI's own verdicts on the probes, with the policies it names.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cluster.policy.flows.formats import SKIP_MID_TCP, SKIP_REPLY, hubble_flow
from cluster.policy.flows.model import Flow
from cluster.policy.flows.recording import DEFAULT_MAX_BYTES, DEFAULT_MAX_FLOWS, RecordingWriter
from cluster.seams.hubble import Hubble, flow_pb2

_FLOW_TYPES = {1: "L3_L4", 2: "L7", 3: "SOCK"}


def _endpoint(ep) -> dict:
    return {"namespace": ep.namespace, "pod_name": ep.pod_name, "labels": list(ep.labels), "identity": ep.identity}


def flow_fields(f) -> dict:
    """The fields of a ``flow.Flow`` message that the reader of Hubble's JSON
    uses, under the names ``hubble observe -o json`` gives them."""
    d = {"Type": _FLOW_TYPES.get(f.Type), "verdict": flow_pb2.Verdict.Name(f.verdict),
         "time": f.time.seconds + f.time.nanos / 1e9 if f.HasField("time") else None,
         "source": _endpoint(f.source), "destination": _endpoint(f.destination),
         "IP": {"source": f.IP.source, "destination": f.IP.destination}}
    if f.HasField("is_reply"):
        d["is_reply"] = f.is_reply.value
    which = f.l4.WhichOneof("protocol")
    if which in ("TCP", "UDP", "SCTP"):
        inner = getattr(f.l4, which)
        d["l4"] = {which: {"destination_port": inner.destination_port}}
        if which == "TCP" and f.l4.TCP.HasField("flags"):
            d["l4"]["TCP"]["flags"] = {"SYN": inner.flags.SYN, "ACK": inner.flags.ACK}
    elif which:
        d["l4"] = {which: {}}
    if f.verdict == flow_pb2.DROPPED:
        d["drop_reason_desc"] = flow_pb2.DropReason.Name(f.drop_reason_desc)
        d["traffic_direction"] = flow_pb2.TrafficDirection.Name(f.traffic_direction)
        d["egress_denied_by"] = [{"kind": p.kind, "namespace": p.namespace, "name": p.name}
                                 for p in f.egress_denied_by]
        d["ingress_denied_by"] = [{"kind": p.kind, "namespace": p.namespace, "name": p.name}
                                  for p in f.ingress_denied_by]
    return d


@dataclass
class Recorded:
    path: Path
    meta: dict

    @property
    def line(self) -> str:
        m = self.meta
        cap = f"; stopped at its cap ({m['capped']}), {m['seen'] - m['kept']} flow(s) not kept" if m.get("capped") \
            else f" (cap: {m['cap']['flows']} flows, {m['cap']['bytes'] // (1 << 20)} MiB)"
        lost = (f"; Hubble reported {m['lost']} flow(s) lost ("
                + ", ".join(f"{n} in {where}" for where, n in (m.get("lost_by_source") or {}).items()) + ")"
                if m.get("lost") else "; none lost")
        return (f"recorded {m['kept']} flow(s) of {m['events']} event(s) in {m['seconds']:.1f} s from {m['source']}"
                f"{cap}{lost} -> {self.path}")


def record(hubble: Hubble, seconds: float, directory: Path, *, max_flows: int = DEFAULT_MAX_FLOWS,
           max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float] = time.monotonic,
           extra: dict | None = None, backlog: int = 0) -> Recorded:
    """Follow Hubble's flows for ``seconds`` into a recording at ``directory``;
    with ``backlog``, read the last ``backlog`` flows of Hubble's ring
    buffer instead (at most ``seconds``), as fast as it serves them."""
    writer = RecordingWriter(directory, max_flows=max_flows, max_bytes=max_bytes)
    skipped: Counter = Counter()
    lost_by: Counter = Counter()
    events = seen = 0
    t0 = clock()
    try:
        for resp in hubble.flows(seconds=seconds, follow=not backlog, number=backlog):
            which = resp.WhichOneof("response_types")
            if which == "lost_events":
                # Where: the datapath's perf ring or the agent's queue (the
                # CNI could not keep up), or Hubble's ring buffer (this
                # reader could not).
                lost_by[flow_pb2.LostEventSource.Name(resp.lost_events.source)] += \
                    resp.lost_events.num_events_lost
                continue
            if which != "flow":
                continue
            events += 1
            f = resp.flow
            # Most events are not flows (replies, packets after a SYN): told
            # apart on the message, before its fields are read into a dict.
            if f.is_reply.value:
                skipped[SKIP_REPLY] += 1
                continue
            if f.l4.HasField("TCP") and f.l4.TCP.HasField("flags") and (f.l4.TCP.flags.ACK or not f.l4.TCP.flags.SYN):
                skipped[SKIP_MID_TCP] += 1
                continue
            flow = hubble_flow(flow_fields(f), skipped)
            if flow is not None:
                seen += 1
                writer.add(flow)
    except BaseException:
        writer.abort()
        raise
    meta = {"source": f"Hubble at {hubble.address}", "seconds": clock() - t0, "events": events, "seen": seen,
            "lost": sum(lost_by.values()), "lost_by_source": dict(lost_by), "skipped": dict(skipped),
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(extra or {})}
    path = writer.close(meta)
    return Recorded(path, json.loads((path / "meta.json").read_text()))


def drops(hubble: Hubble, since: float, until: float, *, limit: int = 10_000) -> list[Flow]:
    """The flows the CNI dropped between ``since`` and ``until`` (epoch
    seconds), as Hubble's ring buffer still holds them, with the reason
    and the policies it names."""
    out: list[Flow] = []
    skipped: Counter = Counter()
    for resp in hubble.flows(seconds=30, follow=False, since=since, until=until, dropped_only=True):
        if resp.WhichOneof("response_types") != "flow":
            continue
        flow = hubble_flow(flow_fields(resp.flow), skipped)
        if flow is not None and flow.verdict == "dropped":
            out.append(flow)
            if len(out) >= limit:
                break
    return out
