"""The one poll loop: ask until the answer is yes or time runs out.

Everything that waits on a cluster (nodes Ready, a CNI rolled out, the
stand-ins Ready, the canary's phases, probes re-polled after an apply) asks
a ``check`` that returns ``(done, detail)``, through ``poll_until``. The
clock and the sleep are passed in, so tests run on a fake clock and never
wait for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cluster.errors import DashiError, KubeError

Check = Callable[[], "tuple[bool, str]"]


@dataclass(frozen=True)
class Polled:
    """How a poll ended: ``done`` or timed out, with the last detail seen."""

    done: bool
    detail: str
    attempts: int
    seconds: float


def poll_until(check: Check, *, timeout_s: float, interval_s: float,
               clock: Callable[[], float], sleep: Callable[[float], None],
               progress: Callable[[str], None] | None = None, retry_api_errors: bool = False,
               spacing: bool = False) -> Polled:
    """Call ``check`` until it says done or ``timeout_s`` has passed.

    ``check`` runs at least once, and once more after the deadline is reached
    only if the deadline fell inside a sleep (the last answer is always
    fresh). With ``retry_api_errors`` a KubeError counts as "not yet": the API
    server restarts while a CNI comes up, and a wait should outlast that.
    With ``spacing``, ``interval_s`` is the least time from the start of one
    check to the start of the next: a check that takes longer (a round of
    probes) is followed at once, one that returns at once (a failed exec)
    does not make the loop spin.
    """
    start = clock()
    deadline = start + timeout_s
    attempts = 0
    while True:
        attempts += 1
        began = clock()
        try:
            done, detail = check()
        except KubeError as e:
            if not retry_api_errors:
                raise
            done, detail = False, f"API error: {e}"
        if progress is not None:
            progress(detail)
        if done or clock() >= deadline:
            return Polled(done, detail, attempts, clock() - start)
        if not spacing:
            sleep(interval_s)
        elif clock() - began < interval_s:
            sleep(interval_s - (clock() - began))


def wait_until(what: str, check: Check, *, timeout_s: float, interval_s: float,
               clock: Callable[[], float], sleep: Callable[[float], None],
               progress: Callable[[str], None] | None = None, retry_api_errors: bool = False,
               timed_out: Callable[[Polled], str] | None = None) -> str:
    """``poll_until`` that raises DashiError on a timeout; returns the last detail.

    ``timed_out`` words the error; the default names what was awaited and
    the last thing seen.
    """
    res = poll_until(check, timeout_s=timeout_s, interval_s=interval_s, clock=clock, sleep=sleep,
                     progress=progress, retry_api_errors=retry_api_errors)
    if not res.done:
        raise DashiError(timed_out(res) if timed_out else
                         f"timed out after {int(timeout_s)}s waiting until {what} (last seen: {res.detail})")
    return res.detail
