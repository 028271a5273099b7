"""Probe settings, from the environment (DASHI_PROBE_WORKERS, DASHI_PROBE_TIMEOUT,
DASHI_POLL_INTERVAL, DASHI_POLL_TIMEOUT)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from cluster.errors import DashiError
from cluster.live.kube import Kube
from cluster.live.probe import MatrixProber


def _env_number(name: str, default: float, cast=float):
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return cast(raw)
    except ValueError:
        raise DashiError(f"{name}={raw!r} is not a number") from None


@dataclass
class Settings:
    """Probe settings. The defaults are upstream e2e's: 1 s per probe, a
    disagreeing probe re-polled every 1 s for up to 10 s. 64 workers bring a
    full dashi matrix (240 probes, most of them waiting out the timeout right
    after default-deny) to about 4 probe timeouts (benchmarks/bench_probe.py)
    without opening hundreds of exec streams at once against a laptop's API
    server; DASHI_PROBE_WORKERS=256 makes it about one timeout."""

    workers: int = 64
    timeout_s: float = 1.0
    poll_interval: float = 1.0
    poll_timeout: float = 10.0
    # How a refused probe reads (see cluster.live.probe): the rollout sets
    # what the canary measured on the cluster ("drop", "reject", "unknown").
    deny_behaviour: str = "reject"
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(workers=_env_number("DASHI_PROBE_WORKERS", 64, int),
                   timeout_s=_env_number("DASHI_PROBE_TIMEOUT", 1.0),
                   poll_interval=_env_number("DASHI_POLL_INTERVAL", 1.0),
                   poll_timeout=_env_number("DASHI_POLL_TIMEOUT", 10.0))

    def prober(self, kube: Kube) -> MatrixProber:
        return MatrixProber(kube, workers=self.workers, timeout_s=self.timeout_s,
                            poll_interval=self.poll_interval, poll_timeout=self.poll_timeout,
                            clock=self.clock, sleep=self.sleep, deny_behaviour=self.deny_behaviour)
