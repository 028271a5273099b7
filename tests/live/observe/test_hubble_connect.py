"""The way to a cluster's Hubble: a port-forward through the Kube seam to
hubble-relay (FakeKube's forward reaches a FakeHubble over real sockets)."""

import itertools
import time

import pytest

from cluster.errors import KubeError
from cluster.live.observe.hubble import connect, relay_pod
from cluster.seams.hubble import FakeHubble, HubbleError, flow_pb2
from cluster.testing.fakecluster.kube import FakeKube


@pytest.fixture
def fake():
    f = FakeHubble()
    yield f
    f.stop()


def flow():
    f = flow_pb2.Flow(verdict=flow_pb2.FORWARDED)
    f.l4.TCP.destination_port = 8080
    f.time.FromNanoseconds(int(time.time() * 1e9))
    return f


def relay(kube, phase="Running"):
    kube.apply({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "hubble-relay-7d-x", "namespace": "kube-system",
                             "labels": {"k8s-app": "hubble-relay"}},
                "spec": {"containers": [{"name": "hubble-relay", "image": "quay.io/cilium/hubble-relay"}]},
                "status": {"phase": phase}})


def test_through_a_port_forward_to_the_relay(fake):
    kube = FakeKube()
    relay(kube)
    kube.forward_targets[("kube-system", "hubble-relay-7d-x", 4245)] = fake.address
    said = []
    fake.emit_when_followed([flow()])
    with connect(kube=kube, say=said.append) as hub:
        assert hub.address != fake.address and hub.address.startswith("127.0.0.1:")
        assert [r.flow.l4.TCP.destination_port for r in itertools.islice(hub.flows(seconds=10), 1)] == [8080]
    assert said[0].startswith("port-forward 127.0.0.1:") and said[0].endswith(
        "-> kube-system/hubble-relay-7d-x:4245 (hubble-relay)")
    assert "flows in its buffer" in said[1]
    assert kube.calls_of("portforward", "Pod")


def test_no_relay_says_what_to_do():
    kube = FakeKube()
    with pytest.raises(HubbleError, match="no running hubble-relay pod in kube-system \\(none\\).*--hubble ADDRESS"):
        relay_pod(kube)
    with pytest.raises(KubeError, match="not found"):
        kube.port_forward("kube-system", "nope", 4245)
