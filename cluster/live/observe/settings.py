"""Probe settings, from the environment (DASHI_PROBE_WORKERS, DASHI_PROBE_TIMEOUT,
DASHI_POLL_INTERVAL, DASHI_POLL_TIMEOUT, DASHI_PROBE_TCP)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from cluster.errors import DashiError
from cluster.live.observe.probe import TCP_TOOLS, MatrixProber
from cluster.seams.kube import Kube


def _env_number(name: str, default: float, cast=float):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        raise DashiError(f"{name}={raw!r} is not a number") from None


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
