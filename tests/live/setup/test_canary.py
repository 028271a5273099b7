"""The enforcement canary: reachable, blocked by deny, reachable with allow, cleaned up; loud when not enforced."""

import pytest

from cluster.errors import DashiError
from cluster.live.setup import canary
from cluster.live.observe.probe import ProbeResult
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube


def _run(kube, clock, **kw):
    return canary.run(kube, sleep=clock.sleep, clock=clock, namespace="dashi-canary-test", **kw)


def test_enforcing_cni_passes_and_the_namespace_is_removed():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    result = _run(kube, clock)
    assert result.ok and result.enforced
    assert [(p.name, p.expect, p.observed) for p in result.phases] == [
        ("before", "reachable", "reachable"), ("deny", "blocked", "blocked"), ("allow", "reachable", "reachable")]
    assert result.phases[1].kind == "timeout"
    assert canary.verdict(result, "calico") == \
        "NetworkPolicy enforced by calico: reachable → dropped by deny → reachable with allow"
    assert kube.get("v1", "Namespace", "dashi-canary-test") is None
    applied = [(c.kind, c.name) for c in kube.calls_of("apply")]
    assert applied == [("Namespace", "dashi-canary-test"), ("Pod", "canary-server"), ("Pod", "canary-client"),
                       ("NetworkPolicy", "canary-default-deny"), ("NetworkPolicy", "canary-allow-client")]
    # Probes are agnhost connect from the client to the server pod's IP.
    execs = kube.calls_of("exec")
    assert execs[0].name == "canary-client"
    assert execs[0].argv[:2] == ("/agnhost", "connect") and execs[0].argv[2].endswith(":8080")


def test_cni_that_does_not_enforce_is_reported_loudly():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, enforce=False)
    result = _run(kube, clock)
    assert result.enforced is False and not result.ok
    assert [p.name for p in result.phases] == ["before", "deny"]  # stops at the failed phase
    # It kept re-polling for the whole phase budget before concluding.
    assert result.phases[1].seconds >= canary.PHASE_TIMEOUT_S
    with pytest.raises(canary.NotEnforced) as ei:
        canary.verdict(result, "k3s")
    assert ei.value.exit_code == 3
    assert "NOT ENFORCED" in str(ei.value) and "documentation only" in str(ei.value)
    assert kube.get("v1", "Namespace", "dashi-canary-test") is None


def test_slow_cni_is_re_polled():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, lag_seconds=5.0)
    result = _run(kube, clock)
    assert result.ok
    assert 5.0 <= result.phases[1].seconds < canary.PHASE_TIMEOUT_S


def test_a_rejecting_cni_counts_as_blocked():
    """k3s' kube-router REJECTs denied packets: agnhost says REFUSED."""
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    kinds = ["connected", "refused", "connected"]

    def connect(kube, ns, pod, host, port, protocol, timeout):
        kind = kinds.pop(0)
        return ProbeResult(kind == "connected", kind)

    result = _run(kube, clock, connect=connect)
    assert result.ok
    assert canary.verdict(result, "k3s").endswith("reachable → rejected by deny → reachable with allow")


def test_broken_pod_network_is_not_called_enforcement():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    result = _run(kube, clock, connect=lambda *a: ProbeResult(False, "other", "no route to host"))
    assert result.enforced is None
    with pytest.raises(DashiError, match="pod networking is broken") as ei:
        canary.verdict(result, "calico")
    assert not isinstance(ei.value, canary.NotEnforced)


def test_allow_not_honoured():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    kinds = ["connected", "timeout"] + ["timeout"] * 100
    result = _run(kube, clock, connect=lambda *a: ProbeResult(kinds[0] == "connected", kinds.pop(0)))
    assert result.enforced is True and not result.ok
    with pytest.raises(canary.NotEnforced, match="allow policy did not restore traffic"):
        canary.verdict(result, "cilium")


def test_pods_that_never_start_fail_with_cleanup():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep)
    real_apply = kube.apply

    def apply(obj):
        out = real_apply(obj)
        if obj["kind"] == "Pod":
            kube.patch_status("v1", "Pod", obj["metadata"]["name"], obj["metadata"]["namespace"],
                              {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]})
        return out

    kube.apply = apply
    with pytest.raises(DashiError, match="canary pods not ready after 180s"):
        _run(kube, clock)
    assert kube.get("v1", "Namespace", "dashi-canary-test") is None


def test_random_namespace_names():
    a, b = canary.namespace_name(), canary.namespace_name()
    assert a.startswith("dashi-canary-") and a != b


def test_pods_wait_for_the_namespaces_default_service_account():
    # A fresh namespace has no "default" ServiceAccount for a moment; a Pod
    # created then is refused (403). The canary waits for it first.
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, service_account_delay_s=3.0)
    t0 = clock()
    result = _run(kube, clock)
    assert result.ok
    pod_applies = [c for c in kube.calls_of("apply") if c.kind == "Pod"]
    assert [c.name for c in pod_applies] == ["canary-server", "canary-client"]
    sa_gets = [c for c in kube.calls_of("get") if c.kind == "ServiceAccount"]
    assert [(c.namespace, c.name) for c in sa_gets] == [("dashi-canary-test", "default")] * 7
    assert clock() - t0 >= 3.0


def test_no_service_account_controller_is_one_clear_error_and_cleans_up():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, service_account_delay_s=None)
    with pytest.raises(DashiError) as e:
        _run(kube, clock)
    assert str(e.value) == ("namespace(s) dashi-canary-test still have no 'default' ServiceAccount after 120s, "
                            "so no Pod can be created there: is kube-controller-manager running (its "
                            "serviceaccount controller creates them)?")
    assert not [c for c in kube.calls_of("apply") if c.kind == "Pod"]
    assert kube.get("v1", "Namespace", "dashi-canary-test") is None
