"""The Kube seam's contract scenario on the real test cluster, compared with the fake.

``tests/support/kube_contract.py`` drives the calls the rollout depends on (apply and
its no-op, resourceVersion conflicts, structured label selectors, list items,
field ownership against another manager's changes, the preconditions of
updates and deletes, namespace termination) in a throwaway namespace; the fake must answer as the
real API server does, and this is where that is checked.
"""

from __future__ import annotations

import secrets

import pytest
from support.kube_contract import EXPECTED, scenario

from cluster.seams.kubeclient import ClientKube
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube

pytestmark = pytest.mark.e2e


def test_the_real_cluster_answers_the_contract_scenario_as_the_fake_does(e2e_cluster):
    kube = ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig)

    def as_manager(name: str) -> ClientKube:
        return ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig, field_manager=name)

    ns = f"dashi-contract-{secrets.token_hex(3)}"
    try:
        real = scenario(kube, ns, as_manager=as_manager)
    finally:
        kube.delete("v1", "Namespace", ns)
    clock = FakeClock()
    fake_kube = FakeKube(clock=clock, namespace_grace_s=3.0)
    fake = scenario(fake_kube, ns, as_manager=fake_kube.as_manager, sleep=clock.sleep, clock=clock)
    for (what, got), (_, want) in zip(real, fake):
        assert got == want, f"{what}: the real cluster says {got!r}, the fake {want!r}"
    assert real == fake == EXPECTED
