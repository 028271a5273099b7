"""`inv policies-diff`: what a policy change does to connectivity."""

from __future__ import annotations

import io
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from support import cli_process
from cluster.cli import gitops
from cluster.errors import ManifestError
from cluster.policy import diff as pdiff
from cluster.policy import fluxtree
from cluster.policy.analysis import check
from cluster.policy.engine.model import Edge
from cluster.policy.engine.predictions import predict
from cluster.policy.profile import load_profile
from cluster.ui import make_console
from support import ROOT

NP = "flux/infrastructure/network-policies"
CATALOG_DB = Edge("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP")


def export(out: Path, profile="dashi", until: list[str] | None = None) -> Path:
    gitops.export(profile, out=str(out), until=until or [], console=make_console(io.StringIO()))
    return out


def run_diff(old, new, **kw) -> tuple[int, str]:
    buf = io.StringIO()
    code = gitops.policies_diff(str(old), str(new), console=make_console(buf), **kw)
    return code, buf.getvalue()


def without_catalog_internal(src: Path, dst: Path) -> Path:
    """The reviewer's case: a pull request deletes the allow-catalog-internal step."""
    shutil.copytree(src, dst)
    (dst / NP / "base/05-allow-catalog-internal.yaml").unlink()
    ks = dst / NP / "base/kustomization.yaml"
    ks.write_text("".join(line for line in ks.read_text().splitlines(True) if "05-allow-catalog" not in line))
    return dst


@pytest.mark.parametrize("name", ["dashi", "environments"])
def test_the_bitset_matrix_equals_the_engine_per_edge(name):
    profile = load_profile(name)
    for k in range(len(profile.steps) + 1):
        policies = profile.policies_through(k)
        assert pdiff.allowed_edges(profile, policies) == \
            {e for e, v in predict(profile, policies).items() if v.allowed}


def test_removing_allow_catalog_internal_closes_the_catalog_database(tmp_path):
    old = export(tmp_path / "old")
    new = without_catalog_internal(old, tmp_path / "new")
    code, out = run_diff(old, new, json_path=str(tmp_path / "d.json"), markdown_path=str(tmp_path / "d.md"))
    assert code == 0  # closing is not opening: the exit code guards what a change lets through
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["opened"] == []
    assert [(c["src"], c["dst"], c["port"], c["protocol"], c["intended"]) for c in data["closed"]] == [
        ("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP", True)]
    closed = data["closed"][0]
    assert "allowed by dashi-catalog/allow-catalog-internal ingress rule 1" in closed["before"]
    assert "ingress of dashi-catalog/pgstac: BLOCKED: selected by dashi-catalog/default-deny" in closed["after"]
    assert data["unchanged"] == {"allowed": 44, "blocked": 195} and data["edges"] == 240
    assert data["policies"]["removed"] == ["dashi-catalog/allow-catalog-db-egress",
                                           "dashi-catalog/allow-catalog-internal"]
    assert data["steps"] == ["dashi-catalog: -allow-catalog-internal"]
    assert data["intended_closed"] == 1 and data["exit_code"] == 0
    assert "0 opened, 1 closed, 239 unchanged (44 allowed, 195 blocked) of 240 edges" in out
    assert "dashi-catalog/stac-fastapi -> dashi-catalog/pgstac 5432/TCP  intended: yes: breaks intended traffic" \
        in out
    md = (tmp_path / "d.md").read_text()
    assert md.startswith(f"### NetworkPolicy connectivity: `{old}` → `{new}`")
    assert "**0 opened, 1 closed, 239 unchanged**" in md
    assert "| `dashi-catalog/stac-fastapi` | `dashi-catalog/pgstac` | 5432/TCP | yes: breaks intended traffic |" \
        in md


def test_profile_directories_compare_the_same_way(tmp_path):
    old = ROOT / "manifests/dashi"
    new = tmp_path / "dashi"
    shutil.copytree(old, new)
    f = new / "policies/05-allow-catalog-internal.yaml"
    f.write_text(f.read_text().replace("port: postgres", "port: 5433"))  # the port typo of the e2e test
    code, out = run_diff(old, new)
    d = pdiff.diff(pdiff.load_side(old), pdiff.load_side(new))
    assert code == 0 and [c.edge for c in d.closed] == [CATALOG_DB] and d.opened == []
    assert d.changed == ["dashi-catalog/allow-catalog-internal"]


