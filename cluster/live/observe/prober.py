"""``MatrixProber`` runs the sources on a bounded pool of daemon threads
(``DaemonPool``: Ctrl-C ends the run at once; an exec still in flight is
left to end with the process), then re-polls the probes that disagree with
the prediction (the whole matrix when it is small, ``WHOLE_PASS_MAX``) as
soon as a round returns (``poll_interval`` is the least time between the
starts of two rounds, 0.2 s by default: a round of probes takes longer, so
there is no fixed wait) up to ``poll_timeout`` (10 s, upstream e2e's
number): CNIs program policies asynchronously, and a probe right after an
apply may see the old rules. An edge that agreed in such a pass may have
agreed by the old rules (an allow the new policy takes away), so once the
re-polled edges agree the whole matrix is probed once more unless that
re-poll was a whole pass, and the run ends only on a whole pass that agrees,
as upstream e2e's full-matrix polling does. The run records when the
matrix first matched (time to enforce). A round in which no exec stream
opened at all (each one's opening bounded by the Kube seam) says nothing
about the policies: the run stops with ``KubeUnreachable``, an
interruption, instead of re-polling and counting every edge as failed.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Mapping

from cluster.errors import DashiError, KubeError, KubeUnreachable
from cluster.live.observe.discovery import Target
from cluster.live.observe.poll import poll_until
from cluster.live.observe.probe import ProbeResult, connect
from cluster.live.observe.probebatch import NoShell, ProbeSession, connect_batch
from cluster.policy.engine.model import Edge
from cluster.seams.kube import Kube
from cluster.threads import start_quiet

# Up to this many probes, a re-poll probes the whole matrix, not only the
# edges that disagree: a wave costs about one probe timeout however many
# edges it holds, and a re-poll that agrees must be followed by a whole pass
# anyway (see MatrixProber.run), so for a small matrix this saves a wave. A
# probe is a process in the source pod (about 1.2 ms of CPU with nc): past
# this many, re-polling only what disagrees costs less.
WHOLE_PASS_MAX = 1000



@dataclass(frozen=True)
class Observation:
    edge: Edge
    result: ProbeResult
    attempts: int = 1
    target: Target | None = None
    seconds: float = 0.0  # from the first probe of this edge to its last

    @property
    def allowed(self) -> bool | None:
        return self.result.allowed


def agrees(obs: Observation, predicted: bool | None) -> bool:
    """Whether an observation settles the edge: it matches the prediction, or
    it cannot be probed at all (re-polling would not change that)."""
    if obs.result.kind == "unprobed":
        return True
    if predicted is None:
        return obs.allowed is not None
    return obs.allowed is predicted


@dataclass
class MatrixRun:
    observations: dict[Edge, Observation]
    seconds: float  # wall time of the whole run, polls included
    first_pass_seconds: float
    probes: int  # edges probed, re-polls included
    workers: int
    execs: int = 0  # exec calls made (one per source per round when batched)
    # When every edge first agreed with the prediction (the time to enforce,
    # measured from the start of the run); None when it never did.
    matched_seconds: float | None = None
    started: float = 0.0  # the prober's clock when the run began
    batched_sources: int = 0  # sources probed with one exec each
    per_edge_sources: int = 0  # sources without a shell: one exec per edge
    tools: tuple[str, ...] = ()  # what the batches used for TCP
    sessions: int = 0  # source pods whose batches ran in a shell kept open

    @property
    def mode(self) -> str:
        if self.per_edge_sources and self.batched_sources:
            return f"one exec per source ({self.batched_sources} pods), per edge for {self.per_edge_sources} without a shell"
        if self.per_edge_sources:
            return "one exec per edge (no shell in the source pods)"
        how = "one exec per source pod"
        if self.sessions:
            how = ("one shell per source pod, kept open across rounds" if self.sessions == self.batched_sources
                   else f"one exec per source pod ({self.sessions} of {self.batched_sources} in a shell kept open)")
        return how + (f" (TCP by {', '.join(self.tools)})" if self.tools else "")


def _close_sessions(sessions: dict) -> None:
    for session in list(sessions.values()):
        try:
            session.close()
        except KubeError:
            pass  # a stream that already dropped
    sessions.clear()


class DaemonPool:
    """At most ``workers`` daemon threads running what is submitted, in order.

    concurrent.futures' threads are joined when the interpreter exits, so a
    Ctrl-C during a matrix would wait for every exec in flight (each bounded,
    but by up to a probe timeout plus the exec bounds); these are left to end
    with the process. ``shutdown`` cancels what has not started."""

    def __init__(self, workers: int, prefix: str = "probe"):
        self.workers, self.prefix = workers, prefix
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a job
        self._idle_lock = threading.Lock()

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, fn, args))
        # A thread more only while jobs wait that no idle thread will take:
        # execs that answer at once (or a pod's batch) keep a few threads busy.
        if len(self._threads) < self.workers and self._jobs.qsize() > self._idle:
            worker = threading.Thread(target=self._work, name=f"{self.prefix}_{len(self._threads)}", daemon=True)
            self._threads.append(worker)
            start_quiet(worker)  # a Ctrl-C goes to the main thread, never to a probe
        return future

    def _work(self) -> None:
        while True:
            with self._idle_lock:
                self._idle += 1
            job = self._jobs.get()
            with self._idle_lock:
                self._idle -= 1
            if job is None:
                return
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(e)

    def shutdown(self) -> None:
        """Cancel the jobs not started; the threads end once their job does."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)


