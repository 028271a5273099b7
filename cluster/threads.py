"""Helper threads that leave Ctrl-C to the main thread.

A signal sent to the process (Ctrl-C in a terminal, ``kill``) goes to any
one of its threads that does not block it. Where it lands on a helper
thread, Python notes it but the main thread, asleep in a wait for that
helper's result (a probe's exec, a read), is not woken: the run goes on, or
waits for as long as the exec does, instead of stopping. Every thread the
tool starts (probes, concurrent reads, the lease's renewal, port-forwards,
an exec stream's opening) therefore blocks SIGINT and SIGTERM, and the
kernel hands those to the main thread, where Python raises
KeyboardInterrupt at once.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def start_quiet(thread: threading.Thread) -> None:
    """Start ``thread`` with the stop signals blocked in it (a new thread
    takes its creator's mask, so there is no moment at which it takes one)."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: signals go to the main thread there
        thread.start()
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def block_stop_signals() -> None:
    """The stop signals blocked in the calling thread: a ThreadPoolExecutor's
    ``initializer``, run first in each of its threads."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
