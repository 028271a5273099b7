"""The Kube seam's contract scenario on the real test cluster, compared with the fake.

``tests/support/kube_contract.py`` drives the calls the rollout depends on (apply and
its no-op, resourceVersion conflicts, structured label selectors, list items,
namespace termination) in a throwaway namespace; the fake must answer as the
real API server does, and this is where that is checked.
"""

from __future__ import annotations

import secrets

import pytest

from cluster.seams.kube import ClientKube
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube
from support.kube_contract import EXPECTED, scenario

pytestmark = pytest.mark.e2e


def test_the_real_cluster_answers_the_contract_scenario_as_the_fake_does(e2e_cluster):
    kube = ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig)
    ns = f"dashi-contract-{secrets.token_hex(3)}"
    try:
        real = scenario(kube, ns)
    finally:
        kube.delete("v1", "Namespace", ns)
    clock = FakeClock()
    fake = scenario(FakeKube(clock=clock, namespace_grace_s=3.0), ns, sleep=clock.sleep, clock=clock)
    for (what, got), (_, want) in zip(real, fake):
        assert got == want, f"{what}: the real cluster says {got!r}, the fake {want!r}"
    assert real == fake == EXPECTED
