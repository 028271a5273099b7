"""ClusterNetworkPolicy steps through the rollout on the fake cluster (which
enforces them as the engine predicts, Cilium's dataplane on a Cilium one):
the dashi-cnp profile applied and verified step by step, snapshotted,
rolled back to the baseline and forward again; the canary proving the kind
is enforced before any of it; refusals where it cannot be."""

from __future__ import annotations

import pytest
import yaml
from support.rollout_world import RolloutWorld

from cluster.errors import DashiError
from cluster.live.record.policies import KCNP_API, is_ours
from cluster.live.setup import canary
from cluster.live.setup.canary import NotEnforced
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube

STEPS = ["default-deny", "allow-dns", "allow-platform", "allow-catalog", "allow-catalog-internal",
         "allow-data-internal", "allow-monitoring", "allow-ingress-port-forward", "allow-kube-api"]


def cluster_policies(world) -> dict:
    return {p["metadata"]["name"]: p["metadata"]["annotations"]["dashi.io/step"]
            for p in world.kube.objects("ClusterNetworkPolicy") if is_ours(p)}


@pytest.mark.parametrize("cni", [None, "cilium"])
def test_dashi_cnp_rolls_out_step_by_step_every_step_verified(tmp_path, cni):
    w = RolloutWorld(tmp_path, "dashi-cnp", cni=cni, kcnp_crd=True)
    w.rollout().up()
    rec = w.record()
    assert [s["name"] for s in rec["steps"]] == STEPS and rec["in_progress"] is None
    assert all(s["summary"]["mismatch"] == 0 for s in rec["steps"])
    assert [s["summary"]["predicted_allowed"] for s in rec["steps"]] == [0, 28, 33, 34, 35, 37, 44, 44, 45]
    assert cluster_policies(w) == {"dashi-default-deny": "default-deny", "dashi-dns": "allow-dns",
                                   "monitoring-guardrail": "allow-dns", "debug-guardrail": "allow-dns"}
    assert "applied 3 policies: ClusterNetworkPolicy dashi-dns, ClusterNetworkPolicy monitoring-guardrail, " \
           "ClusterNetworkPolicy debug-guardrail" in w.out
    snap = yaml.safe_load((w.pdir / "snapshots" / "0003-before-allow-platform.yaml").read_text())
    assert snap["applied"] == ["default-deny", "allow-dns"]
    assert [(p["kind"], "namespace" in p["metadata"]) for p in snap["policies"]] == [("ClusterNetworkPolicy", False)] * 4


def test_rollback_removes_and_restores_cluster_scoped_policies(tmp_path):
    w = RolloutWorld(tmp_path, "dashi-cnp", cni="cilium", kcnp_crd=True)
    w.rollout().up(until="allow-platform")
    w.rollout().rollback(to="default-deny")
    assert cluster_policies(w) == {"dashi-default-deny": "default-deny"}
    w.rollout().rollback(to="baseline")
    assert cluster_policies(w) == {}
    w.rollout().rollback(to="allow-platform")  # from the snapshot the last rollback took
    assert set(cluster_policies(w)) == {"dashi-default-deny", "dashi-dns", "monitoring-guardrail", "debug-guardrail"}
    assert "Rolled back: after allow-platform (3/9), verified live." in w.out


def test_someone_elses_cluster_network_policy_is_predicted_and_never_touched(tmp_path):
    w = RolloutWorld(tmp_path, "dashi", cni="cilium", kcnp_crd=True)
    theirs = {"apiVersion": KCNP_API, "kind": "ClusterNetworkPolicy", "metadata": {"name": "no-serving-to-data"},
              "spec": {"tier": "Admin", "priority": 1,
                       "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "dashi-data"}}},
                       "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {
                           "kubernetes.io/metadata.name": "dashi-serving"}}}]}]}}
    w.kube.apply(theirs)
    # It decides what dashi's steps would open: serving reaches no data pod (no intended edge does).
    w.rollout().up(until="allow-dns")
    assert "policies that are not ours also apply here: no-serving-to-data" in w.out
    report = w.rollout().smoke()
    assert report.ok
    w.kube.calls.clear()
    w.rollout().rollback(to="default-deny")
    assert [p["metadata"]["name"] for p in w.kube.objects("ClusterNetworkPolicy")] == ["no-serving-to-data"]
    assert not [c for c in w.kube.calls if c.kind == "ClusterNetworkPolicy" and c.verb in ("apply", "delete")]


