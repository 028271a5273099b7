"""Exported overlays built by the real kustomize read back to exactly the
verified policies and the same predicted matrix.

Each overlay is built twice: with ``kubectl kustomize`` (skipped with the
reason when kubectl is not installed) and with ``fluxtree.build``, the reader
``policies-diff`` uses; the two must agree object for object. Then the
policies read back must be the profile's policies through the overlay's
step, and the engine's matrix of the read-back set must equal the one
``policies-check`` predicts for that step.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster import yamlio
from cluster.cli import gitops
from cluster.policy import fluxtree
from cluster.policy.diff import allowed_edges
from cluster.policy.engine.predictions import predict
from cluster.policy.export import REASON_ANNOTATION, STEP_ANNOTATION
from cluster.policy.profile import load_profile
from cluster.ui import make_console

pytestmark = pytest.mark.integration  # every overlay built by the real `kubectl kustomize`

NP = "flux/infrastructure/network-policies"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: kustomize builds not checked")


def kubectl_kustomize(directory: Path) -> list[dict]:
    proc = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yamlio.load_all(proc.stdout) if d]


def key(obj: dict) -> tuple:
    m = obj["metadata"]
    return m.get("namespace"), m["name"], json.dumps(obj["spec"], sort_keys=True)


def export(tmp_path: Path, profile: str, until: list[str]) -> Path:
    out = tmp_path / "-".join([profile, *until]).replace("=", "_")
    gitops.export(profile, out=str(out), until=until, console=make_console(io.StringIO()))
    return out


def read_back(out: Path, overlay: str) -> list[dict]:
    directory = out / NP / overlay
    ours = [o for o, _ in fluxtree.build(directory, out)]
    if KUBECTL:
        real = kubectl_kustomize(directory)
        assert sorted(map(key, real)) == sorted(map(key, ours))
        assert sorted(json.dumps(o["metadata"], sort_keys=True) for o in real) == \
            sorted(json.dumps(o["metadata"], sort_keys=True) for o in ours)
    return ours


def check_overlay(profile, objs: list[dict], k: int, namespace: str | None) -> None:
    want = [p for p in profile.policies_through(k) if namespace is None or p["metadata"]["namespace"] == namespace]
    assert sorted(map(key, objs)) == sorted(map(key, want))
    for o in objs:
        ann = o["metadata"]["annotations"]
        assert ann[REASON_ANNOTATION]
        step = next(s for s in profile.steps if any(key(p) == key(o) for p in s.objects))
        assert ann[STEP_ANNOTATION] == step.name
        assert profile.step_index(step.name) <= k


def predicted(profile, k: int) -> set:
    return {e for e, v in predict(profile, profile.policies_through(k)).items() if v.allowed}


@needs_kubectl
@pytest.mark.parametrize("name", ["dashi", "environments"])
def test_every_step_builds_and_reads_back_to_the_verified_matrix(tmp_path, name):
    profile = load_profile(name)
    overlays = ["dashi"] if name == "dashi" else ["develop", "staging", "production"]
    for k, step in enumerate(profile.steps, 1):
        out = export(tmp_path, name, [step.name])
        union = []
        for overlay in overlays:
            objs = read_back(out, overlay)
            check_overlay(profile, objs, k, None if name == "dashi" else overlay)
            union += objs
        assert allowed_edges(profile, union) == predicted(profile, k), f"after step {k} {step.name}"
        # What Flux applies from the wiring is the same set.
        _, flux = fluxtree.read_flux_tree(out)
        assert sorted(key(o) for o, _ in flux) == sorted(map(key, union))


@needs_kubectl
def test_environments_overlays_at_different_steps(tmp_path):
    profile = load_profile("environments")
    out = export(tmp_path, "environments", ["develop=allow-from-ingress-controller", "staging=allow-dns",
                                            "production=default-deny"])
    union = []
    for overlay, k in (("develop", 3), ("staging", 2), ("production", 1)):
        objs = read_back(out, overlay)
        check_overlay(profile, objs, k, overlay)
        union += objs
    # Each namespace's edges are those of the state its overlay stops at.
    mixed = allowed_edges(profile, union)
    for ns, k in (("develop", 3), ("staging", 2), ("production", 1)):
        verified = predicted(profile, k)
        for e in profile.edges():
            if ns in (e.src.split("/")[0], e.dst.split("/")[0]):
                assert (e in mixed) == (e in verified), e


@needs_kubectl
def test_an_overlay_left_at_baseline_applies_nothing(tmp_path):
    profile = load_profile("environments")
    out = export(tmp_path, "environments", ["baseline", "develop=allow-dns"])
    check_overlay(profile, read_back(out, "develop"), 2, "develop")
    assert not (out / NP / "staging").exists()
    _, flux = fluxtree.read_flux_tree(out)
    assert {o["metadata"]["namespace"] for o, _ in flux} == {"develop"}


@needs_kubectl
def test_the_namespaces_kustomization_builds(tmp_path):
    out = export(tmp_path, "dashi", [])
    objs = kubectl_kustomize(out / "flux/bootstrap/infrastructure/base")
    # kubectl kustomize sorts its output; the objects are the profile's.
    by_name = sorted(load_profile("dashi").namespace_objects, key=lambda o: o["metadata"]["name"])
    assert sorted(objs, key=lambda o: o["metadata"]["name"]) == by_name
