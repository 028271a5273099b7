"""Live conformance: every case of tests/support/conformance.py applied to real pods
on this lane, the 9 x 9 matrix probed on TCP 80 and 81, and compared with the
engine's prediction for the same policies at the pods' live addresses.

Prints one line per lane, "conformance on LANE: N/M cases agree with the
engine", and for a case that disagrees the edges, predicted and observed.
The engine is told the lane's dataplane (cluster.policy.engine.evaluate.DATAPLANES:
where a CNI departs from the API's wording, measured here); the line also
counts the cases where that dataplane departs from the API as written.
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase

import pytest
from support.conformance import CASES, LANE_DATAPLANES, predicted_table
from support.engine_builders import KEYS, NAMESPACES, PORTS, make_namespaces
from support.live_conformance import ready_universe, run_cases

from cluster import versions
from cluster.live.observe.discovery import Target
from cluster.live.observe.prober import MatrixProber
from cluster.policy.engine.model import Edge
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.seams.kubeclient import ClientKube

pytestmark = pytest.mark.e2e

# A case's policies replace the previous case's; the CNI programs them
# asynchronously, so disagreeing probes are re-polled this long.
SETTLE_S = 30.0


def _labels(extra: dict) -> dict:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, "dashi.io/conformance": "true", **extra}


def _pod(key: str) -> dict:
    ns, name = key.split("/")
    ports = [{"name": f"serve-{p}-tcp", "containerPort": p, "protocol": "TCP"} for p in PORTS]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "agnhost", "image": versions.AGNHOST_IMAGE, "imagePullPolicy": "IfNotPresent",
                "args": ["porter"], "env": [{"name": f"SERVE_PORT_{p}", "value": f"serve-{p}"} for p in PORTS],
                "ports": ports, "readinessProbe": {"tcpSocket": {"port": PORTS[0]}, "periodSeconds": 2},
                "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}]}}


@pytest.fixture(scope="module")
def universe(e2e_cluster):
    kube = ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig)
    ips, deny = ready_universe(kube, make_namespaces(), [_pod(k) for k in KEYS], _labels({}))
    try:
        yield kube, ips, deny
    finally:
        _clear(kube)
        for ns in NAMESPACES:
            kube.delete("v1", "Namespace", ns)


def _clear(kube) -> None:
    for ns in NAMESPACES:
        for p in kube.list("networking.k8s.io/v1", "NetworkPolicy", ns):
            kube.delete("networking.k8s.io/v1", "NetworkPolicy", p["metadata"]["name"], ns)


def test_every_conformance_case_agrees_with_the_engine_live(e2e_cluster, universe, capsys):
    kube, ips, deny = universe
    prober = MatrixProber(kube, poll_timeout=SETTLE_S, deny_behaviour=deny)
    targets = {Edge(s, d, p, "TCP"): Target(s.split("/")[0], s.split("/")[1], ips[d], p)
               for s in KEYS for d in KEYS if s != d for p in PORTS}
    dataplane = LANE_DATAPLANES.get(e2e_cluster.lane)
    # DASHI_CONFORMANCE_CASES=GLOB runs only the cases whose id matches.
    cases = [c for c in CASES if fnmatchcase(c.id, os.environ.get("DASHI_CONFORMANCE_CASES", "*"))]

    def apply(case) -> None:
        for obj in case.policies(ips):
            kube.apply(obj)

    ok, report = run_cases(
        prober, targets, cases, clear=lambda: _clear(kube), apply=apply,
        predict=lambda case, dp: predicted_table(case, ips, dp), table_key=lambda e: (e.src, e.dst, e.port),
        dataplane=dataplane, title=f"conformance on {e2e_cluster.lane}", deny=deny)
    with capsys.disabled():
        print("\n" + report)
    assert ok, report
