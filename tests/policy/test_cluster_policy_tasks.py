"""Every offline task speaks ClusterNetworkPolicy: the dashi-cnp profile
(dashi's intended matrix with a Baseline default-deny and Admin guardrails)
through policies-check, explain, the audit, reachability, policies-diff and
export, the cluster-scoped objects in their own Flux Kustomization."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster import yamlio
from cluster.cli import gitops, policy
from cluster.errors import ManifestError
from cluster.policy import analysis, fluxtree
from cluster.policy import diff as pdiff
from cluster.policy import export as pexport
from cluster.policy.manifests import read_dir
from cluster.policy.profile import MANIFESTS_DIR, load_profile
from cluster.policy.reachability import compute
from cluster.ui import make_console

KUBECTL = shutil.which("kubectl")


def allowed(report) -> set:
    return {e for e in report.verdicts if report.verdicts.allowed(e)}


@pytest.mark.parametrize("cni", [None, "cilium"])
def test_both_forms_of_dashi_give_the_intended_matrix(cni):
    plain, cnp = load_profile("dashi").for_cni(cni), load_profile("dashi-cnp").for_cni(cni)
    assert plain.intended_final() == cnp.intended_final()
    a, b = analysis.check(plain), analysis.check(cnp)
    assert a.ok and b.ok, (a.final, b.final, [s.differences for s in b.steps])
    assert allowed(a) == allowed(b) == {e for e, ok in plain.intended_final().items() if ok}
    # Step by step too: the same edges open at the same step names.
    assert [s.allowed for s in a.steps] == [s.allowed for s in b.steps]
    assert cnp.cluster_policy_steps == ["default-deny", "allow-dns"] and plain.cluster_policy_steps == []


def test_the_audit_reads_accept_rules_and_the_guardrails_warn_of_nothing():
    report = analysis.check(load_profile("dashi-cnp"))
    assert report.warnings == []
    # dashi's own finding (port-forward ingress from kube-system), no ClusterNetworkPolicy rule:
    assert all("allow-ingress-port-forward" in f for f in report.over_permissive)
    profile = load_profile("dashi-cnp").without(["allow-catalog-internal"])
    gap = analysis.check(profile)
    (diff,) = [d for d in gap.final if d.edge.dst == "dashi-catalog/pgstac" and d.intended]
    assert "DENIED by ClusterNetworkPolicy dashi-default-deny (Baseline, priority 100) rule 1 'deny-all'" \
        in diff.detail


def test_explain_names_tier_policy_priority_and_rule(capsys):
    code = policy.explain("dashi-cnp", "dashi-data/prefect-worker", "dashi-monitoring/prometheus", "9090", None)
    out = capsys.readouterr().out
    assert code == policy.BLOCKED_EXIT
    assert ("ingress of dashi-monitoring/prometheus: DENIED by ClusterNetworkPolicy monitoring-guardrail "
            "(Admin, priority 10) rule 2 'deny-all'") in out
    assert policy.explain("dashi-cnp", "dashi-data/debug", "kube-system/kube-dns", "dns/UDP", None, as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["egress"]["tier"] == "Admin" and doc["egress"]["decided_by"].startswith("ClusterNetworkPolicy dashi-dns")


def test_policies_check_json_carries_the_warnings(tmp_path, capsys):
    shutil.copytree(MANIFESTS_DIR / "dashi", tmp_path / "dashi")
    shutil.copytree(MANIFESTS_DIR / "dashi-cnp", tmp_path / "dashi-cnp")
    guard = tmp_path / "dashi-cnp/policies/02-admin-guardrails.yaml"
    guard.write_text(guard.read_text().replace("priority: 20", "priority: 10") + """---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: egress-to-nodes}
spec:
  tier: Admin
  priority: 30
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: dashi-data}}}
  egress:
    - {name: to-nodes, action: Accept, to: [{nodes: {}}]}
