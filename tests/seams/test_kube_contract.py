"""The contract scenario against the fake cluster (the real cluster runs the
same one in tests/e2e/test_kube_contract_e2e.py)."""

from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from support.kube_contract import EXPECTED, scenario


def test_the_fake_answers_the_contract_scenario_like_an_api_server():
    clock = FakeClock()
    # Termination takes a few seconds on a real cluster; so it does here.
    kube = FakeKube(clock=clock, namespace_grace_s=3.0)
    assert scenario(kube, "dashi-contract-test", as_manager=kube.as_manager, sleep=clock.sleep, clock=clock) == EXPECTED
    assert clock.slept == [1.0, 1.0, 1.0]
