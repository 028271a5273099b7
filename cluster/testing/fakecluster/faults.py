"""Fault injection: the failure modes of the API a rollout must survive.

* ``fail(verb, kind, ...)``: raise ``KubeError`` (or any exception, e.g.
  ``KeyboardInterrupt`` for a Ctrl-C) on matching calls;
* ``stop_api()`` / ``start_api()``: the API server goes away and comes back;
  meanwhile every call but ``context``/``server`` (kubeconfig data, no
  request) raises ``KubeUnreachable``, as ``ClientKube`` does for a refused
  connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cluster.errors import KubeError, KubeUnreachable
from cluster.testing.fakecluster.store import Call, Store


@dataclass
class _Failure:
    verb: str
    kind: str | None
    name: str | None
    namespace: str | None
    after: int
    times: int | None
    exc: BaseException | Callable[[Call], BaseException]
    seen: int = 0
    raised: int = 0


class Faults(Store):
    """Calls that fail on purpose, and an API server that goes away."""

    def _init_faults(self) -> None:
        self.api_down = False
        self._failures: list[_Failure] = []

    def fail(self, verb: str, kind: str | None = None, *, name: str | None = None,
             namespace: str | None = None, after: int = 0, times: int | None = 1,
             exc: BaseException | Callable[[Call], BaseException] | None = None) -> None:
        """Make matching calls raise: skip ``after`` matches, then raise ``times``
        times (None: forever). ``exc`` defaults to a KubeError like the API's."""
        if exc is None:
            def exc(call: Call) -> BaseException:
                what = f"{call.kind} {call.namespace + '/' if call.namespace else ''}{call.name or ''}".strip()
                return KubeError(f"{call.verb} {what}: Internal error occurred: injected failure")
        with self._lock:
            self._failures.append(_Failure(verb, kind, name, namespace, after, times, exc))

    def stop_api(self) -> None:
        """The API server stops answering (kill, restart, a network cut)."""
        self.api_down = True

    def start_api(self) -> None:
        self.api_down = False

    def _inject_fault(self, call: Call) -> None:
        """Called with the store's lock held, once the call is recorded."""
        if self.api_down and call.verb not in ("context", "server"):
            raise KubeUnreachable(f"{call.verb} {call.kind or ''}/{call.name or ''}: cannot reach the API server "
                                  f"of {self._context} ({self._server}): connection refused")
        for f in self._failures:
            if f.verb != call.verb or (f.kind and f.kind != call.kind) \
                    or (f.name and f.name != call.name) or (f.namespace and f.namespace != call.namespace):
                continue
            f.seen += 1
            if f.seen <= f.after or (f.times is not None and f.raised >= f.times):
                continue
            f.raised += 1
            raise f.exc(call) if callable(f.exc) and not isinstance(f.exc, BaseException) else f.exc
        super()._inject_fault(call)
