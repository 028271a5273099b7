"""Live ClusterNetworkPolicy conformance: every case of
tests/support/cnp_conformance.py (upstream's scenarios, and what they leave
out) applied on this lane to eight real pods in four namespaces, the 8 x 8
matrix probed on TCP 80, TCP 8080 and UDP 5353, and compared with the
engine's prediction for the lane's dataplane.

Prints "ClusterNetworkPolicy conformance on LANE: N/M cases agree with the
engine", the cases where the lane departs from the API (as the engine
predicts it: DATAPLANES), and every edge of a case that disagrees.
The kube-router lane skips, for that reason only: kube-router (k3s's
policy controller) does not implement ClusterNetworkPolicy.
"""

from __future__ import annotations

import os
import time
from fnmatch import fnmatchcase

import pytest
from support.cnp_conformance import (
    CASES,
    KEYS,
    LANE_DATAPLANES,
    PROBED,
    SHORT,
    expected_table,
    namespaces,
    pod_labels,
    predicted_table,
)

from cluster import versions
from cluster.live.observe.discovery import Target
from cluster.live.observe.poll import wait_until
from cluster.live.observe.probe import MatrixProber
from cluster.live.observe.readiness import workload_ready
from cluster.live.setup import canary, standins
from cluster.policy.engine.model import Edge
from cluster.seams.kube import MANAGED_BY_LABEL, MANAGED_BY_VALUE, ClientKube

pytestmark = pytest.mark.e2e

READY_TIMEOUT_S = 180.0
# A case's policies replace the previous case's; the CNI programs them
# asynchronously, so disagreeing probes are re-polled this long.
SETTLE_S = 30.0
CNP_API = "policy.networking.k8s.io/v1beta1"
OURS = {"dashi.io/conformance": "cnp"}


def _pod(short: str) -> dict:
    ns, name = SHORT[short].split("/")
    small = {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
    image = {"image": versions.AGNHOST_IMAGE, "imagePullPolicy": "IfNotPresent", "resources": small}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": pod_labels(short)},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                # TCP 80 (web) and 8080, as upstream's serve-hostname containers.
                {"name": "tcp", **image, "args": ["porter"],
                 "env": [{"name": "SERVE_PORT_80", "value": "web"}, {"name": "SERVE_PORT_8080", "value": "8080"}],
                 "ports": [{"name": "web", "containerPort": 80}, {"containerPort": 8080}],
                 "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}},
                # UDP 5353: netexec answers agnhost connect's "hostname" (its HTTP side, 8081, is unused).
                {"name": "udp", **image, "args": ["netexec", "--http-port=8081", "--udp-port=5353"],
                 "ports": [{"name": "mdns", "containerPort": 5353, "protocol": "UDP"}]}]}}


def _clear(kube) -> None:
    for p in kube.list(CNP_API, "ClusterNetworkPolicy", label_selector={"matchLabels": OURS}):
        kube.delete(CNP_API, "ClusterNetworkPolicy", p["metadata"]["name"])
    for ns in namespaces():
        for p in kube.list("networking.k8s.io/v1", "NetworkPolicy", ns):
            kube.delete("networking.k8s.io/v1", "NetworkPolicy", p["metadata"]["name"], ns)


@pytest.fixture(scope="module")
def universe(e2e_cluster):
    if e2e_cluster.lane not in LANE_DATAPLANES:
        pytest.skip(f"the {e2e_cluster.lane} lane does not enforce ClusterNetworkPolicy "
                    "(kube-router, k3s's policy controller, implements NetworkPolicy only)")
    kube = ClientKube(context=e2e_cluster.context, kubeconfig=e2e_cluster.kubeconfig)
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition",
                   "clusternetworkpolicies.policy.networking.k8s.io")
    assert crd is not None, "the ClusterNetworkPolicy CRD is not installed (tests/e2e/hostcluster/up.sh installs it)"
    for ns, labels in namespaces().items():
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, **OURS, **labels}}})
    standins.wait_service_accounts(kube, list(namespaces()), sleep=time.sleep, clock=time.monotonic)
    for short in SHORT:
        kube.apply(_pod(short))
    pods: dict[str, dict | None] = {}

    def all_ready() -> tuple[bool, str]:
        pods.update({k: kube.get("v1", "Pod", k.split("/")[1], k.split("/")[0]) for k in KEYS})
        waiting = [k for k, p in pods.items() if not workload_ready(p, k)[0]]
        return not waiting, f"not Ready: {', '.join(waiting)}"

    wait_until("the conformance pods are Ready", all_ready, timeout_s=READY_TIMEOUT_S, interval_s=2.0,
               clock=time.monotonic, sleep=time.sleep)
    ips = {k: p["status"]["podIP"] for k, p in pods.items()}
    measured = canary.run(kube, sleep=time.sleep, clock=time.monotonic)
    assert measured.ok, measured.summary()
    try:
        yield kube, ips, measured.deny_behaviour
    finally:
        _clear(kube)
        for ns in namespaces():
            kube.delete("v1", "Namespace", ns)


def test_every_cnp_conformance_case_agrees_with_the_engine_live(e2e_cluster, universe, capsys):
    kube, ips, deny = universe
    prober = MatrixProber(kube, poll_timeout=SETTLE_S, deny_behaviour=deny)
    targets = {Edge(s, d, n, p): Target(s.split("/")[0], s.split("/")[1], ips[d], n, p)
               for s in KEYS for d in KEYS if s != d for n, p in PROBED}
    dataplane = LANE_DATAPLANES[e2e_cluster.lane]
    cases = [c for c in CASES if fnmatchcase(c.id, os.environ.get("DASHI_CONFORMANCE_CASES", "*"))]
    _clear(kube)
    warm = prober.run(targets, {e: True for e in targets})
    assert all(o.allowed for o in warm.observations.values()), "the conformance pods do not reach each other"
    t0 = time.monotonic()
    agree, lines, departs = 0, [], []
    for case in cases:
        _clear(kube)
        for obj in case.policies():
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(OURS)
            kube.apply(obj)
        want = predicted_table(case, ips, dataplane)
        assert want == expected_table(case, dataplane), f"{case.id}: the engine's table is not the case's"
        if want != predicted_table(case, ips):
            departs.append(case.id)
        predicted = {e: want[(e.src, e.dst, e.port, e.protocol)] for e in targets}
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
    summary = (f"ClusterNetworkPolicy conformance on {e2e_cluster.lane}: {agree}/{len(cases)} cases agree with "
               f"the engine (dataplane {dataplane}: {len(departs)} case(s) depart from the API's wording"
               f"{': ' + ', '.join(departs) if departs else ''}; deny behaviour {deny}; {len(targets)} probes a "
               f"case; {time.monotonic() - t0:.0f} s)")
    with capsys.disabled():
        print("\n" + summary + "\n" + "\n".join(lines))
    assert agree == len(cases), summary + "\n" + "\n".join(lines)
