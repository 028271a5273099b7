"""The shipped profiles, the offline check, explain and their bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.errors import ManifestError
from cluster.policy.analysis import check, explain
from cluster.policy.engine.model import Edge
from cluster.policy.engine.predictions import predict
from cluster.policy.profile import load_profile

DASHI_NS = ["dashi-platform", "dashi-catalog", "dashi-data", "dashi-serving", "dashi-monitoring"]
SEED_ORDER = ["default-deny", "allow-dns", "allow-platform", "allow-catalog", "allow-catalog-internal",
              "allow-data-internal", "allow-monitoring", "allow-ingress-port-forward", "allow-kube-api"]


@pytest.fixture(scope="module")
def dashi():
    return load_profile("dashi")


def allowed_set(verdicts) -> set[Edge]:
    return {e for e, v in verdicts.items() if v.allowed}


def test_dashi_steps_in_the_careful_order(dashi):
    assert [s.name for s in dashi.steps] == SEED_ORDER
    assert [s.name for s in dashi.steps if s.origin == "added"] == ["allow-catalog-internal"]
    assert dashi.profile_namespaces == DASHI_NS


def test_dashi_final_matrix_is_exactly_the_intended_one(dashi):
    final = allowed_set(predict(dashi))
    intended = {e for e, ok in dashi.intended_final().items() if ok}
    assert final == intended
    # 14 pods x DNS over UDP and TCP, plus the 17 service edges below.
    dns = {e for e in final if e.dst == "kube-system/kube-dns"}
    assert len(dns) == 28
    assert final - dns == {
        Edge("dashi-platform/rustfs", "dashi-platform/rustfs", 9000),
        Edge("dashi-data/prefect-worker", "dashi-platform/rustfs", 9000),
        Edge("dashi-data/flow-run", "dashi-platform/rustfs", 9000),
        Edge("dashi-serving/titiler", "dashi-platform/rustfs", 9000),
        Edge("dashi-serving/duckdb", "dashi-platform/rustfs", 9000),
        Edge("dashi-data/flow-run", "dashi-catalog/stac-fastapi", 8080),
        Edge("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432),
        Edge("dashi-data/prefect-worker", "dashi-data/prefect-server", 4200),
        Edge("dashi-data/flow-run", "dashi-data/prefect-server", 4200),
        Edge("dashi-monitoring/prometheus", "dashi-platform/rustfs", 9100),
        Edge("dashi-monitoring/prometheus", "dashi-catalog/stac-fastapi", 9100),
        Edge("dashi-monitoring/prometheus", "dashi-catalog/pgstac", 9187),
        Edge("dashi-monitoring/prometheus", "dashi-data/prefect-server", 9100),
        Edge("dashi-monitoring/prometheus", "dashi-data/prefect-worker", 9100),
        Edge("dashi-monitoring/prometheus", "dashi-serving/titiler", 9100),
        Edge("dashi-monitoring/prometheus", "dashi-serving/duckdb", 9100),
        Edge("dashi-data/prefect-worker", "external/kube-api", 6443),
    }


def test_debug_pods_reach_only_dns(dashi):
    final = allowed_set(predict(dashi))
    for ns in DASHI_NS:
        out = {(e.dst, e.port, e.protocol) for e in final if e.src == f"{ns}/debug"}
        assert out == {("kube-system/kube-dns", 53, "UDP"), ("kube-system/kube-dns", 53, "TCP")}
        assert not any(e.dst == f"{ns}/debug" for e in final)


def test_nothing_reaches_monitoring_and_only_the_api_reaches_postgres(dashi):
    final = allowed_set(predict(dashi))
    assert not any(e.dst.startswith("dashi-monitoring/") for e in final)
    assert {e.src for e in final if e.dst == "dashi-catalog/pgstac" and e.port == 5432} == \
        {"dashi-catalog/stac-fastapi"}
    assert not any(e.src.startswith("dashi-serving/") and e.dst.split("/")[0] in ("dashi-catalog", "dashi-data")
                   for e in final)


def test_check_passes_for_shipped_profiles_and_steps_open_only_their_edges():
    for name in ("dashi", "environments"):
        report = check(load_profile(name))
        assert report.final == [], name
        assert all(s.differences == [] for s in report.steps), name
        assert report.ok
    report = check(load_profile("dashi"))
    assert [s.allowed for s in report.steps] == [0, 28, 33, 34, 35, 37, 44, 44, 45]


def test_audit_flags_the_port_forward_rule_only(dashi):
    report = check(dashi)
    assert report.over_permissive == [
        f"{ns}/allow-ingress-port-forward ingress rule 1 "
        "(namespaces {kubernetes.io/metadata.name=kube-system} on any port) allows no intended edge of the matrix"
        for ns in DASHI_NS
    ]


def test_seed_files_alone_break_the_catalog_database_edge(dashi):
    seed_only = dashi.without(["allow-catalog-internal"])
    report = check(seed_only)
    assert not report.ok
    assert [d.edge for d in report.final] == [Edge("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432)]
    d = report.final[0]
    assert d.intended is True and d.predicted is False
    assert "step allow-catalog-internal is not in the applied set" in d.detail
    assert "no egress rule for dashi-catalog/stac-fastapi" in d.detail
    assert "no ingress rule for dashi-catalog/pgstac" in d.detail


def test_intended_after_each_step(dashi):
    base = dashi.intended_after(0)
    assert all(base.values()) and len(base) == len(dashi.edges()) == 240
    assert not any(dashi.intended_after(1).values())
    after_dns = {e for e, ok in dashi.intended_after(2).items() if ok}
    assert len(after_dns) == 28 and all(e.dst == "kube-system/kube-dns" for e in after_dns)


def test_edges_leave_out_self_unless_replicated(dashi):
    edges = dashi.edges()
    assert Edge("dashi-platform/rustfs", "dashi-platform/rustfs", 9000) in edges  # 2 replicas
    assert not any(e.src == e.dst == "dashi-catalog/stac-fastapi" for e in edges)
    assert not any(e.src.startswith("kube-system/") or e.src.startswith("external/") for e in edges)


def test_environments_profile():
    env = load_profile("environments")
    final = allowed_set(predict(env))
    for ns in ("develop", "staging", "production"):
        for app, port in (("frontend", 3000), ("backend", 8080)):
            assert {e.src for e in final if e.dst == f"{ns}/{app}"} == {"ingress-nginx/ingress-nginx-controller"}
            assert Edge("ingress-nginx/ingress-nginx-controller", f"{ns}/{app}", port) in final
        out = {(e.dst, e.protocol) for e in final if e.src == f"{ns}/debug"}
        assert out == {("kube-system/kube-dns", "UDP"), ("kube-system/kube-dns", "TCP")}
    # the ingress namespace's own debug pod is kept out of the environments
    assert not any(e.src == "ingress-nginx/debug" and e.dst.split("/")[0] in ("develop", "staging", "production")
                   for e in final)


def test_explain_names_policies_on_each_side(dashi):
    v = explain(dashi, "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080")
    assert not v.allowed
    assert v.egress.selecting == ("dashi-serving/default-deny", "dashi-serving/allow-dns",
                                  "dashi-serving/allow-platform-s3")
    assert v.ingress.selecting == ("dashi-catalog/default-deny", "dashi-catalog/allow-catalog",
                                   "dashi-catalog/allow-monitoring", "dashi-catalog/allow-ingress-port-forward")
    ok = explain(dashi, "dashi-data/flow-run", "dashi-catalog/stac-fastapi", "http")
    assert ok.allowed
    assert ok.egress.allowing == ("dashi-data/allow-catalog-stac egress rule 1",)
    assert ok.ingress.allowing == ("dashi-catalog/allow-catalog ingress rule 1",)
    udp = explain(dashi, "dashi-data/debug", "kube-system/kube-dns", "53/udp")
    assert udp.allowed and udp.protocol == "UDP"
    early = explain(dashi, "dashi-data/flow-run", "dashi-catalog/stac-fastapi", "8080", upto="allow-platform")
    assert not early.allowed
    host = explain(dashi, "host", "dashi-monitoring/prometheus", "9090")
    assert host.allowed and "always allowed" in host.ingress.note


@pytest.mark.parametrize("args, message", [
    (("nope/x", "dashi-catalog/pgstac", "5432"), "no endpoint 'nope/x'"),
    (("dashi-data/flow-run", "dashi-catalog/pgstac", "5432/icmp"), "invalid protocol 'ICMP'"),
    (("dashi-data/flow-run", "dashi-catalog/pgstac", "70000"), "port 70000 out of range"),
    (("dashi-data/flow-run", "dashi-catalog/pgstac", "nosuch"), "has no port named 'nosuch'"),
])
def test_explain_bad_input(dashi, args, message):
    with pytest.raises(ManifestError, match=message):
        explain(dashi, *args)


def test_unknown_profile():
    with pytest.raises(ManifestError, match=r"unknown profile 'nope' \(known: dashi, dashi-cnp, environments\)"):
        load_profile("nope")


# ---------------------------------------------------------------------------
# Bad input in a profile: one line naming the file and the object.


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("rel, old, new, message", [
    ("policies/03-allow-platform.yaml", "operator: In", "operator: Within",
     r"03-allow-platform.yaml: NetworkPolicy dashi-platform/allow-platform: .*invalid operator 'Within'"),
    ("policies/03-allow-platform.yaml", "- {protocol: TCP, port: 9000}",
     "- {protocol: TCP, port: 9000, endPort: 8000}",
     r"NetworkPolicy dashi-data/allow-platform-s3: spec.egress\[0\].ports\[0\]: endPort 8000 must be"),
    ("policies/04-allow-catalog.yaml", "- {protocol: TCP, port: http}", "- {protocol: TCP, port: http, endPort: 9000}",
     r"NetworkPolicy dashi-catalog/allow-catalog: .*endPort needs a numeric port"),
    ("policies/06-allow-data-internal.yaml", "namespace: dashi-data", "namespace: dashi-dta",
     r"06-allow-data-internal.yaml: NetworkPolicy dashi-dta/allow-data-internal: namespace 'dashi-dta' does not exist"),
    ("policies/09-allow-kube-api.yaml", "name: allow-kube-api", "name: allow-data-internal",
     r"09-allow-kube-api.yaml: NetworkPolicy dashi-data/allow-data-internal: duplicate NetworkPolicy \(also in"),
    ("policies/02-allow-dns.yaml", "kind: NetworkPolicy", "kind: NetworkPolicyy",
     r"02-allow-dns.yaml: NetworkPolicyy dashi-platform/allow-dns: a policy step holds NetworkPolicies or ClusterNetworkPolicies only"),
    ("workloads/serving.yaml", "kind: Deployment", "kind: Deploymnet",
     r"serving.yaml: Deploymnet dashi-serving/titiler: unknown kind 'Deploymnet'"),
    ("workloads/serving.yaml", "name: duckdb\n  namespace: dashi-serving\n  labels: {app.kubernetes.io/name: duckdb, "
     "app.kubernetes.io/part-of: dashi}\nspec:\n  replicas",
     "name: titiler\n  namespace: dashi-serving\n  labels: {app.kubernetes.io/name: duckdb, "
     "app.kubernetes.io/part-of: dashi}\nspec:\n  replicas",
     r"serving.yaml: Deployment dashi-serving/titiler: duplicate Deployment \(also in"),
    ("workloads/catalog.yaml", "  namespace: dashi-catalog\n  labels: {app.kubernetes.io/name: pgstac, "
     "app.kubernetes.io/part-of: dashi}\nspec:\n  serviceName",
     "  namespace: dashi-katalog\n  labels: {app.kubernetes.io/name: pgstac, "
     "app.kubernetes.io/part-of: dashi}\nspec:\n  serviceName",
     r"catalog.yaml: StatefulSet dashi-katalog/pgstac: namespace 'dashi-katalog' does not exist"),
    ("policies/01-default-deny.yaml", "policyTypes: [Ingress, Egress]\n", "policyTypes: [Ingress, Egress\n",
     r"01-default-deny.yaml: invalid YAML: line \d+: "),
    ("matrix.yaml", "step: allow-catalog\n", "step: allow-katalog\n",
     r"matrix.yaml: allowed\[\d+\]: step 'allow-katalog' is not a step of the profile"),
    ("matrix.yaml", "to: dashi-catalog/pgstac", "to: dashi-catalog/pgstak",
     r"matrix.yaml: allowed\[\d+\]: 'dashi-catalog/pgstak' matches no endpoint"),
])
def test_bad_input_names_file_and_object(copy_dashi, rel, old, new, message):
    _edit(copy_dashi / rel, old, new)
    with pytest.raises(ManifestError, match=message) as err:
        load_profile(copy_dashi)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------
# Loaded again in the same process: the same files give a copy, a changed one
# is read again.


def test_a_profile_loaded_again_is_a_copy_of_its_own(copy_dashi):
    first = load_profile(copy_dashi)
    first.steps.pop()
    first.workload_objects[0]["metadata"]["name"] = "changed-by-a-caller"
    second = load_profile(copy_dashi)
    assert len(second.steps) == len(first.steps) + 1
    assert second.workload_objects[0]["metadata"]["name"] != "changed-by-a-caller"
    assert second == load_profile(copy_dashi) and second is not load_profile(copy_dashi)


def test_a_profile_file_changed_between_loads_is_read_again(copy_dashi):
    before = load_profile(copy_dashi)
    _edit(copy_dashi / "matrix.yaml", "to: dashi-catalog/pgstac", "to: dashi-catalog/pgstak")
    with pytest.raises(ManifestError, match=r"'dashi-catalog/pgstak' matches no endpoint"):
        load_profile(copy_dashi)
    _edit(copy_dashi / "matrix.yaml", "to: dashi-catalog/pgstak", "to: dashi-catalog/pgstac")
    assert load_profile(copy_dashi) == before
    # The same length, the same second: only the text tells them apart.
    step = copy_dashi / "policies" / "01-default-deny.yaml"
    text = step.read_text()
    step.write_text(text.replace("name: default-deny", "name: default-denx", 1))
    assert load_profile(copy_dashi).steps[0].objects[0]["metadata"]["name"] == "default-denx"
