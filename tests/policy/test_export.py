"""`inv export`: the verified steps as the chapter's Flux layout."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
import yaml

from support import cli_process
from cluster import yamlio
from cluster.cli import gitops
from cluster.errors import ManifestError, VerificationFailed
from cluster.live.record.steprecord import RecordStore, StepEntry, StepRecord
from cluster.policy import export as pexport
from cluster.policy.profile import load_profile
from cluster.ui import make_console
from support import ROOT

NP = "flux/infrastructure/network-policies"


def run_export(tmp_path: Path, profile: str = "environments", **kw) -> tuple[int, str]:
    buf = io.StringIO()
    code = gitops.export(profile, out=str(tmp_path), console=make_console(buf), **kw)
    return code, buf.getvalue()


def docs(path: Path) -> list[dict]:
    return [d for d in yamlio.load_all(path.read_text()) if d]


def test_environments_get_one_overlay_per_namespace_dashi_one_for_all():
    env = pexport.choose_layout(load_profile("environments"))
    assert env.per_namespace and env.namespaces == ("develop", "staging", "production")
    dashi = pexport.choose_layout(load_profile("dashi"))
    assert not dashi.per_namespace
    # The reason names a step whose policies differ between the namespaces it spans.
    assert "allow-platform has different policies in dashi-data, dashi-platform, dashi-serving" in dashi.reason


def test_environments_export_writes_the_chapter_layout(tmp_path):
    code, out = run_export(tmp_path)
    assert code == 0
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "flux/bootstrap/flux-system/infrastructure.yaml",
        "flux/bootstrap/infrastructure/base/kustomization.yaml",
        "flux/bootstrap/infrastructure/base/namespaces.yaml",
        f"{NP}/base/01-default-deny.yaml",
        f"{NP}/base/02-allow-dns.yaml",
        f"{NP}/base/03-allow-from-ingress-controller.yaml",
        f"{NP}/base/kustomization.yaml",
        f"{NP}/develop/kustomization.yaml",
        f"{NP}/production/kustomization.yaml",
        f"{NP}/staging/kustomization.yaml",
    ]
    assert "10 file(s) written" in out
    assert docs(tmp_path / NP / "base/kustomization.yaml")[0]["resources"] == [
        "01-default-deny.yaml", "02-allow-dns.yaml", "03-allow-from-ingress-controller.yaml"]
    # One namespace-free copy of each policy; each overlay sets its namespace.
    dns = docs(tmp_path / NP / "base/02-allow-dns.yaml")
    assert [d["metadata"]["name"] for d in dns] == ["allow-dns"]
    assert "namespace" not in dns[0]["metadata"]
    assert dns[0]["metadata"]["labels"] == {"dashi.io/step": "allow-dns"}
    assert dns[0]["metadata"]["annotations"] == {
        "dashi.io/step": "allow-dns",
        "dashi.io/reason": "The minimal next policy after default deny: DNS egress (UDP/TCP 53)."}
    profile = load_profile("environments")
    assert dns[0]["spec"] == profile.steps[1].objects[0]["spec"]
    dev = docs(tmp_path / NP / "develop/kustomization.yaml")[0]
    assert dev == {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                   "namespace": "develop", "resources": ["../base"]}
    ns = docs(tmp_path / "flux/bootstrap/infrastructure/base/namespaces.yaml")
    assert ns == profile.namespace_objects


def test_every_exported_file_says_it_is_generated(tmp_path):
    run_export(tmp_path, "dashi")
    for p in tmp_path.rglob("*.yaml"):
        assert pexport.is_generated(p), p


def test_the_flux_wiring_uses_the_v1_api_fields(tmp_path):
    # Fields and requirements from fluxcd/kustomize-controller api/v1/kustomization_types.go:
    # interval, prune and sourceRef are required; dependsOn is a list of {name}.
    run_export(tmp_path)
    wiring = docs(tmp_path / "flux/bootstrap/flux-system/infrastructure.yaml")
    assert [w["metadata"]["name"] for w in wiring] == [
        "namespaces", "network-policies-develop", "network-policies-staging", "network-policies-production"]
    for w in wiring:
        assert w["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1" and w["kind"] == "Kustomization"
        assert w["metadata"]["namespace"] == "flux-system"
        spec = w["spec"]
        assert spec["interval"] == "10m"
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
        assert (tmp_path / spec["path"]).is_dir(), spec["path"]
    assert wiring[0]["spec"]["prune"] is False and "dependsOn" not in wiring[0]["spec"]
    for w in wiring[1:]:
        assert w["spec"]["prune"] is True
        assert w["spec"]["dependsOn"] == [{"name": "namespaces"}]
        assert w["spec"]["path"] == f"./{NP}/{w['metadata']['name'].removeprefix('network-policies-')}"


def test_source_and_interval_are_checked(tmp_path):
    run_export(tmp_path, source="infra-repo", interval="1h30m")
    spec = docs(tmp_path / "flux/bootstrap/flux-system/infrastructure.yaml")[1]["spec"]
    assert spec["sourceRef"]["name"] == "infra-repo" and spec["interval"] == "1h30m"
    with pytest.raises(ManifestError, match="--interval '10 minutes' is not a Flux duration"):
        run_export(tmp_path, interval="10 minutes")
    with pytest.raises(ManifestError, match="--source 'Infra_Repo' is not a valid GitRepository name"):
        run_export(tmp_path, source="Infra_Repo")


def test_dashi_exports_one_overlay_with_namespaced_policies(tmp_path):
    run_export(tmp_path, "dashi")
    profile = load_profile("dashi")
    base = sorted(p.name for p in (tmp_path / NP / "base").iterdir())
    assert base == [f"{k:02d}-{s.name}.yaml" for k, s in enumerate(profile.steps, 1)] + ["kustomization.yaml"]
    internal = docs(tmp_path / NP / "base/05-allow-catalog-internal.yaml")
    assert [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in internal] == [
        ("dashi-catalog", "allow-catalog-internal"), ("dashi-catalog", "allow-catalog-db-egress")]
    assert internal[0]["metadata"]["annotations"]["dashi.io/reason"] == "The STAC API queries pgstac on 5432."
    overlay = docs(tmp_path / NP / "dashi/kustomization.yaml")[0]
    assert "namespace" not in overlay and overlay["resources"] == ["../base"]
    wiring = docs(tmp_path / "flux/bootstrap/flux-system/infrastructure.yaml")
    assert [w["metadata"]["name"] for w in wiring] == ["namespaces", "network-policies-dashi"]


def test_step_reasons_come_from_the_note_then_the_comment_then_the_matrix():
    profile = load_profile("dashi")
    reasons = [pexport.step_reason(profile, s) for s in profile.steps]
    assert reasons[0] == "Deny all ingress and egress for every pod in every dashi namespace."
    assert reasons[8] == "The Prefect worker launches flow-run jobs through the Kubernetes API."
    from dataclasses import replace
    noted = replace(profile.steps[1], note="Names must resolve.  Everything else follows.")
    assert pexport.step_reason(profile, noted) == "Names must resolve."


def test_step_reason_falls_back_to_the_matrix(tmp_path):
    src = ROOT / "manifests/environments"
    shutil.copytree(src, tmp_path / "p")
    f = tmp_path / "p/policies/02-allow-dns.yaml"
    f.write_text("\n".join(line for line in f.read_text().splitlines() if not line.startswith("#")))
    profile = load_profile(tmp_path / "p")
    assert pexport.step_reason(profile, profile.steps[1]) == "DNS egress, the minimal policy after default deny; " \
                                                            "DNS over TCP"


def test_until_stops_overlays_and_holds_the_rest_back(tmp_path):
    code, out = run_export(tmp_path, until=["allow-dns", "develop=allow-from-ingress-controller",
                                            "production=default-deny"])
    assert code == 0
    assert "network-policies-production" in out and "step 1: default-deny" in out
    prod = docs(tmp_path / NP / "production/kustomization.yaml")[0]
    assert [p["target"] for p in prod["patches"]] == [
        {"kind": "NetworkPolicy", "labelSelector": "dashi.io/step=allow-dns"},
        {"kind": "NetworkPolicy", "labelSelector": "dashi.io/step=allow-from-ingress-controller"}]
    assert all(yaml.safe_load(p["patch"])["$patch"] == "delete" for p in prod["patches"])
    assert len(docs(tmp_path / NP / "staging/kustomization.yaml")[0]["patches"]) == 1
    assert "patches" not in docs(tmp_path / NP / "develop/kustomization.yaml")[0]


def test_base_holds_only_steps_some_overlay_reaches(tmp_path):
    run_export(tmp_path, "dashi", until=["allow-catalog"])
    assert docs(tmp_path / NP / "base/kustomization.yaml")[0]["resources"][-1] == "04-allow-catalog.yaml"
    assert "patches" not in docs(tmp_path / NP / "dashi/kustomization.yaml")[0]
    # Exporting further later adds the steps; exporting less again removes what only we wrote.
    run_export(tmp_path, "dashi", until=["allow-kube-api"])
    assert (tmp_path / NP / "base/09-allow-kube-api.yaml").is_file()
    code, out = run_export(tmp_path, "dashi", until=["allow-dns"])
    assert not (tmp_path / NP / "base/09-allow-kube-api.yaml").exists()
    assert "7 removed" in out


@pytest.mark.parametrize("until, message", [
    (["nope"], "no step 'nope' in profile environments"),
    (["qa=allow-dns"], "--until qa=allow-dns: no overlay 'qa' (overlays: develop, staging, production)"),
    (["baseline"], "every overlay is at baseline, there is nothing to export"),
])
def test_bad_until_is_one_clear_error(tmp_path, until, message):
    with pytest.raises(ManifestError) as err:
        run_export(tmp_path, until=until)
    assert message in str(err.value)
    assert not any(tmp_path.iterdir())


def test_a_step_that_fails_the_offline_check_is_not_exported():
    profile = load_profile("dashi").without(["allow-catalog-internal"])
    # Steps 1-4 are as intended; the final matrix is not (pgstac is unreachable).
    pexport.check_offline(profile, 4)
    with pytest.raises(VerificationFailed, match="the final matrix differs from the intended matrix in 1 edge"):
        pexport.check_offline(profile, len(profile.steps))


def test_a_step_with_an_unintended_edge_stops_the_export(tmp_path):
    shutil.copytree(ROOT / "manifests/environments", tmp_path / "p")
    f = tmp_path / "p/policies/03-allow-from-ingress-controller.yaml"
    f.write_text(f.read_text().replace("app.kubernetes.io/component: controller", "app.kubernetes.io/part-of: x")
                 .replace("matchLabels: {app.kubernetes.io/name: ingress-nginx, app.kubernetes.io/part-of: x}",
                          "matchLabels: {}"))
    out = tmp_path / "out"
    with pytest.raises(VerificationFailed, match=r"step 3 allow-from-ingress-controller differs from its intent"):
        gitops.export(str(tmp_path / "p"), out=str(out), console=make_console(io.StringIO()))
    assert not out.exists()


def _ns_free_profile(tmp_path: Path) -> Path:
    """Two namespaces with the same policies. Step 1 isolates ingress only
    (egress stays open); step 2 isolates egress and opens ingress. Every
    state blocks a -> b, but a at step 1 (egress open) with b at step 2
    (ingress open) would allow it."""
    p = tmp_path / "mix"
    (p / "policies").mkdir(parents=True)
    (p / "profile.yaml").write_text(
        "name: mix\nworkloads: [apps.yaml]\nsteps:\n"
        "  - {name: close-in, file: policies/01.yaml}\n  - {name: flip, file: policies/02.yaml}\n")
    (p / "namespaces.yaml").write_text("".join(
        f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n" for n in ("a", "b")))
    (p / "apps.yaml").write_text("".join(
        f"---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web, namespace: {n}, labels: {{app: web}}}}\n"
        "spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}\n" for n in ("a", "b")))
    (p / "policies/01.yaml").write_text("".join(
        f"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: close-in, namespace: {n}}}\n"
        "spec: {podSelector: {}, policyTypes: [Ingress]}\n" for n in ("a", "b")))
    (p / "policies/02.yaml").write_text("".join(
        f"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: flip, namespace: {n}}}\n"
        "spec: {podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}]}\n" for n in ("a", "b")))
    (p / "matrix.yaml").write_text("allowed: []\n")
    return p


def test_overlays_at_different_steps_must_not_allow_what_no_verified_state_allows(tmp_path):
    p = _ns_free_profile(tmp_path)
    profile = load_profile(p)
    pexport.check_offline(profile, 2)
    layout = pexport.choose_layout(profile)
    assert layout.per_namespace and layout.namespaces == ("a", "b")
    untils = pexport.resolve_untils(profile, layout, ["close-in", "b=flip"])
    with pytest.raises(VerificationFailed, match=r"allow a/web -> b/web 80/TCP, which is blocked after step 1 "
                                                 r"close-in or after step 2 flip"):
        pexport.plan(profile, untils, "offline")
    with pytest.raises(VerificationFailed, match=r"allow b/web -> a/web 80/TCP"):
        pexport.plan(profile, pexport.resolve_untils(profile, layout, ["flip", "b=close-in"]), "offline")
    pexport.plan(profile, pexport.resolve_untils(profile, layout, ["flip"]), "offline")


def test_an_overlay_at_baseline_is_left_out(tmp_path):
    run_export(tmp_path)
    code, out = run_export(tmp_path, until=["baseline", "develop=allow-dns"])
    # staging's and production's overlays and step 3's base file
    assert code == 0 and "3 removed" in out
    assert not (tmp_path / NP / "staging/kustomization.yaml").exists()
    wiring = docs(tmp_path / "flux/bootstrap/flux-system/infrastructure.yaml")
    assert [w["metadata"]["name"] for w in wiring] == ["namespaces", "network-policies-develop"]
    assert docs(tmp_path / NP / "base/kustomization.yaml")[0]["resources"] == [
        "01-default-deny.yaml", "02-allow-dns.yaml"]
    with pytest.raises(ManifestError, match="every overlay is at baseline"):
        run_export(tmp_path, "dashi", until=["dashi=baseline"])


def test_promotion_moves_only_the_overlay_named(tmp_path):
    run_export(tmp_path, until=["baseline", "develop=default-deny"])
    code, out = run_export(tmp_path, until=["develop=allow-dns"])
    assert "overlays not named in --until keep their step" in out
    assert re.search(r"network-policies-staging +not exported \(baseline", out)
    assert profile_steps(tmp_path, "develop") == ["allow-dns", "default-deny"]
    run_export(tmp_path, until=["staging=allow-from-ingress-controller"])
    assert profile_steps(tmp_path, "develop") == ["allow-dns", "default-deny"]
    assert profile_steps(tmp_path, "staging") == ["allow-dns", "allow-from-ingress-controller", "default-deny"]
    assert not (tmp_path / NP / "production").exists()
    # A re-export without --until (after editing the profile, say) keeps every overlay where it is.
    _, out = run_export(tmp_path)
    assert "0 file(s) written" in out


def profile_steps(out: Path, overlay: str) -> list[str]:
    from cluster.policy.fluxtree import build

    return sorted({o["metadata"]["labels"]["dashi.io/step"] for o, _ in build(out / NP / overlay, out)})


def test_environments_mix_adds_up(tmp_path):
    profile = load_profile("environments")
    layout = pexport.choose_layout(profile)
    untils = pexport.resolve_untils(profile, layout, ["develop=allow-from-ingress-controller",
                                                      "staging=allow-dns", "production=default-deny"])
    assert untils == {"develop": 3, "staging": 2, "production": 1}
    # A named overlay wins over a bare step, whatever the order.
    assert pexport.resolve_untils(profile, layout, ["develop=allow-from-ingress-controller", "allow-dns"]) == \
        {"develop": 3, "staging": 2, "production": 2}
    pexport.plan(profile, untils, "offline")  # raises if the mix allowed what no state allows
    pexport.plan(profile, pexport.resolve_untils(profile, layout, ["baseline", "develop=allow-dns"]), "offline")


def test_a_file_not_written_by_export_is_never_overwritten(tmp_path):
    mine = tmp_path / NP / "base/extra-policy.yaml"
    mine.parent.mkdir(parents=True)
    mine.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\n")
    with pytest.raises(ManifestError, match="extra-policy.yaml: not written by inv export"):
        run_export(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["extra-policy.yaml"]
    wiring = tmp_path / "flux/bootstrap/flux-system/infrastructure.yaml"
    wiring.parent.mkdir(parents=True)
    wiring.write_text("# our own wiring\n")
    mine.unlink()
    with pytest.raises(ManifestError, match="infrastructure.yaml: not written by inv export"):
        run_export(tmp_path)
    assert wiring.read_text() == "# our own wiring\n"
    code, _ = run_export(tmp_path, force=True)
    assert code == 0 and pexport.is_generated(wiring)


def test_a_second_export_changes_nothing(tmp_path):
    run_export(tmp_path)
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    code, out = run_export(tmp_path)
    assert "0 file(s) written, 10 unchanged, 0 removed" in out
    assert before == {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}


def test_wiring_hint_goes_once_the_flux_system_kustomization_lists_it(tmp_path):
    _, out = run_export(tmp_path)
    assert "next: list infrastructure.yaml under resources" in out
    ks = tmp_path / "flux/bootstrap/flux-system/kustomization.yaml"
    ks.write_text("resources: [gotk-components.yaml, gotk-sync.yaml, infrastructure.yaml]\n")
    _, out = run_export(tmp_path)
    assert "next:" not in out


def _record(root: Path, context: str, profile: str, steps: list[str]) -> None:
    # As a rollout leaves it: the context's cluster (by kube-system uid) in the
    # index, the step record under that cluster.
    uid = "5f1d0c8e-0000-4000-8000-00000000e4e4"
    (root).mkdir(parents=True, exist_ok=True)
    (root / "contexts.yaml").write_text(f"{context}: {{uid: {uid}, server: 'https://127.0.0.1:6550'}}\n")
    d = root / "clusters" / uid / profile
    RecordStore(d).save(StepRecord(profile, context, [
        StepEntry(s, f"{i:04d}-before-{s}.yaml", "2025-01-01T00:00:00Z", "2025-01-01T00:00:05Z", "me", "host")
        for i, s in enumerate(steps, 1)]))


def test_context_exports_only_the_steps_verified_there(tmp_path):
    state = tmp_path / "state"
    _record(state, "k3d-dashi", "environments", ["default-deny", "allow-dns"])
    out = tmp_path / "out"
    code, text = run_export(out, context="k3d-dashi", state_root=state)
    assert code == 0 and "verified live on context k3d-dashi" in text
    assert docs(out / NP / "base/kustomization.yaml")[0]["resources"] == [
        "01-default-deny.yaml", "02-allow-dns.yaml"]
    assert "Verified: live on context k3d-dashi" in (out / NP / "base/01-default-deny.yaml").read_text()
    with pytest.raises(ManifestError, match="develop: step allow-from-ingress-controller is not verified "
                                            r"\(the record ends after allow-dns\)"):
        run_export(out, context="k3d-dashi", state_root=state, until=["develop=allow-from-ingress-controller"])
    # An earlier export further than the record is not carried forward silently.
    run_export(out, until=["allow-from-ingress-controller"])
    with pytest.raises(ManifestError, match="staging: step allow-from-ingress-controller is not verified"):
        run_export(out, context="k3d-dashi", state_root=state, until=["develop=allow-dns"])
    with pytest.raises(Exception, match="no rollout of profile environments is recorded for context other"):
        run_export(out, context="other", state_root=state)


def test_export_task_errors_are_one_line(tmp_path):
    proc = cli_process.run("export", "--profile", "environments", "--out", str(tmp_path), "--until", "qa=allow-dns")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no overlay 'qa'" in lines[0] and "Traceback" not in proc.stderr
