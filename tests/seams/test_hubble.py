"""The Hubble seam over real gRPC: GrpcHubble against FakeHubble (a real
server on loopback with the generated servicer)."""

import itertools
import time

import pytest

from cluster.seams.hubble import FakeHubble, GrpcHubble, HubbleError, flow_pb2, observer_pb2


def flow(verdict=flow_pb2.FORWARDED, t=None, port=8080):
    f = flow_pb2.Flow(verdict=verdict, Type=flow_pb2.L3_L4)
    f.l4.TCP.destination_port = port
    f.l4.TCP.flags.SYN = True
    f.source.namespace, f.source.pod_name = "dashi-data", "flow-run-1"
    f.destination.namespace, f.destination.pod_name = "dashi-catalog", "stac-fastapi-1"
    f.time.FromNanoseconds(int((t or time.time()) * 1e9))
    return f


@pytest.fixture
def fake():
    f = FakeHubble(max_flows=65535)
    yield f
    f.stop()


def test_status_and_a_followed_stream(fake):
    hub = GrpcHubble(fake.address)
    fake.emit([flow()])  # before the stream: not followed
    st = hub.status()
    assert (st.max_flows, st.seen_flows, st.num_flows) == (65535, 1, 1)
    fake.emit_when_followed([flow(), observer_pb2.GetFlowsResponse(
        lost_events=flow_pb2.LostEvent(num_events_lost=3)), flow()])
    got = [r.WhichOneof("response_types") for r in itertools.islice(hub.flows(seconds=10), 3)]
    assert got == ["flow", "lost_events", "flow"]
    assert fake.requests[-1].follow is True
    hub.close()


def test_a_followed_stream_ends_when_its_time_is_up(fake):
    hub = GrpcHubble(fake.address)
    fake.emit_when_followed([flow()])
    t0 = time.monotonic()
    got = list(hub.flows(seconds=0.3))
    assert len(got) == 1 and 0.25 < time.monotonic() - t0 < 5
    hub.close()


def test_a_time_window_of_drops(fake):
    now = time.time()
    fake.emit([flow(t=now - 100), flow(flow_pb2.DROPPED, now - 50), flow(flow_pb2.DROPPED, now - 5), flow(t=now - 4)])
    hub = GrpcHubble(fake.address)
    got = list(hub.flows(seconds=5, follow=False, since=now - 10, until=now, dropped_only=True))
    assert [r.flow.verdict for r in got] == [flow_pb2.DROPPED]
    req = fake.requests[-1]
    assert list(req.whitelist[0].verdict) == [flow_pb2.DROPPED]
    assert abs(req.since.ToNanoseconds() / 1e9 - (now - 10)) < 1e-3


def test_nothing_there_is_one_line():
    hub = GrpcHubble("127.0.0.1:1")
    with pytest.raises(HubbleError) as e:
        hub.status()
    assert str(e.value).startswith("Hubble at 127.0.0.1:1: ServerStatus failed: UNAVAILABLE")
    assert "\n" not in str(e.value)
