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
import time
from fnmatch import fnmatchcase

import pytest
from support.conformance import CASES, LANE_DATAPLANES, predicted_table
from support.engine_builders import KEYS, NAMESPACES, PORTS, make_namespaces

from cluster import versions
from cluster.live.observe.discovery import Target
from cluster.live.observe.poll import wait_until
from cluster.live.observe.probe import MatrixProber
from cluster.live.observe.readiness import workload_ready
from cluster.live.setup import canary, standins
from cluster.policy.engine.model import Edge
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from cluster.seams.kubeclient import ClientKube

pytestmark = pytest.mark.e2e

READY_TIMEOUT_S = 180.0
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
    for ns, labels in make_namespaces().items():
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": _labels(labels)}})
    standins.wait_service_accounts(kube, list(make_namespaces()), sleep=time.sleep, clock=time.monotonic)
    for key in KEYS:
        kube.apply(_pod(key))
    pods: dict[str, dict | None] = {}

    def all_ready() -> tuple[bool, str]:
        pods.update({k: kube.get("v1", "Pod", k.split("/")[1], k.split("/")[0]) for k in KEYS})
        waiting = [k for k, p in pods.items() if not workload_ready(p, k)[0]]
        return not waiting, f"not Ready: {', '.join(waiting)}"

    wait_until("the conformance pods are Ready", all_ready, timeout_s=READY_TIMEOUT_S, interval_s=2.0,
               clock=time.monotonic, sleep=time.sleep)
    ips = {k: p["status"]["podIP"] for k, p in pods.items()}
    # How this CNI answers a denied packet decides how a refusal reads.
    measured = canary.run(kube, sleep=time.sleep, clock=time.monotonic)
    assert measured.ok, measured.summary()
    try:
        yield kube, ips, measured.deny_behaviour
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
    # First the open network, no policy: every edge connects once the new
    # pods' endpoints are programmed (on Cilium a fresh pod's first policy
    # can otherwise lag).
    _clear(kube)
    warm = prober.run(targets, {e: True for e in targets})
    assert all(o.allowed for o in warm.observations.values()), "the conformance pods do not reach each other"
    t0 = time.monotonic()
    agree, lines, departs = 0, [], []
    for case in cases:
        _clear(kube)
        for obj in case.policies(ips):
            kube.apply(obj)
        want = predicted_table(case, ips, dataplane)
        if want != predicted_table(case, ips):
            departs.append(case.id)
        predicted = {e: want[(e.src, e.dst, e.port)] for e in targets}
        run = prober.run(targets, predicted)
        wrong = sorted((e for e, o in run.observations.items() if o.allowed is not predicted[e]), key=str)
        if not wrong:
            agree += 1
            lines.append(f"  agree     {case.id} ({run.matched_seconds or 0:.1f} s to match)")
            continue
        lines.append(f"  DISAGREE  {case.id}: {len(wrong)} edge(s)")
        for e in wrong[:8]:
            o = run.observations[e]
            lines.append(f"      {e}: predicted {'allowed' if predicted[e] else 'blocked'}, observed "
                         f"{o.result.kind} ({o.result.detail})")
    _clear(kube)
    summary = (f"conformance on {e2e_cluster.lane}: {agree}/{len(cases)} cases agree with the engine "
               f"(dataplane {dataplane or 'as the API'}: {len(departs)} case(s) depart from the API's wording"
               f"{': ' + ', '.join(departs) if departs else ''}; deny behaviour {deny}; {len(targets)} probes a "
               f"case; {time.monotonic() - t0:.0f} s)")
    with capsys.disabled():
        print("\n" + summary + "\n" + "\n".join(lines))
    assert agree == len(cases), summary + "\n" + "\n".join(lines)
