"""A clock for tests that sleep without waiting."""

from __future__ import annotations

import threading


class FakeClock:
    """A clock whose ``sleep`` advances time instantly: share one between a
    FakeKube (lag_seconds) and a prober so polling tests run in no time."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds
