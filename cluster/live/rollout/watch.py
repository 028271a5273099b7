"""``network-policies-up --observe D``: observe before each step, refuse a
step that would cut observed traffic outside the intent, and keep the
CNI's own drop verdicts with each step's evidence.

Before a step, Hubble's flows are recorded for D seconds (into the
profile's ``flows/before-<step>`` in the cluster's state directory) and
replayed against the profile (``cluster.policy.flows.replay``). If the step
would newly cut an observed edge that is not intended, and not
acknowledged (matrix.yaml ``blocked:``, ``--accept-blocking``), the step is
refused before anything is changed for it, naming each edge and the policy
that would cut it. Windows of the rollout (an intended edge cut until a
later step opens it: DNS between default-deny and allow-dns) are named
and let through.

From the end of that observation until the step is verified (the apply and
the probes), what Hubble saw dropped is read back: written beside the
evidence as ``<snapshot>-<step>-drops.json`` and, when the verification
fails, added to the evidence of the failure, so a mismatch shows which
policy the dataplane says dropped the packet.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import AbstractContextManager
from typing import Callable

from cluster.errors import DashiError
from cluster.live.observe.flows import drops, record
from cluster.live.record.files import atomic_write
from cluster.policy.flows.model import Flow
from cluster.policy.flows.recording import read_recording
from cluster.policy.flows.replay import Cut, observe, parse_accept, replay, when


class StepRefused(DashiError):
    """A step would cut observed traffic outside the intent."""

    exit_code = 3


def drop_lines(flows: list[Flow], limit: int = 10) -> list[str]:
    """The drops, one line per (source, destination, port, reason, policies), most first."""
    groups = Counter((str(f.src), str(f.dst), f"{f.port or '-'}/{f.protocol or '-'}", f.drop_reason,
                      ", ".join(f.policies) or "no policy named") for f in flows)
    lines = [f"{n:>6}  {s} -> {d} {p}: {reason or 'dropped'} ({pols})"
             for (s, d, p, reason, pols), n in groups.most_common(limit)]
    if len(groups) > limit:
        lines.append(f"        ... and {len(groups) - limit} more kind(s)")
    return lines


def drop_dicts(flows: list[Flow]) -> list[dict]:
    return [{"time": when(f.time or 0), "src": str(f.src), "dst": str(f.dst), "port": f.port,
             "protocol": f.protocol, "reason": f.drop_reason, "policies": list(f.policies)} for f in flows]


class Watch:
    """The hooks ``up`` calls around each step (``before``, ``after``)."""

    def __init__(self, open_hubble: Callable[[], AbstractContextManager], seconds: float,
                 accept: list[str] = (), *, clock: Callable[[], float] = time.time):
        self._open = open_hubble
        self._ctx = None
        self.hubble = None
        self.seconds = seconds
        self.accept = list(accept)
        self.clock = clock
        self.window_start: float | None = None

    def _hub(self, r):
        if self.hubble is None:
            self._ctx = self._open()
            self.hubble = self._ctx.__enter__()
            r.evidence_extras.append(self._evidence)
        return self.hubble

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = self.hubble = None

    def before(self, r, i: int) -> None:
        """Observe, replay, and refuse step i+1 if it cuts traffic outside the intent."""
        step = r.profile.steps[i]
        hub = self._hub(r)
        r.say(f"  observing Hubble at {hub.address} for {self.seconds:g} s before {step.name}...")
        rec = record(hub, self.seconds, r.dir / "flows" / f"before-{step.name}")
        r.say(f"  {rec.line}")
        obs = observe(r.profile, read_recording(rec.path))
        check = replay(r.profile, obs, [parse_accept(a, r.profile) for a in self.accept])
        cuts = check.cuts_at(i + 1)
        windows = Counter(c.reopened_by for c in sorted(cuts, key=lambda c: c.reopened_at or 0) if c.window)
        if windows:
            r.say(f"  windows of the rollout: {sum(windows.values())} intended edge(s) this step cuts until a later "
                  f"step opens them ({', '.join(f'{step}: {n}' for step, n in windows.items())})")
        for c in cuts:
            if not c.window:
                r.say(f"  {self._line(c)}")
                if c.failure:
                    for w in c.why:
                        r.say(f"      {w}")
        refused = [c for c in cuts if c.failure]
        if obs.not_placed:
            r.say(f"  {obs.unplaced} observed flow(s) not placed on the profile's endpoints "
                  f"(e.g. {obs.not_placed[0].why}): inv flows-check --flows {rec.path} lists them")
        if refused:
            r.event("step-refused", step=step.name, ok=False,
                    message="; ".join(f"{c.edge} ({c.observed.count} flows)" for c in refused))
            raise StepRefused(
                f"step {step.name} would cut observed traffic outside the intent: "
                + "; ".join(f"{c.edge} ({c.observed.count} flow(s))" for c in refused)
                + ". Nothing was changed for this step. If the traffic must flow, add it to the matrix and a "
                  "step; to cut it on purpose: " + " ".join(c.accept_arg() for c in refused))
        self.window_start = self.clock()

    @staticmethod
    def _line(c: Cut) -> str:
        if c.acknowledged:
            return f"accepted cut: {c.edge} ({c.observed.count} flows): {c.acknowledged}"
        return f"WOULD CUT: {c.edge} ({c.observed.count} flows observed): not in the intended matrix"

    def _drops(self) -> list[Flow]:
        if self.hubble is None or self.window_start is None:
            return []
        return drops(self.hubble, self.window_start - 1.0, self.clock() + 1.0)

    def _evidence(self, report) -> dict:
        """Added to a failed verification's evidence: what the CNI dropped.
        It is read before the snapshot is restored, so Hubble failing here
        is noted in the evidence and never stops the restore."""
        source = f"Hubble at {self.hubble.address}" if self.hubble else "Hubble"
        try:
            flows = self._drops()
        except DashiError as e:
            return {"cni_drops": {"source": source, "error": str(e), "summary": [f"not read: {e}"]}}
        return {"cni_drops": {"source": source, "count": len(flows), "summary": drop_lines(flows, 50),
                              "flows": drop_dicts(flows[:1000])}}

    def after(self, r, i: int, snapshot: str | None = None) -> None:
        """Keep what the CNI dropped while step i+1 was applied and verified."""
        step = r.profile.steps[i]
        try:
            flows = self._drops()
        except DashiError as e:  # the step is verified: a note, not a stop
            r.say(f"  note: the CNI's drops during {step.name} were not read: {e}")
            return
        name = f"{snapshot + '-' if snapshot else ''}{step.name}-drops.json"
        path = r.dir / "evidence" / name
        atomic_write(path, (json.dumps({"step": step.name, "count": len(flows), "flows": drop_dicts(flows)},
                                       indent=2) + "\n").encode())
        r.say(f"  the CNI dropped {len(flows)} flow(s) while {step.name} was applied and verified ({path})")
        for line in drop_lines(flows, 5):
            r.say(f"    {line}")
