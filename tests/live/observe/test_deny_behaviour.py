"""Reading probes the way the cluster's CNI denies, and judging the port the
probe really dials."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from cluster.errors import VerificationFailed
from cluster.live.setup.canary import NotEnforced
from cluster.seams.kube import ExecResult
from cluster.live.observe.probe import classify
from cluster.live.observe.settings import ProbeSettings
from cluster.live.record.policies import mark_ours
from cluster.live.observe.verify import verify_live
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from support.rollout_world import RolloutWorld


def refuse_debug_to_backend(kube) -> str:
    """develop/debug -> develop/backend:8080 is answered with a refusal (the
    packet got to the pod, say a sidecar resets it) instead of a timeout."""
    backend = next(p for p in kube.pods("develop") if p["metadata"]["name"].startswith("backend"))
    target = f"{backend['status']['podIP']}:8080"
    # One exec per edge, so the handler answers exactly that probe.
    kube.shell = False
    kube.on_exec(lambda ns, pod, argv: (ns, pod) == ("develop", "debug") and argv[0] == "/agnhost" and target in argv,
                 lambda ns, pod, argv: ExecResult(1, "", "REFUSED\n"))
    return target


def test_classify_reads_a_refusal_by_the_deny_behaviour():
    assert classify(1, "REFUSED\n", "TCP", "reject").allowed is False
    drop = classify(1, "REFUSED\n", "TCP", "drop")
    assert drop.allowed is True and "the packet reached the pod" in drop.detail
    unknown = classify(1, "REFUSED\n", "TCP", "unknown")
    assert unknown.allowed is None and "inv prepare" in unknown.detail
    assert classify(1, "TIMEOUT\n", "TCP", "drop").allowed is False  # a drop is a drop either way


def test_under_a_dropping_cni_a_refusal_where_policies_block_is_a_mismatch(tmp_path):
    w = RolloutWorld(tmp_path)
    w.cluster().save_cni(name="calico", deny_behaviour="drop")  # what the canary measured
    target = refuse_debug_to_backend(w.kube)
    with pytest.raises(VerificationFailed, match="step default-deny rolled back .*mismatch"):
        w.rollout().up(until="default-deny")
    out = w.out
    assert "develop/debug -> develop/backend 8080/TCP: mismatch" in out
    assert f"to {target}" in out and "the packet reached the pod" in out
    assert w.ours() == {}


def test_under_a_rejecting_cni_the_same_refusal_is_blocked(tmp_path):
    w = RolloutWorld(tmp_path)
    w.cluster().save_cni(name="k3s", deny_behaviour="reject")
    refuse_debug_to_backend(w.kube)
    w.rollout().up(until="default-deny")
    assert w.ours() == w.through(1)


def test_a_cluster_never_measured_is_measured_before_anything_is_verified(tmp_path):
    """k3s's kube-router REJECTs denied packets, and past the kernel's ICMP
    rate limit some denied probes time out instead: on a cluster this machine
    never measured, the rollout runs the canary first, keeps what it found,
    and reads the refusals as blocks."""
    w = RolloutWorld(tmp_path, measured=None, reject=True)
    assert w.cluster().deny_behaviour == "unknown"
    w.rollout().up(until="default-deny")
    out = w.out
    assert "first: the enforcement canary" in out and "never measured from this machine" in out
    assert "NetworkPolicy enforced by this cluster's CNI: reachable → rejected by deny" in out
    assert w.cluster().deny_behaviour == "reject"
    assert w.ours() == w.through(1)
    # The canary ran before the first policy of ours and left nothing behind.
    applied = [f"{c.namespace}/{c.name}" for c in w.kube.writes("NetworkPolicy") if c.verb != "delete"]
    assert applied[:2] == [n for n in applied if n.startswith("dashi-canary-")] and len(applied) == 2 + 3
    assert not [n for n in w.kube.objects("Namespace") if n["metadata"]["name"].startswith("dashi-canary-")]
    # Measured once: the next command does not run it again.
    w.rollout().up(until="allow-dns")
    assert "enforcement canary" not in w.out


def test_a_cluster_that_does_not_enforce_stops_before_any_policy_of_ours(tmp_path):
    w = RolloutWorld(tmp_path, measured=None, enforce=False)
    with pytest.raises(NotEnforced, match="NETWORK POLICIES ARE NOT ENFORCED"):
        w.rollout().up(until="default-deny")
    assert w.ours() == {} and w.cluster().deny_behaviour == "unknown"
    assert not [n for n in w.kube.objects("Namespace") if n["metadata"]["name"].startswith("dashi-canary-")]


def test_smoke_changes_nothing_and_says_a_refusal_cannot_be_read(tmp_path):
    """smoke is read-only: it runs no canary, and a refusal there says how to
    measure the deny behaviour."""
    w = RolloutWorld(tmp_path, measured=None, reject=True)
    for step in w.profile.steps[:1]:
        for obj in step.objects:
            w.kube.apply(mark_ours(obj, step.name))
    report = w.rollout().smoke()
    assert not report.ok
    assert "never measured (inv prepare, or inv cluster-up, runs the canary that measures it)" in w.out
    assert w.cluster().deny_behaviour == "unknown"
    assert not [c for c in w.kube.calls_of("apply") if c.namespace.startswith("dashi-canary-")]


# -- the port of an external endpoint --------------------------------------------------------


def only_6443(profile):
    """The kube-api step opening 6443 alone (the k3s port), not 443."""
    step = profile.steps[-1]
    (obj,) = step.objects
    obj = yaml.safe_load(yaml.safe_dump(obj))
    obj["spec"]["egress"][0]["ports"] = [{"protocol": "TCP", "port": 6443}]
    return dataclasses.replace(profile, steps=profile.steps[:-1] + [dataclasses.replace(step, objects=(obj,))])


def deployed(profile, api_port):
    clock = FakeClock()
    kube = FakeKube(clock=clock, api_port=api_port)
    for obj in profile.namespace_objects + profile.workload_objects:
        kube.apply(obj)
    for step in profile.steps:
        for obj in step.objects:
            kube.apply(mark_ours(obj, step.name))
    return kube, ProbeSettings(poll_timeout=0, clock=clock, sleep=clock.sleep)


def kube_api_row(report):
    return next(r for r in report.rows if (r.edge.src, r.edge.dst) == ("dashi-data/prefect-worker",
                                                                        "external/kube-api"))


def test_the_engine_judges_the_port_the_probe_dials():
    """On a managed cluster the API server listens on 443 behind the
    kubernetes Service; the profile says 6443. A policy opening only 6443
    does not open the API there: predicted and observed must agree that it
    is blocked (the step then fails as unintended), not disagree as if the
    CNI misbehaved."""
    profile = only_6443(load_profile("dashi"))
    kube, settings = deployed(profile, api_port=443)
    row = kube_api_row(verify_live(kube, profile, len(profile.steps), settings))
    assert row.edge.port == 6443 and row.observation.target.port == 443
    assert (row.verdict.port, row.predicted, row.observed) == (443, False, False)
    assert row.problems == ["unintended"]
    assert row.observation.target.note == "live port 443 (profile says 6443)"


def test_the_shipped_kube_api_step_verifies_on_443_and_6443():
    profile = load_profile("dashi")
    for port in (443, 6443):
        kube, settings = deployed(profile, api_port=port)
        row = kube_api_row(verify_live(kube, profile, len(profile.steps), settings))
        assert (row.verdict.port, row.predicted, row.observed, row.problems) == (port, True, True, [])
