"""The dashi-cnp profile (dashi's intended matrix with a Baseline
default-deny and Admin guardrails, ClusterNetworkPolicy) rolled out step by
step on a real cluster, every step verified live, then taken back to the
baseline exactly; as a user types it: prepare (whose canary proves the kind
is enforced), network-policies-up, smoke, explain, rollback.

The kube-router lane skips those, for that reason only: kube-router (k3s's
policy controller) does not implement ClusterNetworkPolicy. There, prepare
and network-policies-up refuse the profile in one line, nothing changed.
"""

from __future__ import annotations

import json

import pytest

from cluster.policy.profile import load_profile

pytestmark = pytest.mark.e2e

PROFILE = "dashi-cnp"
KCNP = ("policy.networking.k8s.io", "v1beta1", "clusternetworkpolicies")


@pytest.fixture(scope="module")
def lane(e2e_cluster):
    if e2e_cluster.lane != "cilium":
        pytest.skip(f"the {e2e_cluster.lane} lane does not enforce ClusterNetworkPolicy "
                    "(kube-router, k3s's policy controller, implements NetworkPolicy only)")
    return e2e_cluster


def cluster_policies(cluster) -> dict[str, str]:
    """Every ClusterNetworkPolicy on the cluster: name -> the step annotation (or "")."""
    from kubernetes import client

    items = client.CustomObjectsApi(cluster.api()).list_cluster_custom_object(*KCNP)["items"]
    return {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get("dashi.io/step", "") for p in items}


def test_prepare_proves_clusternetworkpolicy_enforcement(lane):
    assert cluster_policies(lane) == {}, "the cluster already holds ClusterNetworkPolicies; start from a clean one"
    proc = lane.inv("prepare", "--profile", PROFILE, "--context", lane.context, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "blocked by an Admin ClusterNetworkPolicy Deny over the allow (ClusterNetworkPolicy enforced)" in proc.stdout
    assert cluster_policies(lane) == {}  # the canary's own is gone


def test_every_step_is_applied_and_verified_live(lane, tmp_path):
    proc = lane.inv("network-policies-up", "--profile", PROFILE, "--context", lane.context, "--yes", "--json",
                    timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    profile = load_profile(PROFILE)
    for k, step in enumerate(profile.steps, 1):
        assert f"[{k}/9] {step.name}" in proc.stderr + proc.stdout
    assert cluster_policies(lane) == {"dashi-default-deny": "default-deny", "dashi-dns": "allow-dns",
                                      "monitoring-guardrail": "allow-dns", "debug-guardrail": "allow-dns"}
    report_path = tmp_path / "smoke.json"
    smoke = lane.inv("smoke", "--profile", PROFILE, "--context", lane.context, "--json", str(report_path))
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    report = json.loads(report_path.read_text())
    # The same matrix as dashi's NetworkPolicy form: the intended one, observed.
    intended = {(e.src, e.dst, e.port, e.protocol) for e, ok in profile.intended_final().items() if ok}
    observed = {(e["src"], e["dst"], e["port"], e["protocol"]) for e in report["edges"] if e["observed"]}
    assert observed == intended


def test_explain_names_the_guardrail_that_denies(lane):
    proc = lane.inv("explain", "dashi-data/prefect-worker", "dashi-monitoring/prometheus", "9090",
                    "--profile", PROFILE)
    assert proc.returncode == 3
    assert ("ingress of dashi-monitoring/prometheus: DENIED by ClusterNetworkPolicy monitoring-guardrail "
            "(Admin, priority 10) rule 2 'deny-all'") in proc.stdout


def test_rollback_to_baseline_removes_every_policy_of_ours(lane):
    proc = lane.inv("rollback", "--profile", PROFILE, "--to", "baseline", "--context", lane.context, "--yes",
                    timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cluster_policies(lane) == {}
    from kubernetes import client

    net = client.NetworkingV1Api(lane.api())
    ours = [p.metadata.name for ns in ("dashi-platform", "dashi-catalog", "dashi-data", "dashi-serving",
                                       "dashi-monitoring")
            for p in net.list_namespaced_network_policy(ns).items
            if (p.metadata.labels or {}).get("app.kubernetes.io/managed-by") == "dashi-cluster"]
    assert ours == []


def test_kube_router_refuses_the_profile_in_one_line_nothing_changed(e2e_cluster):
    if e2e_cluster.lane != "kube-router":
        pytest.skip(f"the {e2e_cluster.lane} lane serves and enforces ClusterNetworkPolicy (the tests above)")
    from kubernetes import client

    core = client.CoreV1Api(e2e_cluster.api())
    before = sorted(n.metadata.name for n in core.list_namespace().items)
    for task, reason in (("prepare", "does not serve (no CRD clusternetworkpolicies.policy.networking.k8s.io)"),
                         ("network-policies-up", "the cluster does not serve ClusterNetworkPolicy")):
        proc = e2e_cluster.inv(task, "--profile", PROFILE, "--context", e2e_cluster.context, "--yes")
        err = proc.stderr.strip()
        assert proc.returncode != 0 and "Traceback" not in proc.stdout + err, proc.stdout + err
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and reason in err, err
    assert sorted(n.metadata.name for n in core.list_namespace().items) == before