def _open_serving_to_catalog(tmp_path: Path) -> tuple[Path, Path]:
    old = export(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    extra = new / NP / "base/10-debug-shortcut.yaml"
    extra.write_text(textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: serving-to-catalog, namespace: dashi-catalog}
        spec:
          podSelector: {matchLabels: {app.kubernetes.io/name: stac-fastapi}}
          policyTypes: [Ingress]
          ingress:
            - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dashi-serving}}}]
              ports: [{port: 8080}]
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: serving-out, namespace: dashi-serving}
        spec:
          podSelector: {matchLabels: {app.kubernetes.io/name: titiler}}
          policyTypes: [Egress]
          egress: [{ports: [{port: 8080}]}]
        """))
    ks = new / NP / "base/kustomization.yaml"
    ks.write_text(ks.read_text() + "  - 10-debug-shortcut.yaml\n")
    return old, new


def test_opening_an_edge_the_matrix_forbids_exits_3(tmp_path):
    old, new = _open_serving_to_catalog(tmp_path)
    code, out = run_diff(old, new, markdown_path=str(tmp_path / "d.md"))
    assert code == pdiff.EXIT_UNINTENDED == 3
    assert "1 opened, 0 closed" in out
    assert "dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP  intended: NO: not in the intended matrix" \
        in out
    assert "FAIL: 1 opened edge(s) are not in the intended matrix of profile dashi (exit 3)" in out
    assert "allowed by dashi-serving/serving-out egress rule 1; ingress of dashi-catalog/stac-fastapi: allowed " \
           "by dashi-catalog/serving-to-catalog ingress rule 1" in out
    md = (tmp_path / "d.md").read_text()
    assert ":x: FAIL" in md and "NO: not in the intended matrix" in md


def test_format_json_prints_the_same_document(tmp_path, capsys):
    old, new = _open_serving_to_catalog(tmp_path)
    code = gitops.policies_diff(str(old), str(new), fmt="json", json_path=str(tmp_path / "d.json"))
    printed = json.loads(capsys.readouterr().out)
    assert code == 3 and printed == json.loads((tmp_path / "d.json").read_text())
    assert printed["unintended_opened"] == 1 and printed["exit_code"] == 3
    with pytest.raises(Exception, match="unknown format 'yaml'"):
        gitops.policies_diff(str(old), str(new), fmt="yaml")


@pytest.mark.parametrize("name", ["dashi", "environments"])
def test_step_by_step_diffs_match_policies_check(tmp_path, name):
    """Each exported step diffed against the one before opens and closes what
    policies-check says the step opens and closes."""
    profile = load_profile(name)
    report = check(profile)
    prev = None
    for k, step in enumerate(profile.steps, 1):
        out = export(tmp_path / f"{k:02d}", profile, [step.name])
        if prev is not None:
            d = pdiff.diff(pdiff.load_side(prev, profile), pdiff.load_side(out, profile))
            before, after = report.steps[k - 2].verdicts, report.steps[k - 1].verdicts
            assert {c.edge for c in d.opened} == {e for e, v in after.items() if v.allowed and not before[e].allowed}
            assert {c.edge for c in d.closed} == {e for e, v in after.items() if before[e].allowed and not v.allowed}
            assert d.exit_code == 0 and not d.unintended
        prev = out


def test_different_workloads_are_not_a_policy_change(tmp_path):
    old = ROOT / "manifests/dashi"
    new = tmp_path / "dashi"
    shutil.copytree(old, new)
    w = new / "workloads/serving.yaml"
    w.write_text(w.read_text().replace("dashi.io/s3-client", "dashi.io/s3-reader", 1))
    with pytest.raises(pdiff.NotComparable) as err:
        run_diff(old, new)
    assert err.value.exit_code == 2
    assert "keep policy changes apart from application changes" in str(err.value)
    assert "labels, ports or replicas differ: dashi-serving/" in str(err.value)


def test_plain_manifests_have_no_intent(tmp_path):
    from support.manifest_trees import RESOURCES, write

    old = write(tmp_path / "old", {k: v for k, v in RESOURCES.items() if not k.startswith("policies/")})
    new = write(tmp_path / "new", RESOURCES)
    code, out = run_diff(old, new)
    assert code == 0
    assert "no intended matrix applies" in out
    d = pdiff.diff(pdiff.load_side(old), pdiff.load_side(new))
    assert d.profile is None and d.opened == []
    # web's three replicas keep talking to each other; only db's ingress is now restricted.
    assert {c.edge for c in d.closed} == {Edge("ops/prom", "shop/db", 5432, "TCP")}
    assert all(c.intended is None for c in d.closed)


def test_a_directory_of_policies_only_uses_the_profile_workloads(tmp_path):
    new = tmp_path / "policies"
    shutil.copytree(ROOT / "manifests/environments/policies", new)
    old = tmp_path / "empty"
    old.mkdir()
    d = pdiff.diff(pdiff.load_side(old, "environments"), pdiff.load_side(new, "environments"))
    profile = load_profile("environments")
    final = {e for e, v in predict(profile).items() if v.allowed}
    assert {c.edge for c in d.closed} == {e for e in profile.edges()} - final
    assert d.opened == [] and d.profile == "environments"
    with pytest.raises(ManifestError, match="namespace 'develop' is in neither the tree nor profile dashi "
                                            r"\(pass --profile"):
        pdiff.load_side(new, "dashi")


def test_an_overlay_directory_is_read_as_its_build(tmp_path):
    out = export(tmp_path / "e", "environments", ["develop=allow-from-ingress-controller", "allow-dns"])
    side = pdiff.load_side(out / NP / "develop", "environments")
    assert side.kind == "kustomize"
    assert sorted(p["metadata"]["name"] for p in side.policies) == [
        "allow-dns", "allow-from-ingress-controller", "default-deny"]
    assert {p["metadata"]["namespace"] for p in side.policies} == {"develop"}


# -- the tree reader refuses what it does not model ---------------------------


def _tree(tmp_path: Path, kustomization: str, wiring_spec: str = "") -> Path:
    out = export(tmp_path / "t", "environments")
    (out / NP / "develop/kustomization.yaml").write_text(textwrap.dedent(kustomization))
    if wiring_spec:
        w = out / "flux/bootstrap/flux-system/infrastructure.yaml"
        w.write_text(w.read_text().replace("  path: ./flux/infrastructure/network-policies/develop\n",
                                           "  path: ./flux/infrastructure/network-policies/develop\n" + wiring_spec))
    return out


@pytest.mark.parametrize("kustomization, wiring, message", [
    ("resources: [../base]\ncommonLabels: {a: b}\n", "",
     "develop/kustomization.yaml: field 'commonLabels' is not modelled by policies-diff"),
    ("resources: [../base]\npatches:\n  - target: {kind: NetworkPolicy}\n    patch: |-\n"
     "      - op: remove\n        path: /spec/ingress\n", "",
     "patches[0]: a patch that does not delete is not modelled"),
    ("resources: [https://github.com/x/y//base]\n", "", "only local files and directories are read"),
    ("resources: [../nothing-here]\n", "", "resource '../nothing-here' does not exist"),
    ("resources: [../../../../../etc]\n", "", "leaves the repository"),
    ("apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n", "", "is not modelled"),
    ("resources: [../base]\n", "  postBuild: {substitute: {a: b}}\n",
     "Kustomization flux-system/network-policies-develop: spec.postBuild is not modelled"),
    ("resources: [../base]\npatches:\n  - target: {kind: NetworkPolicy, labelSelector: 'a in (b'}\n"
     "    patch: '$patch: delete'\n", "", "labelSelector 'a in (b': cannot read"),
])
def test_unmodelled_kustomize_features_are_refused(tmp_path, kustomization, wiring, message):
    out = _tree(tmp_path, kustomization, wiring)
    with pytest.raises(ManifestError) as err:
        pdiff.load_side(out, "environments")
    assert message in str(err.value)


def test_target_namespace_and_delete_by_name(tmp_path):
    out = _tree(tmp_path, """\
        resources: [../base]
        patches:
          - patch: |-
              $patch: delete
              apiVersion: networking.k8s.io/v1
              kind: NetworkPolicy
              metadata: {name: allow-dns}
        """, "  targetNamespace: develop\n")
    _, policies = fluxtree.read_flux_tree(out)
    dev = sorted(o["metadata"]["name"] for o, _ in policies if o["metadata"]["namespace"] == "develop")
    assert dev == ["allow-from-ingress-controller", "default-deny"]


def test_a_flux_tree_without_a_namespace_for_its_policies_is_refused(tmp_path):
    out = _tree(tmp_path, "resources: [../base]\n")
    with pytest.raises(ManifestError, match="no namespace after the build of Kustomization flux-system/"
                                            "network-policies-develop"):
        fluxtree.read_flux_tree(out)


@pytest.mark.parametrize("selector, labels, match", [
    ("a=b", {"a": "b"}, True), ("a==b", {"a": "c"}, False), ("a!=b", {}, True),
    ("a in (b, c),d", {"a": "c", "d": ""}, True), ("a notin (b,c)", {"a": "b"}, False),
    ("!a", {"a": "x"}, False), ("!a", {}, True), ("a", {"a": ""}, True),
])
def test_label_selector_strings(selector, labels, match):
    assert fluxtree.label_matcher(selector, "k.yaml")(labels) is match


def test_policies_diff_task_exit_codes(tmp_path):
    old, new = _open_serving_to_catalog(tmp_path)

    def inv(*args):
        return cli_process.run("policies-diff", *args)

    assert inv(str(old), str(old)).returncode == 0
    unintended = inv(str(old), str(new), "--format", "markdown")
    assert unintended.returncode == 3 and unintended.stdout.startswith("### NetworkPolicy connectivity")
    bad = inv(str(old), str(tmp_path / "missing"))
    assert bad.returncode == 1 and "not a directory" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
