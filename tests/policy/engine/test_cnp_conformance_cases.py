"""The ClusterNetworkPolicy conformance cases hold offline: the engine gives
every case's table (the API's, and Cilium's where the lane measured a
departure) at made-up pod addresses; each table holds the upstream
assertions it cites; the upstream manifests are the module's, unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support.availability import unavailable
from support.cnp_conformance import CASES, FIXTURES, KEYS, SHORT, expected_table, ports, predicted_table

IPS = {key: f"10.42.0.{10 + i}" for i, key in enumerate(KEYS)}
MODULE = Path("/var/cache/dashi-cluster-e2e/gomod/sigs.k8s.io/network-policy-api@v0.3.1/conformance/base")


def test_the_cases_are_many_and_named_once():
    ids = [c.id for c in CASES]
    assert len(ids) >= 20 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_engine_gives_each_table(case):
    for dataplane in (None, "cilium"):
        got, want = predicted_table(case, IPS, dataplane), expected_table(case, dataplane)
        assert set(got) == set(want)
        wrong = sorted(k for k in want if got[k] != want[k])
        assert not wrong, f"{case.id} ({dataplane or 'the API'}): the engine differs on {wrong[:6]}"


@pytest.mark.parametrize("case", [c for c in CASES if c.pokes], ids=lambda c: c.id)
def test_each_table_holds_the_upstream_assertions_it_cites(case):
    table = expected_table(case)
    for client, server, port, allowed in case.pokes:
        (number, protocol), = ports(port)
        assert table[(SHORT[client], SHORT[server], number, protocol)] is allowed, (client, server, port)


def test_departures_are_only_where_cilium_was_measured_to_depart():
    departing = {c.id for c in CASES if expected_table(c) != expected_table(c, "cilium")}
    assert departing == {"admin-networks-deny", "np-then-baseline", "nodes-peer", "domain-names-peer",
                         "admin-pod-selectors", "baseline-pod-selectors", "namespace-expressions"}


def test_the_fixtures_are_upstreams_files_unchanged():
    if not MODULE.is_dir():
        unavailable("e2e", f"the network-policy-api module is not on this machine ({MODULE}; "
                           "tests/e2e/hostcluster/build.sh downloads it)")
    files = sorted(p for p in FIXTURES.rglob("*.yaml"))
    assert len(files) == 14
    for p in files:
        upstream = MODULE / p.relative_to(FIXTURES)
        assert hashlib.sha256(p.read_bytes()).digest() == hashlib.sha256(upstream.read_bytes()).digest(), p