""")
    assert policy.policies_check(str(tmp_path / "dashi-cnp"), [], as_json=True) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("egress-to-nodes egress rule 1 'to-nodes': nodes {}: not modelled" in w for w in warnings)
    # monitoring-guardrail and debug-guardrail now share priority 10 and both deny the debug pod's scrapes
    assert any("debug-guardrail and ClusterNetworkPolicy monitoring-guardrail (Admin, priority 10)" in w
               or "monitoring-guardrail and ClusterNetworkPolicy debug-guardrail (Admin, priority 10)" in w
               for w in warnings), warnings


def test_reachability_reads_cluster_network_policies(tmp_path, capsys):
    (tmp_path / "app.yaml").write_text("""
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, image: i, ports: [{containerPort: 5432}]}]}
---
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: db-guard}
spec:
  tier: Admin
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
    - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
""")
    rs = read_dir(tmp_path, namespace="shop")
    assert rs.skipped == {}
    result = compute(rs)
    assert {(a["src"], a["dst"]) for a in result["allowed"]} == {("shop/db", "shop/api")}
    tcp = {(r["src"], r["dst"]): r["ports"] for r in result["ranges"] if r["protocol"] == "TCP"}
    assert tcp[("shop/api", "shop/db")] == [[1, 5431], [5433, 65535]]
    assert policy.reachability(str(tmp_path), namespace="shop") == 0
    assert "warning" not in capsys.readouterr().err


def test_a_cluster_network_policy_never_gets_a_namespace(tmp_path):
    (tmp_path / "p.yaml").write_text("""
apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: p, namespace: shop}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}}
""")
    with pytest.raises(ManifestError, match=r"p.yaml: ClusterNetworkPolicy p: metadata.namespace 'shop': a "
                                            r"ClusterNetworkPolicy is cluster-scoped"):
        read_dir(tmp_path / "p.yaml", check_namespaces=False)


def test_policies_diff_between_the_two_forms_and_a_guardrail_change(tmp_path):
    shutil.copytree(MANIFESTS_DIR / "dashi", tmp_path / "dashi")
    shutil.copytree(MANIFESTS_DIR / "dashi-cnp", tmp_path / "dashi-cnp")
    same = pdiff.diff(pdiff.load_side(tmp_path / "dashi"), pdiff.load_side(tmp_path / "dashi-cnp"))
    assert (same.opened, same.closed) == ([], [])
    assert "ClusterNetworkPolicy dashi-default-deny" in same.added and "dashi-data/default-deny" in same.removed
    old = pdiff.load_side(tmp_path / "dashi-cnp")
    dns = tmp_path / "dashi-cnp/policies/02-admin-guardrails.yaml"
    dns.write_text(dns.read_text().replace("- tcp: {destinationPort: {number: 53}}", ""))
    d = pdiff.diff(old, pdiff.load_side(tmp_path / "dashi-cnp"))
    assert d.changed == ["ClusterNetworkPolicy dashi-dns"] and d.opened == []
    assert {c.edge.protocol for c in d.closed} == {"TCP"} and all(c.edge.port == 53 for c in d.closed)
    debug = next(c for c in d.closed if c.edge.src == "dashi-data/debug")
    assert "ALLOWED by ClusterNetworkPolicy dashi-dns (Admin, priority 5) rule 1 'accept-dns'" in debug.before
    assert "DENIED by ClusterNetworkPolicy debug-guardrail (Admin, priority 20) rule 1 'deny-all'" in debug.after
    worker = next(c for c in d.closed if c.edge.src == "dashi-data/prefect-worker")
    assert "BLOCKED: selected by dashi-data/" in worker.after  # its NetworkPolicies decide its egress


def test_export_puts_cluster_scoped_steps_in_their_own_kustomization_first(tmp_path):
    gitops.export("dashi-cnp", out=str(tmp_path), console=make_console(io.StringIO()))
    cluster = tmp_path / pexport.CLUSTER_DIR
    assert sorted(p.name for p in cluster.iterdir()) == ["01-default-deny.yaml", "02-allow-dns.yaml",
                                                        "kustomization.yaml"]
    ks = yamlio.load((cluster / "kustomization.yaml").read_text())
    assert "namespace" not in ks and ks["resources"] == ["01-default-deny.yaml", "02-allow-dns.yaml"]
    for doc in yamlio.load_all((cluster / "02-allow-dns.yaml").read_text()):
        assert "namespace" not in doc["metadata"] and doc["metadata"]["labels"]["dashi.io/step"] == "allow-dns"
    base = sorted(p.name for p in (tmp_path / pexport.BASE_DIR).iterdir())
    assert base[0] == "03-allow-platform.yaml" and "01-default-deny.yaml" not in base
    wiring = list(yamlio.load_all((tmp_path / "flux/bootstrap/flux-system/infrastructure.yaml").read_text()))
    assert [(w["metadata"]["name"], [d["name"] for d in w["spec"].get("dependsOn", [])]) for w in wiring] == [
        ("namespaces", []), ("cluster-network-policies", ["namespaces"]),
        ("network-policies-dashi-cnp", ["cluster-network-policies"])]
    # What Flux applies is every policy of the profile, and policies-diff reads it back to the same matrix.
    profile = load_profile("dashi-cnp")
    _, applied = fluxtree.read_flux_tree(tmp_path)
    assert len(applied) == len(profile.policies_through(len(profile.steps)))
    d = pdiff.diff(pdiff.load_side(MANIFESTS_DIR / "dashi-cnp"), pdiff.load_side(tmp_path, "dashi-cnp"))
    assert (d.opened, d.closed, d.exit_code) == ([], [], 0)
    assert "cluster-scoped: +default-deny +allow-dns" in d.steps
    if KUBECTL:
        built = subprocess.run([KUBECTL, "kustomize", str(cluster)], capture_output=True, text=True, timeout=60)
        assert built.returncode == 0, built.stderr
        objs = [o for o in yamlio.load_all(built.stdout) if o]
        assert sorted(o["metadata"]["name"] for o in objs) == ["dashi-default-deny", "dashi-dns", "debug-guardrail",
                                                               "monitoring-guardrail"]
        assert all("namespace" not in o["metadata"] for o in objs)


def test_a_namespace_override_over_a_cluster_network_policy_is_refused(tmp_path):
    gitops.export("dashi-cnp", out=str(tmp_path), console=make_console(io.StringIO()))
    ks = tmp_path / pexport.CLUSTER_DIR / "kustomization.yaml"
    ks.write_text(ks.read_text() + "namespace: dashi-data\n")
    with pytest.raises(ManifestError, match="kustomize would write that namespace into this cluster-scoped object"):
        fluxtree.read_flux_tree(tmp_path)


def test_per_namespace_layouts_are_not_offered_with_cluster_scoped_steps():
    layout = pexport.choose_layout(load_profile("dashi-cnp"))
    assert not layout.per_namespace
    assert layout.reason.startswith("default-deny, allow-dns hold ClusterNetworkPolicies")


def test_profile_steps_may_hold_cluster_network_policies_but_checked(tmp_path):
    shutil.copytree(MANIFESTS_DIR / "dashi", tmp_path / "dashi")
    shutil.copytree(MANIFESTS_DIR / "dashi-cnp", tmp_path / "dashi-cnp")
    step = tmp_path / "dashi-cnp/policies/01-baseline-default-deny.yaml"
    step.write_text(step.read_text().replace("priority: 100", "priority: 1001"))
    with pytest.raises(ManifestError, match=r"01-baseline-default-deny.yaml: ClusterNetworkPolicy dashi-default-deny: "
                                            r"spec.priority: 1001 is out of range 0-1000"):
        load_profile(tmp_path / "dashi-cnp")


def test_dashi_cnp_reuses_dashis_files(tmp_path):
    profile = load_profile("dashi-cnp")
    dashi = Path(MANIFESTS_DIR / "dashi").resolve()
    assert all(s.path.resolve().parent == dashi / "policies" for s in profile.steps[2:])
    assert [s.name for s in profile.steps] == [s.name for s in load_profile("dashi").steps]
