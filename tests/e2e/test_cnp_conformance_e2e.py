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
CNP_API = "policy.networking.k8s.io/v1beta1"
OURS = {"dashi.io/conformance": "cnp"}


def _pod(short: str) -> dict:
    ns, name = SHORT[short].split("/")
    small = {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
    image = {"image": versions.AGNHOST_IMAGE, "imagePullPolicy": "IfNotPresent", "resources": small}
    # One container (the probes exec into the pod without naming one):
    # porter serves TCP 80 (web) and 8080, as upstream's serve-hostname
    # containers do, netexec UDP 5353, answering agnhost connect's "hostname"
    # (its HTTP side, 8081, is unused).
    serve = "/agnhost porter & exec /agnhost netexec --http-port=8081 --udp-port=5353"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": pod_labels(short)},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                {"name": "agnhost", **image, "command": ["/bin/sh", "-c", serve],
                 "env": [{"name": "SERVE_PORT_80", "value": "web"}, {"name": "SERVE_PORT_8080", "value": "8080"}],
                 "ports": [{"name": "web", "containerPort": 80}, {"containerPort": 8080},
                           {"name": "mdns", "containerPort": 5353, "protocol": "UDP"}],
                 "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 2}}]}}


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
    ips, deny = ready_universe(kube, namespaces(), [_pod(s) for s in SHORT],
                               {MANAGED_BY_LABEL: MANAGED_BY_VALUE, **OURS})
    try:
        yield kube, ips, deny
    finally:
        _clear(kube)
        for ns in namespaces():
            kube.delete("v1", "Namespace", ns)


def test_every_cnp_conformance_case_agrees_with_the_engine_live(e2e_cluster, universe, capsys):
    kube, ips, deny = universe
    # netexec answers agnhost's UDP payload, so a silent UDP probe is a drop
    # (and is re-polled like a TCP one).
    prober = MatrixProber(kube, poll_timeout=SETTLE_S, deny_behaviour=deny, udp_echo=True)
    targets = {Edge(s, d, n, p): Target(s.split("/")[0], s.split("/")[1], ips[d], n, p)
               for s in KEYS for d in KEYS if s != d for n, p in PROBED}
    dataplane = LANE_DATAPLANES[e2e_cluster.lane]
    cases = [c for c in CASES if fnmatchcase(c.id, os.environ.get("DASHI_CONFORMANCE_CASES", "*"))]

    def apply(case) -> None:
        for obj in case.policies():
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(OURS)
            kube.apply(obj)

    def predict(case, dp):
        table = predicted_table(case, ips, dp)
        assert table == expected_table(case, dp), f"{case.id}: the engine's table is not the case's"
        return table

    ok, report = run_cases(
        prober, targets, cases, clear=lambda: _clear(kube), apply=apply, predict=predict,
        table_key=lambda e: (e.src, e.dst, e.port, e.protocol), dataplane=dataplane, title=f"ClusterNetworkPolicy conformance on {e2e_cluster.lane}", deny=deny)
    with capsys.disabled():
        print("\n" + report)
    assert ok, report


def test_the_api_server_refuses_what_the_engine_refuses(e2e_cluster, universe):
    """The real API server is the oracle of validation: each object the
    engine refuses (tests/support/cnp_bad_input.py) is refused by a server
    dry-run create too, and the good one is accepted by both; the checks
    only the engine makes are named there and left out."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from support.cnp_bad_input import BAD, ENGINE_ONLY, GOOD, with_change

    from cluster.errors import ManifestError
    from cluster.policy.engine.compile import compile_policy

    custom = client.CustomObjectsApi(e2e_cluster.api())

    def server_refuses(obj: dict) -> str | None:
        group, version = obj["apiVersion"].split("/")
        try:
            # Strict, as kubectl asks by default: an unknown field is an error, not a warning.
            custom.create_cluster_custom_object(group, version, "clusternetworkpolicies", obj, dry_run="All",
                                                field_validation="Strict")
        except ApiException as e:
            return f"{e.status} {e.reason}"
        return None

    assert server_refuses(GOOD) is None
    compile_policy(GOOD)
    checked = disagree = 0
    for path, value, message in BAD:
        if any(m in message for m in ENGINE_ONLY):
            continue
        obj = with_change(path, value)
        with pytest.raises(ManifestError):
            compile_policy(obj)
        checked += 1
        if server_refuses(obj) is None:
            disagree += 1
            print(f"the API server accepts what the engine refuses: {message}")
    assert checked >= 30 and disagree == 0
