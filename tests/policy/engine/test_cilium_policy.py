"""CiliumNetworkPolicy: the engine's subset, the profile's per-CNI step
variants, and the rollout choosing the variant on a Cilium cluster."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import yaml

from cluster.errors import DashiError, KubeError, ManifestError, VerificationFailed
from cluster.live.observe.cni import detect_cni
from cluster.live.record.policies import live_policies
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.evaluate import Engine
from cluster.policy.engine.model import Endpoint, Port
from cluster.policy.engine.predictions import predict
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.kube import FakeKube
from support.rollout_world import RolloutWorld

CNP_API = "cilium.io/v2"


def cnp(spec: dict, name: str = "api", ns: str = "a") -> dict:
    return {"apiVersion": CNP_API, "kind": "CiliumNetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": spec}


TO_API_6443 = {"endpointSelector": {"matchLabels": {"app": "a"}},
               "egress": [{"toEntities": ["kube-apiserver"],
                           "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]}]}
A = Endpoint("a/a", "a", "a", labels={"app": "a"}, ports=(Port("http", 80),))
B = Endpoint("a/b", "a", "b", labels={"app": "b"}, ports=(Port("http", 80),))
C = Endpoint("c/c", "c", "c", labels={"app": "a"}, ports=(Port("http", 80),))  # same labels, other namespace
API = Endpoint("external/kube-api", None, "kube-api", kind="external", ports=(Port("https", 6443),),
               ip="192.0.2.10", address_service="default/kubernetes")
OTHER = Endpoint("external/other", None, "other", kind="external", ports=(Port("https", 6443),), ip="192.0.2.11")
NAMESPACES = {"a": {}, "c": {}}


def allowed(engine, src, dst, port, protocol="TCP") -> bool:
    return engine.evaluate(src, dst, port, protocol).allowed


# -- the engine ------------------------------------------------------------------


def test_truth_case_egress_to_kube_apiserver_on_6443():
    e = Engine(NAMESPACES, [cnp(TO_API_6443)])
    assert allowed(e, A, API, 6443)
    assert not allowed(e, A, API, 443)
    assert not allowed(e, A, API, 6443, "UDP")
    assert not allowed(e, A, B, 80)  # selected for egress: default deny
    assert not allowed(e, A, OTHER, 6443)  # an address that is not the API server's
    # Not selected: unaffected.
    assert allowed(e, B, API, 443) and allowed(e, B, A, 80) and allowed(e, C, B, 80)
    v = e.evaluate(A, API, 443)
    assert "BLOCKED: selected by CiliumNetworkPolicy a/api" in v.egress.line(API.key, 443, "TCP")
    assert e.evaluate(A, API, 6443).egress.allowing == ("CiliumNetworkPolicy a/api egress rule 1",)


def test_matrix_computations_agree_with_evaluate():
    eps = [A, B, C, API, OTHER]
    e = Engine(NAMESPACES, [cnp(TO_API_6443)])
    matrix = e.allowed_matrix(eps)
    for d, dst in enumerate(eps):
        for q, port in enumerate(dst.ports):
            for s, src in enumerate(eps):
                assert bool(matrix[(d, q)] >> s & 1) == allowed(e, src, dst, port.port), (src.key, dst.key)
    ranges = {(d, proto): segs for d, proto, segs in e.port_ranges(eps)}
    api = eps.index(API)
    assert [(lo, hi) for lo, hi, bits in ranges[(api, "TCP")] if bits & 1] == [(6443, 6443)]


def test_any_protocol_and_no_ports():
    any_proto = cnp({"endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"],
                                                         "toPorts": [{"ports": [{"port": "443"}]}]}]})
    e = Engine(NAMESPACES, [any_proto])
    assert all(allowed(e, A, API, 443, p) for p in ("TCP", "UDP", "SCTP"))
    assert not allowed(e, B, API, 6443)  # {} selects every pod of the namespace
    every_port = cnp({"endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"]}]})
    e = Engine(NAMESPACES, [every_port])
    assert allowed(e, A, API, 1234, "UDP") and not allowed(e, A, B, 80)


def test_empty_egress_leaves_egress_alone():
    e = Engine(NAMESPACES, [cnp({"endpointSelector": {}, "egress": []})])
    assert allowed(e, A, B, 80) and e.evaluate(A, B, 80).egress.isolated is False


def test_allows_add_up_with_network_policies():
    np_to_b = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "to-b", "namespace": "a"},
               "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}}
    e = Engine(NAMESPACES, [cnp(TO_API_6443), np_to_b])
    assert allowed(e, A, B, 80) and allowed(e, A, API, 6443)
    assert not allowed(e, A, API, 443) and not allowed(e, A, OTHER, 6443)
    # An ipBlock of a NetworkPolicy still selects the API server by address
    # in the engine (the k8s form, kept for the other CNIs).
    deny_all = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "deny", "namespace": "a"},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    e = Engine(NAMESPACES, [deny_all, cnp(TO_API_6443)])
    assert allowed(e, A, API, 6443) and not allowed(e, B, API, 6443)


@pytest.mark.parametrize("spec, field", [
    ({"endpointSelector": {}, "ingress": [{}]}, "spec: ingress not supported"),
    ({"endpointSelector": {}, "egressDeny": [{}]}, "spec: egressDeny not supported"),
    ({"egress": [{"toEntities": ["kube-apiserver"]}]}, "spec.endpointSelector is required"),
    ({"endpointSelector": {}, "egress": [{"toEntities": ["world"]}]},
     "spec.egress[0].toEntities[0]: 'world' not supported (supported: kube-apiserver)"),
    ({"endpointSelector": {}, "egress": [{"toEntities": ["wrld"]}]},
     "spec.egress[0].toEntities[0]: 'wrld' is not a Cilium entity"),
    ({"endpointSelector": {}, "egress": [{"toEndpoints": [{}]}]}, "spec.egress[0]: toEndpoints not supported"),
    ({"endpointSelector": {}, "egress": [{"toPorts": [{"ports": [{"port": "80"}]}]}]},
     "spec.egress[0].toEntities must be a non-empty list"),
    ({"endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"],
                                          "toPorts": [{"ports": [{"port": 6443}]}]}]},
     "spec.egress[0].toPorts[0].ports[0].port must be a string"),
    ({"endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"],
                                          "toPorts": [{"ports": [{"port": "https"}]}]}]},
     "only a port number 1-65535 is supported"),
    ({"endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"],
                                          "toPorts": [{"ports": [{"port": "80", "protocol": "ICMP"}]}]}]},
     "spec.egress[0].toPorts[0].ports[0].protocol 'ICMP' not supported"),
    ({"endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"],
                                          "toPorts": [{"ports": [{"port": "80"}], "rules": {"http": []}}]}]},
     "spec.egress[0].toPorts[0]: rules not supported"),
    ({"endpointSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}, "egress": []},
     "spec.endpointSelector.matchExpressions[0]"),
    ("not a mapping", "spec must be a mapping"),
])
def test_bad_cnp_is_one_line_naming_file_object_and_field(spec, field):
    with pytest.raises(ManifestError) as err:
        compile_policy(cnp(spec, name="x", ns="dashi-data"), "policies/09.cilium.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("policies/09.cilium.yaml: CiliumNetworkPolicy dashi-data/x: ")
    assert field in msg


def test_specs_and_wrong_api_version_are_refused():
    obj = cnp(TO_API_6443)
    obj["specs"] = [TO_API_6443]
    with pytest.raises(ManifestError, match="specs not supported"):
        compile_policy(obj)
    obj = cnp(TO_API_6443)
    obj["apiVersion"] = "cilium.io/v1"
    with pytest.raises(ManifestError, match="apiVersion must be cilium.io/v2"):
        compile_policy(obj)


# -- the profile's variants ----------------------------------------------------------


def test_the_dashi_kube_api_step_has_a_cilium_variant():
    profile = load_profile("dashi")
    step = profile.steps[-1]
    assert step.name == "allow-kube-api" and [o["kind"] for o in step.objects] == ["NetworkPolicy"]
    cilium = profile.for_cni("cilium")
    assert cilium.cni == "cilium" and cilium.steps[-1].cni == "cilium"
    assert [o["kind"] for o in cilium.steps[-1].objects] == ["CiliumNetworkPolicy"]
    assert cilium.steps[-1].path.name == "09-allow-kube-api.cilium.yaml"
    assert cilium.steps[:-1] == profile.steps[:-1]
    for other in ("calico", "k3s", "none", None):
        assert profile.for_cni(other).steps == profile.steps
    # Both forms predict the same matrix, which is the intended one.
    for form in (profile, cilium):
        assert {e: v.allowed for e, v in predict(form).items()} == form.intended_after(len(form.steps))


def test_a_bad_variant_is_one_line_naming_the_file(copy_dashi):
    path = copy_dashi / "policies" / "09-allow-kube-api.cilium.yaml"
    path.write_text(path.read_text().replace("[kube-apiserver]", "[world]"))
    with pytest.raises(ManifestError) as err:
        load_profile(copy_dashi)
    assert str(err.value) == (f"{path}: CiliumNetworkPolicy dashi-data/allow-kube-api: spec.egress[0].toEntities[0]: "
                              "'world' not supported (supported: kube-apiserver)")


def test_a_cnp_belongs_in_a_cilium_variant(copy_dashi):
    plain = copy_dashi / "policies" / "09-allow-kube-api.yaml"
    shutil.copy(copy_dashi / "policies" / "09-allow-kube-api.cilium.yaml", plain)
    with pytest.raises(ManifestError, match="a policy step holds NetworkPolicies or ClusterNetworkPolicies only, not CiliumNetworkPolicy "
                                            r"\(a CiliumNetworkPolicy belongs in a cilium variant\)"):
        load_profile(copy_dashi)


def test_variants_are_named_by_cni(copy_dashi):
    meta = copy_dashi / "profile.yaml"
    meta.write_text(meta.read_text().replace("variants: {cilium:", "variants: {cilum:"))
    with pytest.raises(ManifestError, match="profile.yaml"):
        load_profile(copy_dashi)


# -- the live layer on a fake Cilium cluster -------------------------------------------


def test_cilium_is_detected_by_its_ciliumnodes():
    assert detect_cni(FakeKube(cni="cilium")) == "cilium"
    assert detect_cni(FakeKube()) == "none"


def test_without_the_crd_nothing_is_listed_and_an_apply_fails():
    kube = FakeKube()
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}})
    assert live_policies(kube, ["a"]) == []
    with pytest.raises(KubeError, match="does not serve cilium.io/v2 CiliumNetworkPolicy"):
        kube.apply(cnp(TO_API_6443))


def test_the_rollout_applies_the_cilium_variant_and_verifies_every_step(tmp_path):
    w = RolloutWorld(tmp_path, "dashi", cni="cilium")
    w.rollout().up()
    assert "[9/9] allow-kube-api (seed, 09-allow-kube-api.cilium.yaml, the cilium form)" in w.out
    assert "applied 1 policy: CiliumNetworkPolicy dashi-data/allow-kube-api" in w.out
    assert "[9/9] allow-kube-api: verified" in w.out
    (live,) = w.kube.objects("CiliumNetworkPolicy")
    assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dashi-cluster"
    assert live["metadata"]["annotations"]["dashi.io/step"] == "allow-kube-api"
    assert "allow-kube-api" not in {p["metadata"]["name"] for p in w.kube.objects("NetworkPolicy")}
    rec = w.record()
    assert [s["summary"]["predicted_allowed"] for s in rec["steps"]][-1] == 45
    assert all(s["summary"]["mismatch"] == 0 for s in rec["steps"])
    # The snapshot before the rollback holds the CNP; a rollback removes it and a re-run puts it back.
    w.rollout().rollback(to="allow-ingress-port-forward")
    assert w.kube.objects("CiliumNetworkPolicy") == []
    w.rollout().rollback(to="baseline")
    assert w.kube.objects("CiliumNetworkPolicy") == [] and not w.ours()
    w.rollout().up()
    assert len(w.kube.objects("CiliumNetworkPolicy")) == 1


def test_a_changed_cnp_is_drift(tmp_path):
    w = RolloutWorld(tmp_path, "dashi", cni="cilium")
    w.rollout().up()
    (live,) = w.kube.objects("CiliumNetworkPolicy")
    live["spec"]["egress"][0]["toPorts"][0]["ports"] = [{"port": "443", "protocol": "TCP"}]
    for key in ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation"):
        live["metadata"].pop(key)
    w.kube.apply(live)
    from cluster.live.record.drift import drift
    from cluster.live.record.policies import is_ours

    ours = [p for p in live_policies(w.kube, w.profile.profile_namespaces) if is_ours(p)]
    assert drift(w.profile.for_cni("cilium"), 9, ours) == ["CiliumNetworkPolicy dashi-data/allow-kube-api changed"]


def test_the_ipblock_form_fails_on_cilium_and_is_rolled_back(tmp_path):
    """What the variant is for: on Cilium the plain ipBlock step (0.0.0.0/0
    except the pod and service CIDRs) opens nothing towards the API server,
    as the engine predicts for that dataplane (a /0 is Cilium's world
    identity, not the node's address): the step differs from its intent."""
    w = RolloutWorld(tmp_path, "dashi", cni="cilium")
    plain = load_profile("dashi")
    no_variants = replace(plain, steps=[replace(s, variants={}) for s in plain.steps])
    with pytest.raises(VerificationFailed, match="step allow-kube-api rolled back"):
        w.rollout(no_variants).up()
    assert "dashi-data/prefect-worker -> external/kube-api 6443/TCP: unintended" in w.out
    assert "predicted (engine): blocked" in w.out
    assert w.kube.objects("CiliumNetworkPolicy") == []


def test_other_cnis_get_the_ipblock_form(tmp_path):
    w = RolloutWorld(tmp_path, "dashi")
    w.rollout().up()
    assert w.kube.objects("CiliumNetworkPolicy") == []
    assert "allow-kube-api" in {p["metadata"]["name"] for p in w.kube.objects("NetworkPolicy")}


def test_a_snapshot_holding_a_cnp_loads_back(tmp_path):
    w = RolloutWorld(tmp_path, "dashi", cni="cilium")
    w.rollout().up()
    w.rollout().rollback(to="baseline")
    snaps = sorted((w.pdir / "snapshots").glob("0*-before-rollback.yaml"))
    doc = yaml.safe_load(snaps[-1].read_text())
    assert [p["kind"] for p in doc["policies"]].count("CiliumNetworkPolicy") == 1
    assert doc["applied"][-1] == "allow-kube-api"


# -- offline commands: the plain form unless told a CNI -----------------------------


def test_offline_explain_reads_the_form_for_a_cni(capsys):
    from cluster.cli import policy

    args = ("dashi", "dashi-data/prefect-worker", "external/kube-api", "6443", None)
    assert policy.explain(*args) == 0
    assert "allowed by dashi-data/allow-kube-api egress rule 1" in capsys.readouterr().out
    assert policy.explain(*args, cni="cilium") == 0
    assert "allowed by CiliumNetworkPolicy dashi-data/allow-kube-api egress rule 1" in capsys.readouterr().out
    assert policy.explain("dashi", "dashi-data/debug", "external/kube-api", "6443", None,
                          cni="cilium") == policy.BLOCKED_EXIT
    with pytest.raises(DashiError, match=r"--cni: unknown value 'cilum' \(calico, cilium, k3s\)"):
        policy.explain(*args, cni="cilum")
    assert policy.policies_check("dashi", [], quiet=True, cni="cilium") == 0


def test_a_variant_may_reuse_its_steps_names_but_no_other_steps(copy_dashi):
    assert load_profile(copy_dashi)  # 09's variant reuses allow-kube-api: its own step's name
    # A variant of step 1 holding step 9's policy: the later step collides with it.
    shutil.copy(copy_dashi / "policies" / "09-allow-kube-api.yaml", copy_dashi / "policies" / "01.k3s.yaml")
    meta = copy_dashi / "profile.yaml"
    meta.write_text(meta.read_text().replace("file: policies/01-default-deny.yaml,",
                                             "file: policies/01-default-deny.yaml, variants: {k3s: policies/01.k3s.yaml},"))
    with pytest.raises(ManifestError, match=r"09-allow-kube-api.yaml: NetworkPolicy dashi-data/allow-kube-api: "
                                            r"duplicate NetworkPolicy \(also in .*01.k3s.yaml\)"):
        load_profile(copy_dashi)


def test_a_profile_without_variants_is_still_predicted_as_cilium_behaves():
    # The environments profile has no step variant; on Cilium an ipBlock
    # selects no pod all the same, so an ipBlock allowing a pod's address
    # must be predicted closed there and open elsewhere.
    profile = load_profile("environments")
    assert not profile.has_variants
    src = next(ep for ep in profile.endpoints if ep.key == "develop/frontend")
    dst = next(ep for ep in profile.endpoints if ep.key == "develop/backend")
    dst = replace(dst, ip="10.42.0.77")
    allow = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "to-backend-by-address", "namespace": "develop"},
             "spec": {"podSelector": {"matchLabels": dict(src.labels)}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"ipBlock": {"cidr": "10.42.0.77/32"}}]}]}}
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "develop"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    endpoints = [dst if ep.key == dst.key else ep for ep in profile.endpoints]
    edge = next(e for e in profile.with_endpoints(endpoints).edges()
                if e.src == src.key and e.dst == dst.key)
    assert profile.for_cni("cilium").cni == "cilium"
    assert predict(profile.for_cni("cilium"), [deny, allow], endpoints)[edge].allowed is False
    assert predict(profile.for_cni("k3s"), [deny, allow], endpoints)[edge].allowed is True
