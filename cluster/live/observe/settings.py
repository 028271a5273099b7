"""Probe settings, from the environment (DASHI_PROBE_WORKERS, DASHI_PROBE_TIMEOUT,
DASHI_POLL_INTERVAL, DASHI_POLL_TIMEOUT, DASHI_PROBE_TCP)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

from cluster.errors import DashiError
from cluster.live.observe.probe import TCP_TOOLS, MatrixProber
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
    """Probe settings. The defaults are upstream e2e's: 1 s per probe, a
    disagreeing probe re-polled every 1 s for up to 10 s. A worker runs one
    source pod's batch (all its probes at once, in one exec), so 16 workers
    cover dashi's 14 sources in one round without opening more exec streams
    than a laptop's API server takes in its stride."""

    workers: int = 16
    timeout_s: float = 1.0
    poll_interval: float = 1.0
    poll_timeout: float = 10.0
    # How a refused probe reads (see cluster.live.observe.probe): the rollout sets
    # what the canary measured on the cluster ("drop", "reject", "unknown").
    deny_behaviour: str = "reject"
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    tcp_tool: str = "auto"  # "auto" (busybox nc when it passes a self-check) or "agnhost"

    @classmethod
    def from_env(cls) -> "ProbeSettings":
        tcp = os.environ.get("DASHI_PROBE_TCP") or "auto"
        if tcp not in TCP_TOOLS:
            raise DashiError(f"DASHI_PROBE_TCP={tcp!r}: use one of {', '.join(TCP_TOOLS)}")
        return cls(workers=_env_number("DASHI_PROBE_WORKERS", 16, int), tcp_tool=tcp,
                   timeout_s=_env_number("DASHI_PROBE_TIMEOUT", 1.0),
                   poll_interval=_env_number("DASHI_POLL_INTERVAL", 1.0),
                   poll_timeout=_env_number("DASHI_POLL_TIMEOUT", 10.0))

    def prober(self, kube: Kube) -> MatrixProber:
        return MatrixProber(kube, workers=self.workers, timeout_s=self.timeout_s,
                            poll_interval=self.poll_interval, poll_timeout=self.poll_timeout,
                            clock=self.clock, sleep=self.sleep, tcp_tool=self.tcp_tool,
                            deny_behaviour=self.deny_behaviour)