class MatrixProber:
    """Probe many edges at once on a bounded pool; re-poll the disagreeing ones."""

    def __init__(self, kube: Kube, *, workers: int = 16, timeout_s: float = 1.0,
                 poll_interval: float = 1.0, poll_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 tcp_tool: str = "auto", deny_behaviour: str = "reject", whole_pass_max: int = WHOLE_PASS_MAX,
                 sessions: bool = False, udp_echo: bool = False):
        if workers < 1:
            raise DashiError(f"probe workers must be at least 1, got {workers}")
        self.kube = kube
        self.tcp_tool = tcp_tool
        self.workers = workers
        self.timeout_s = timeout_s
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self.clock = clock
        self.sleep = sleep
        # Source pods found to have no shell: probed one exec per edge.
        self.no_shell: set[tuple[str, str]] = set()
        self.no_session: set[tuple[str, str]] = set()  # pods whose session failed
        self.execs = 0
        self.tools: set[str] = set()  # what the batches used for TCP: nc, agnhost
        self.deny_behaviour = deny_behaviour
        self.udp_echo = udp_echo  # the probed UDP servers answer agnhost's payload: silence is a drop
        # This round's execs, and those of them that reached no pod.
        self._attempts: list = []
        self._unreachable: list[KubeUnreachable] = []
        self.whole_pass_max = whole_pass_max
        # With sessions, each source pod keeps one shell open across rounds
        # and runs (``ProbeSession``); a session that fails is closed and
        # that batch runs as one exec, as without sessions.
        self.sessions = sessions and hasattr(kube, "open_exec")
        self._open: dict[tuple[str, str], ProbeSession] = {}
        self._open_lock = threading.Lock()
        # A prober dropped without close() still ends its pods' shells.
        weakref.finalize(self, _close_sessions, self._open)

    def _one(self, target: Target) -> ProbeResult:
        self._attempts.append(target)
        try:
            return connect(self.kube, target.namespace, target.pod, target.host, target.port,
                           target.protocol, self.timeout_s, self.deny_behaviour, self.udp_echo)
        except KubeUnreachable as e:
            self._unreachable.append(e)
            return ProbeResult(False, "other", f"exec failed: {e}")
        except KubeError as e:
            return ProbeResult(False, "other", f"exec failed: {e}")

    def _session_batch(self, source: tuple[str, str], targets: list[Target]) -> list[ProbeResult] | None:
        """One source's probes through its session (opened on first use);
        None when it fails (it is closed; a pod whose first session fails,
        e.g. without a shell, gets none again)."""
        with self._open_lock:
            session = self._open.pop(source, None)
        fresh = session is None
        try:
            if session is None:
                session = ProbeSession(self.kube, *source)
            results, tool = session.batch(targets, self.timeout_s, self.tcp_tool, self.deny_behaviour,
                                          self.udp_echo)
        except KubeError:
            if session is not None:
                try:
                    session.close()
                except KubeError:
                    pass
            if fresh:
                self.no_session.add(source)
            return None
        with self._open_lock:
            self._open[source] = session
        if tool:
            self.tools.add(tool)
        return results

    def close(self) -> None:
        """Close every open session (their shells see stdin close and end)."""
        with self._open_lock:
            _close_sessions(self._open)

    def _batch(self, source: tuple[str, str], targets: list[Target]) -> list[ProbeResult] | None:
        """One source's probes in one exec; None when the pod has no shell."""
        self._attempts.append(source)
        if self.sessions and source not in self.no_session:
            results = self._session_batch(source, targets)
            if results is not None:
                return results
        try:
            results, tool = connect_batch(self.kube, source[0], source[1], targets, self.timeout_s, self.tcp_tool,
                                          self.deny_behaviour, self.udp_echo)
            if tool:
                self.tools.add(tool)
            return results
        except NoShell:
            return None
        except KubeError as e:
            # One failed exec (a dropped websocket, a pod restarting) spoils
            # only this source's probes, and the re-poll tries them again.
            if isinstance(e, KubeUnreachable):
                self._unreachable.append(e)
            return [ProbeResult(False, "other", f"exec failed: {e}") for _ in targets]

    def _round(self, pool: DaemonPool, jobs: dict[Edge, Target]) -> dict[Edge, ProbeResult]:
        """Probe ``jobs``; KubeUnreachable when not one exec of the round
        reached its pod (the API server, or its exec streams, gone)."""
        self._unreachable, self._attempts = [], []
        out = self._probe_round(pool, jobs)
        if self._attempts and len(self._unreachable) == len(self._attempts):
            first = self._unreachable[0]
            raise KubeUnreachable(f"cannot probe: not one of {len(self._attempts)} exec(s) reached its pod "
                                  f"({first})") from first
        return out

    def _probe_round(self, pool: DaemonPool, jobs: dict[Edge, Target]) -> dict[Edge, ProbeResult]:
        by_source: dict[tuple[str, str], list[Edge]] = {}
        for edge, t in jobs.items():
            by_source.setdefault((t.namespace, t.pod), []).append(edge)
        out: dict[Edge, ProbeResult] = {}
        singles: dict[Edge, object] = {}
        batches = {}
        for source, edges in by_source.items():
            if source in self.no_shell:
                singles.update({e: pool.submit(self._one, jobs[e]) for e in edges})
            else:
                batches[source] = (edges, pool.submit(self._batch, source, [jobs[e] for e in edges]))
        self.execs += len(batches)
        for source, (edges, future) in batches.items():
            results = future.result()
            if results is None:
                self.no_shell.add(source)
                singles.update({e: pool.submit(self._one, jobs[e]) for e in edges})
            else:
                out.update(zip(edges, results))
        self.execs += len(singles)
        out.update({e: f.result() for e, f in singles.items()})
        return out

    def run(self, targets: Mapping[Edge, Target | str],
            predicted: Mapping[Edge, bool] | None = None) -> MatrixRun:
        """Probe every target; then re-poll those that disagree with ``predicted``
        (or gave no answer) until they agree or ``poll_timeout`` passes."""
        predicted = predicted or {}
        start = self.clock()
        obs: dict[Edge, Observation] = {}
        probable = {e: t for e, t in targets.items() if isinstance(t, Target)}
        for edge, why in targets.items():
            if not isinstance(why, Target):
                obs[edge] = Observation(edge, ProbeResult(False, "unprobed", why), 0, None)
        probes = 0
        self.execs = 0
        matched_at: float | None = None
        pool = DaemonPool(self.workers)
        try:
            for edge, res in self._round(pool, probable).items():
                obs[edge] = Observation(edge, res, 1, probable[edge], 0.0)
            probes += len(probable)
            first_pass = self.clock() - start
            pending = {e for e in probable if not agrees(obs[e], predicted.get(e))}
            rounds = 0
            # Set when a re-poll ran: then the edges that agreed early were
            # seen before the CNI caught up (a stale allow can match the
            # prediction), so agreement counts only once one whole pass
            # agrees, as upstream e2e's full-matrix polling has it.
            unconfirmed = bool(pending)
            confirmable = {e for e in probable if obs[e].result.kind != "unprobed"}

            def probe(edges) -> None:
                nonlocal probes
                again = self._round(pool, {e: probable[e] for e in sorted(edges, key=str)})
                probes += len(again)
                now = self.clock()
                for edge, res in again.items():
                    prev = obs[edge]
                    obs[edge] = Observation(edge, res, prev.attempts + 1, prev.target, now - start)

            def settled() -> tuple[bool, str]:
                # The first call only looks at the first pass; each later one
                # re-probes what still disagrees (the whole matrix, where that
                # is cheap: then the re-poll that agrees is itself the whole
                # pass), and once nothing does, every edge once more in the
                # same call.
                nonlocal pending, rounds, matched_at, unconfirmed
                if rounds:
                    again = pending | confirmable if len(confirmable) <= self.whole_pass_max else pending
                    probe(again)
                    whole = again >= confirmable  # this re-poll was itself a whole pass
                    # After a whole pass, an edge that agreed before may not now.
                    pending = {e for e in (probable if whole else pending) if not agrees(obs[e], predicted.get(e))}
                    if not pending and unconfirmed and not whole:
                        probe(confirmable)
                        pending = {e for e in probable if not agrees(obs[e], predicted.get(e))}
                    unconfirmed = bool(pending)
                rounds += 1
                if not pending and matched_at is None:
                    matched_at = self.clock() - start
                return not pending, f"{len(pending)} edge(s) disagree"

            poll_until(settled, timeout_s=self.poll_timeout, interval_s=self.poll_interval, clock=self.clock,
                       sleep=self.sleep, spacing=True)
        finally:
            # On Ctrl-C, drop the queued probes instead of running them all,
            # and leave the ones in flight to end with the process.
            pool.shutdown()
        sources = {(t.namespace, t.pod) for t in probable.values()}
        return MatrixRun(obs, self.clock() - start, first_pass, probes, self.workers, execs=self.execs, started=start,
                         tools=tuple(sorted(self.tools)),
                         matched_seconds=matched_at, batched_sources=len(sources - self.no_shell),
                         per_edge_sources=len(sources & self.no_shell),
                         sessions=len(sources & set(self._open)))
