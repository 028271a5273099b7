"""network-policies-up --observe on a fake cluster with a fake Hubble: a step
that would cut observed traffic outside the intent is refused before
anything changes, --accept-blocking lets it through, and the CNI's drop
verdicts are kept with each step's evidence."""

import dataclasses
import json
import time

import pytest
from support.rollout_world import NP

from cluster.errors import VerificationFailed
from cluster.live.observe.hubble import connect
from cluster.live.rollout.watch import StepRefused, Watch
from cluster.seams.hubble import FakeHubble, flow_pb2

UNLISTED = "develop/frontend develop/backend 8080/TCP"


@pytest.fixture
def hubble():
    f = FakeHubble()
    yield f
    f.stop()


def flow(world, src, dst, port, verdict=flow_pb2.FORWARDED, t=None):
    f = flow_pb2.Flow(verdict=verdict, Type=flow_pb2.L3_L4)
    f.l4.TCP.destination_port = port
    f.l4.TCP.flags.SYN = True
    for end, key in ((f.source, src), (f.destination, dst)):
        ep = world.profile.endpoint(key)
        end.namespace, end.pod_name = ep.namespace, f"{ep.name}-5d8b-x1"
        end.labels.extend([f"k8s:{k}={v}" for k, v in ep.labels.items()]
                          + [f"k8s:io.kubernetes.pod.namespace={ep.namespace}"])
    if verdict == flow_pb2.DROPPED:
        f.drop_reason_desc = flow_pb2.POLICY_DENIED
        f.traffic_direction = flow_pb2.EGRESS
    f.time.FromNanoseconds(int((t or time.time()) * 1e9))
    return f


def watched(world, hubble, accept=(), **kw):
    r = world.rollout()
    r.watch = Watch(lambda: connect(address=hubble.address), 0.6, list(accept), **kw)
    return r


def traffic(world, hubble):
    """Flows arriving while the rollout observes: DNS (intended), an unlisted edge."""
    hubble.emit_when_followed([flow(world, "develop/frontend", "kube-system/kube-dns", 53),
                               flow(world, "develop/frontend", "develop/backend", 8080),
                               flow(world, "develop/frontend", "develop/backend", 8080)])


def test_a_step_that_cuts_observed_traffic_is_refused_before_anything_changes(world, hubble):
    r = watched(world, hubble)
    traffic(world, hubble)
    with pytest.raises(StepRefused) as e:
        r.up()
    r.watch.close()
    assert e.value.exit_code == 3
    assert str(e.value).startswith("step default-deny would cut observed traffic outside the intent: "
                                   "develop/frontend -> develop/backend 8080/TCP (2 flow(s)). Nothing was changed")
    assert f'--accept-blocking "{UNLISTED}"' in str(e.value)
    assert world.applied_names() == [] and world.ours() == {}
    assert "WOULD CUT: develop/frontend -> develop/backend 8080/TCP (2 flows observed)" in world.out
    assert "egress of develop/frontend: BLOCKED: selected by develop/default-deny" in world.out
    assert ("step-refused", "default-deny", False) in world.history()
    rec = world.pdir / "flows" / "before-default-deny"
    assert json.loads((rec / "meta.json").read_text())["kept"] == 3


def test_accept_blocking_lets_the_step_through_and_keeps_the_drops(world, hubble):
    # The window from the end of the observation to the verification, as
    # the watch's clock reads it; in it, what the CNI dropped once the step
    # was in: the unlisted edge, by policy at egress.
    t = time.time() + 60
    r = watched(world, hubble, accept=[UNLISTED], clock=lambda: t)
    hubble.emit([flow(world, "develop/frontend", "develop/backend", 8080, flow_pb2.DROPPED, t=t)])
    traffic(world, hubble)
    r.up(until="default-deny")
    r.watch.close()
    assert world.ours() == world.through(1)
    assert "accepted cut: develop/frontend -> develop/backend 8080/TCP (2 flows): accepted with --accept-blocking" \
        in world.out
    drops = json.loads(next((world.pdir / "evidence").glob("*-default-deny-drops.json")).read_text())
    assert drops["count"] == 1
    assert drops["flows"][0] | {"time": "-"} == {
        "time": "-", "src": "develop/frontend-5d8b-x1", "dst": "develop/backend-5d8b-x1", "port": 8080,
        "protocol": "TCP", "reason": "policy_denied egress", "policies": []}
    assert "the CNI dropped 1 flow(s) while default-deny was applied and verified" in world.out


def test_the_drops_of_a_wrong_step_are_in_its_evidence(world, hubble):
    leaky = {"apiVersion": NP, "kind": "NetworkPolicy", "metadata": {"name": "allow-everything", "namespace": "develop"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}
    steps = list(world.profile.steps)
    steps[0] = dataclasses.replace(steps[0], objects=steps[0].objects + (leaky,))
    bad = dataclasses.replace(world.profile, steps=steps)
    r = world.rollout(bad)
    t = time.time()
    r.watch = Watch(lambda: connect(address=hubble.address), 0.3, clock=lambda: t)
    hubble.emit([flow(world, "staging/frontend", "staging/backend", 8080, flow_pb2.DROPPED, t=t + 0.1)])
    with pytest.raises(VerificationFailed):
        r.up(until="default-deny")
    r.watch.close()
    evidence = json.loads(next((world.pdir / "evidence").glob("*-default-deny-failed.json")).read_text())
    assert evidence["cni_drops"]["count"] == 1
    assert evidence["cni_drops"]["summary"] == [
        "     1  staging/frontend-5d8b-x1 -> staging/backend-5d8b-x1 8080/TCP: policy_denied egress (no policy named)"]
    md = next((world.pdir / "evidence").glob("*-default-deny-failed.md")).read_text()
    assert "## cni_drops" in md and "policy_denied egress" in md


def test_hubble_gone_during_a_failed_verification_never_stops_the_restore(world, hubble):
    leaky = {"apiVersion": NP, "kind": "NetworkPolicy", "metadata": {"name": "allow-everything", "namespace": "develop"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}
    steps = list(world.profile.steps)
    steps[0] = dataclasses.replace(steps[0], objects=steps[0].objects + (leaky,))
    r = world.rollout(dataclasses.replace(world.profile, steps=steps))
    stop = []

    def clock():
        if not stop:  # Hubble goes away once the observation is over
            stop.append(hubble.stop())
        return time.time()

    r.watch = Watch(lambda: connect(address=hubble.address), 0.3, clock=clock)
    with pytest.raises(VerificationFailed, match="rolled back"):
        r.up(until="default-deny")
    r.watch.close()
    assert world.ours() == {}
    evidence = json.loads(next((world.pdir / "evidence").glob("*-default-deny-failed.json")).read_text())
    assert evidence["cni_drops"]["error"].startswith("Hubble at 127.0.0.1:")
