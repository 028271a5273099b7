"""The conformance cases hold offline: the engine gives every case's
upstream truth table, on both ports, at made-up pod addresses."""

import pytest

from support.conformance import CASES, expected_table, predicted_table
from support.engine_builders import KEYS

from cluster.policy.engine.evaluate import DATAPLANES

IPS = {key: f"10.42.{i // 3}.{10 + i}" for i, key in enumerate(KEYS)}


def test_the_cases_are_many_and_named_once():
    ids = [c.id for c in CASES]
    assert len(ids) >= 20 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_engine_gives_each_upstream_truth_table(case):
    got, want = predicted_table(case, IPS), expected_table(case)
    assert set(got) == set(want)
    wrong = sorted(k for k in want if got[k] != want[k])
    assert not wrong, f"{case.id}: the engine differs from the upstream table on {wrong[:10]}"


def test_on_cilium_an_ipblock_selects_no_pod():
    """Cilium's departure, as the live suite measured it: the ipBlock cases'
    pod edges that an ipBlock opens stay closed; every other case is the
    API's table."""
    assert "cilium" in DATAPLANES
    departing = set()
    for case in CASES:
        api, cilium = predicted_table(case, IPS), predicted_table(case, IPS, "cilium")
        diff = {k for k in api if api[k] != cilium[k]}
        if diff:
            departing.add(case.id)
            assert all(api[k] and not cilium[k] for k in diff)  # only allows go away
    assert departing == {"ipblock-ingress", "ipblock-egress", "ipblock-egress-except"}
    case = next(c for c in CASES if c.id == "ipblock-ingress")
    assert predicted_table(case, IPS, "cilium")[("y/b", "x/a", 80)] is False


def test_kube_router_is_the_api_as_written():
    for case in CASES:
        assert predicted_table(case, IPS, "k3s") == predicted_table(case, IPS)
