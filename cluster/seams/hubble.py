"""The seam to Hubble: its Observer API over gRPC.

``Hubble`` lists the calls we make: the server's status (flows seen, the
ring buffer's size) and its flows, as a stream of ``GetFlowsResponse``
messages (a flow, or a notice that flows were lost). ``GrpcHubble`` makes
them with grpcio and the stubs generated from the pinned Cilium module's
protos (``cluster.seams.hubbleapi``), on an address the caller names: a
Cilium agent's ``--hubble-listen-address``, hubble-relay (port 4245), or a
local end of a port-forward to it. ``FakeHubble`` beside it is a real gRPC
server on loopback serving the flows a test gives it, through the same
generated servicer, so the client is tested over the wire.

Every failure crosses the seam as a ``HubbleError`` naming the address and
the gRPC status; a stream that ran for the time it was given ends quietly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Protocol

import grpc

from cluster.errors import DashiError
from cluster.seams.hubbleapi.flow import flow_pb2
from cluster.seams.hubbleapi.observer import observer_pb2, observer_pb2_grpc

__all__ = ["FakeHubble", "GrpcHubble", "Hubble", "HubbleError", "HubbleStatus", "flow_pb2", "observer_pb2"]

# A status call answers in milliseconds; a server that takes longer is not there.
STATUS_TIMEOUT_S = 10.0


class HubbleError(DashiError):
    """Hubble could not be asked, or refused."""


@dataclass(frozen=True)
class HubbleStatus:
    address: str
    num_flows: int  # flows in the ring buffer(s) now
    max_flows: int  # the ring buffer's capacity
    seen_flows: int  # flows seen since the server started
    version: str
    flows_rate: float  # flows per second over the last minute


class Hubble(Protocol):
    address: str

    def status(self) -> HubbleStatus: ...

    def flows(self, *, seconds: float, follow: bool = True, number: int = 0, since: float | None = None,
              until: float | None = None, dropped_only: bool = False) -> Iterator["observer_pb2.GetFlowsResponse"]: ...

    def close(self) -> None: ...


class GrpcHubble:
    """The Observer API at ``address`` (host:port), without TLS: what a
    Cilium agent serves with ``--hubble-disable-tls`` and hubble-relay by
    default, and what a port-forward carries."""

    def __init__(self, address: str):
        self.address = address
        # Flows are small, but a relay batches: allow large messages.
        self._channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)])
        self._stub = observer_pb2_grpc.ObserverStub(self._channel)

    def _error(self, e: grpc.RpcError, what: str) -> HubbleError:
        code = e.code().name if hasattr(e, "code") and e.code() else "UNKNOWN"
        detail = (e.details() if hasattr(e, "details") else "") or ""
        return HubbleError(f"Hubble at {self.address}: {what} failed: {code}: {detail.splitlines()[0] if detail else ''}"
                           .rstrip(": "))

    def status(self) -> HubbleStatus:
        try:
            s = self._stub.ServerStatus(observer_pb2.ServerStatusRequest(), timeout=STATUS_TIMEOUT_S)
        except grpc.RpcError as e:
            raise self._error(e, "ServerStatus") from None
        return HubbleStatus(self.address, s.num_flows, s.max_flows, s.seen_flows, s.version, s.flows_rate)

    def flows(self, *, seconds: float, follow: bool = True, number: int = 0, since: float | None = None,
              until: float | None = None, dropped_only: bool = False):
        """Flows for at most ``seconds``: with ``follow``, those arriving from
        now on; else those in the ring buffer (the last ``number``, or those
        between ``since`` and ``until``, seconds since the epoch), only the
        dropped ones with ``dropped_only``."""
        req = observer_pb2.GetFlowsRequest(follow=follow, number=number)
        if since is not None:
            req.since.FromNanoseconds(int(since * 1e9))
        if until is not None:
            req.until.FromNanoseconds(int(until * 1e9))
        if dropped_only:
            req.whitelist.append(flow_pb2.FlowFilter(verdict=[flow_pb2.DROPPED]))
        call = self._stub.GetFlows(req, timeout=seconds)
        try:
            yield from call
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                return  # the time given is up
            raise self._error(e, "GetFlows") from None
        finally:
            call.cancel()

    def close(self) -> None:
        self._channel.close()


# --------------------------------------------------------------------------
# The fake


class _Observer(observer_pb2_grpc.ObserverServicer):
    def __init__(self, fake: "FakeHubble"):
        self.fake = fake

    def ServerStatus(self, request, context):  # noqa: N802 (the generated name)
        f = self.fake
        with f.lock:
            return observer_pb2.ServerStatusResponse(num_flows=min(len(f.history), f.max_flows),
                                                     max_flows=f.max_flows, seen_flows=f.seen,
                                                     version=f.version, flows_rate=0.0)

    def GetFlows(self, request, context):  # noqa: N802
        f = self.fake
        f.requests.append(request)
        with f.lock:
            past = list(f.history[-request.number:]) if request.number else []
            if request.HasField("since") or request.HasField("until"):
                lo = request.since.ToNanoseconds() if request.HasField("since") else 0
                hi = request.until.ToNanoseconds() if request.HasField("until") else 1 << 62
                past = [r for r in f.history if lo <= r.flow.time.ToNanoseconds() <= hi]
            start = len(f.history)
        drops = any(flow_pb2.DROPPED in w.verdict for w in request.whitelist)
        yield from (r for r in past if not drops or r.flow.verdict == flow_pb2.DROPPED)
        if not request.follow:
            return
        with f.lock:
            queued, f.on_follow = f.on_follow, []
        if queued:
            f.emit(queued)
        i = start
        while context.is_active():
            with f.lock:
                new = f.history[i:]
                i = len(f.history)
            yield from new
            if not new:
                f.wakeup.wait(0.05)


class FakeHubble:
    """A Hubble Observer on 127.0.0.1: ``emit`` hands it responses (flows,
    lost-events notices) as a real server would stream them."""

    def __init__(self, *, max_flows: int = 4095, version: str = "1.20.2+fake"):
        self.max_flows, self.version = max_flows, version
        self.history: list = []
        self.seen = 0
        self.requests: list = []
        self.on_follow: list = []  # emitted when the next client starts following
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        observer_pb2_grpc.add_ObserverServicer_to_server(_Observer(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def emit(self, responses: Sequence) -> None:
        with self.lock:
            for r in responses:
                if not isinstance(r, observer_pb2.GetFlowsResponse):
                    r = observer_pb2.GetFlowsResponse(flow=r)
                self.history.append(r)
                self.seen += r.HasField("flow")
        self.wakeup.set()
        self.wakeup.clear()

    def emit_when_followed(self, responses: Sequence) -> None:
        """Emit ``responses`` once the next client follows the stream (what
        arrives while a recording runs, whenever it starts)."""
        with self.lock:
            self.on_follow.extend(responses)

    def emit_later(self, responses: Sequence, delay_s: float) -> threading.Timer:
        t = threading.Timer(delay_s, self.emit, (responses,))
        t.daemon = True
        t.start()
        return t

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)


def wait_for(hubble: Hubble, timeout_s: float = STATUS_TIMEOUT_S, sleep=time.sleep) -> HubbleStatus:
    """The status, asked until it answers (a port-forward just opened, a
    relay just started) or ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return hubble.status()
        except HubbleError:
            if time.monotonic() >= deadline:
                raise
            sleep(0.5)
