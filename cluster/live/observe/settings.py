"""Probe settings, from the environment (DASHI_PROBE_WORKERS, DASHI_PROBE_TIMEOUT,
DASHI_POLL_INTERVAL, DASHI_POLL_TIMEOUT, DASHI_PROBE_TCP)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from cluster.errors import DashiError
from cluster.live.observe.probebatch import TCP_TOOLS
from cluster.live.observe.prober import MatrixProber
from cluster.seams.kube import Kube

# What each setting may be, both ends included. A probe needs some time to
# connect at all, and one waiting more than a minute says nothing a minute
# does not; a re-poll interval past a minute outlasts any CNI's programming
# lag; re-polling may be off (0) but not endless (a verification that never
# ends holds the cluster's lease); past 256 workers an API server's exec
# streams, not the probes, are the limit.
LIMITS = {"DASHI_PROBE_WORKERS": (1, 256), "DASHI_PROBE_TIMEOUT": (0.1, 60.0),
          "DASHI_POLL_INTERVAL": (0.1, 60.0), "DASHI_POLL_TIMEOUT": (0.0, 600.0)}


def _env_number(name: str, default: float, cast=float):
    raw = os.environ.get(name)
    if not raw:
        return default
    low, high = LIMITS[name]
    unit = "" if cast is int else " seconds"
    try:
        value = cast(raw)
    except ValueError:
        raise DashiError(f"{name}={raw!r} is not a number") from None
    # float() reads "nan" and "inf" as numbers; neither is a time to wait.
    if not math.isfinite(value) or not low <= value <= high:
        raise DashiError(f"{name}={raw!r}: must be from {low:g} to {high:g}{unit}") from None
    return value


@dataclass
class ProbeSettings:
    """Probe settings. A probe waits 0.3 s for an answer: inside one cluster
    a connection is made in milliseconds, so that is a wide margin, and a
    matrix whose edges are mostly blocked costs a third of upstream e2e's
    1 s (a pod too busy to run its probes in time delays its own deadline:
    see cluster.live.observe.probebatch). A disagreeing probe is re-polled
    as soon as its round returns, for up to 10 s (upstream e2e's bound): no
    fixed wait between rounds, only 0.2 s at least from the start of one
    round to the next, so rounds that fail at once (an exec refused) do not
    spin. A worker runs one source pod's batch (all its
    probes at once, in one exec), so 16 workers cover dashi's 14 sources in
    one round without opening more exec streams than a laptop's API server
    takes in its stride."""

    workers: int = 16
    timeout_s: float = 0.3
    poll_interval: float = 0.2
    poll_timeout: float = 10.0
    # How a refused probe reads (see cluster.live.observe.probe): the rollout sets
    # what the canary measured on the cluster ("drop", "reject", "unknown").
    deny_behaviour: str = "reject"
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tcp_tool: str = "auto"  # "auto" (busybox nc when it passes a self-check) or "agnhost"
    # The probers made from these settings (``prober``); a copy made with
    # dataclasses.replace starts without any.
    _probers: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_env(cls) -> "ProbeSettings":
        tcp = os.environ.get("DASHI_PROBE_TCP") or "auto"
        if tcp not in TCP_TOOLS:
            raise DashiError(f"DASHI_PROBE_TCP={tcp!r}: use one of {', '.join(TCP_TOOLS)}")
        return cls(workers=_env_number("DASHI_PROBE_WORKERS", 16, int), tcp_tool=tcp,
                   timeout_s=_env_number("DASHI_PROBE_TIMEOUT", 0.3),
                   poll_interval=_env_number("DASHI_POLL_INTERVAL", 0.2),
                   poll_timeout=_env_number("DASHI_POLL_TIMEOUT", 10.0))

    def prober(self, kube: Kube) -> MatrixProber:
        """The prober of these settings on ``kube``: one per kube, so the
        probe shells it keeps open in the source pods serve every
        verification of a command (each step of a rollout)."""
        prober = self._probers.get(id(kube))
        if prober is None or prober.kube is not kube:
            prober = self._probers[id(kube)] = MatrixProber(
                kube, workers=self.workers, timeout_s=self.timeout_s, poll_interval=self.poll_interval,
                poll_timeout=self.poll_timeout, clock=self.clock, sleep=self.sleep, tcp_tool=self.tcp_tool,
                deny_behaviour=self.deny_behaviour, sessions=True)
        return prober