def test_k3s_refuses_a_profile_that_needs_cluster_network_policy_before_any_change(tmp_path):
    from support.local_world import add_flannel_annotation

    w = RolloutWorld(tmp_path, "dashi-cnp")
    add_flannel_annotation(w.kube)
    w.kube.calls.clear()
    with pytest.raises(DashiError, match=r"^profile dashi-cnp needs ClusterNetworkPolicy \(default-deny, allow-dns\), "
                                         r"which k3s's policy controller \(kube-router\) does not enforce"):
        w.rollout().up()
    assert not [c for c in w.kube.calls if c.verb in ("apply", "create", "delete")]


def test_without_the_crd_the_canary_says_so_and_nothing_is_applied(tmp_path):
    w = RolloutWorld(tmp_path, "dashi-cnp", cni="cilium")
    with pytest.raises(NotEnforced, match="the cluster does not serve ClusterNetworkPolicy .no CRD "
                                          "clusternetworkpolicies.policy.networking.k8s.io."):
        w.rollout().up()
    assert w.kube.objects("NetworkPolicy") == [] and w.kube.calls_of("apply", "ClusterNetworkPolicy") == []


def _canary(kube, **kw):
    return canary.run(kube, sleep=kube.clock.sleep, clock=kube.clock, cluster_policy=True, **kw)


def test_the_canary_proves_cluster_network_policy_with_an_admin_deny_over_the_allow():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, cni="cilium", kcnp_crd=True)
    result = _canary(kube)
    assert [p.name for p in result.phases] == ["before", "deny", "allow", "cluster-network-policy"]
    assert result.ok and canary.proves_cluster_policies(result.summary())
    assert canary.verdict(result, "cilium").endswith("→ blocked by an Admin ClusterNetworkPolicy Deny over the allow "
                                                     "(ClusterNetworkPolicy enforced)")
    assert kube.objects("ClusterNetworkPolicy") == []  # cluster-scoped: deleted by the canary itself
    plan = [what for what, _ in canary.plan(cluster_policy=True)]
    assert "the profile holds ClusterNetworkPolicies: apply an Admin Deny of the client over the allow" in plan


def test_a_cni_that_ignores_cluster_network_policy_fails_the_canary_loudly():
    clock = FakeClock()
    kube = FakeKube(clock=clock, sleep=clock.sleep, kcnp_crd=True, kcnp_enforced=False)
    result = _canary(kube)
    assert [p.observed for p in result.phases] == ["reachable", "blocked", "reachable", "reachable"]
    with pytest.raises(NotEnforced, match="CLUSTERNETWORKPOLICY IS NOT ENFORCED on this cluster"):
        canary.verdict(result, "k3s")
    assert kube.objects("ClusterNetworkPolicy") == []


def test_the_fake_api_server_refuses_what_the_crd_refuses():
    kube = FakeKube(kcnp_crd=True)
    bad = {"apiVersion": KCNP_API, "kind": "ClusterNetworkPolicy", "metadata": {"name": "bad"},
           "spec": {"tier": "Admin", "priority": 5000, "subject": {"namespaces": {}}}}
    with pytest.raises(Exception, match=r'ClusterNetworkPolicy.policy.networking.k8s.io "bad" is invalid: '
                                        r"spec.priority: 5000 is out of range 0-1000"):
        kube.apply(bad)
    assert FakeKube().kcnp_served() is False
    with pytest.raises(Exception, match="does not serve policy.networking.k8s.io/v1beta1 ClusterNetworkPolicy"):
        FakeKube().apply({**bad, "spec": {**bad["spec"], "priority": 5}})


def test_prepare_refuses_a_cluster_network_policy_profile_where_the_kind_is_not_served():
    from support.local_world import LocalWorld, recording_console, seed_cilium

    from cluster.live.setup import prepare

    w = LocalWorld(tools=())
    seed_cilium(w.kube)
    w.kube.calls.clear()
    console, _ = recording_console()
    with pytest.raises(DashiError, match=r"^profile dashi-cnp needs ClusterNetworkPolicy \(default-deny, allow-dns\), "
                                         r"which context prod does not serve \(no CRD clusternetworkpolicies"
                                         r"\.policy\.networking\.k8s\.io\): nothing was changed"):
        prepare.prepare("prod", profile="dashi-cnp", console=console, kube_factory=w.kube_factory,
                        runner=w.runner, sleep=w.clock.sleep, clock=w.clock, yes=True)
    assert not [c for c in w.kube.calls if c.verb in ("apply", "create", "delete", "update")]
    w.kube.install_kcnp_crd()
    res = prepare.prepare("prod", profile="dashi-cnp", console=console, kube_factory=w.kube_factory,
                          runner=w.runner, sleep=w.clock.sleep, clock=w.clock, yes=True)
    assert "ClusterNetworkPolicy enforced" in res["canary"]
