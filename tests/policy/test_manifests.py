"""Reading manifests: the fast YAML path builds exactly what PyYAML's
SafeLoader builds, and skipped kinds are not built at all."""

from __future__ import annotations

import yaml
from support import ROOT

from cluster.policy.kinds import MODELLED_KINDS
from cluster.policy.manifests import load_documents, read_yaml

TRICKY = """\
octal: 012
hex: 0x1F
underscored: 1_000
sexagesimal: 1:30
bool: yes
null: ~
date: 2024-01-01
float: 1.5e3
quoted: '012'
ints: [0, 00, 10, -3, +4]
tagged: !!str 5
merged: {<<: {x: 1}, y: 2}
inf: .inf
string_true: "true"
zero: 0
nested: {a: [{b: [1, {c: d}]}]}
---
---
second: document
"""


def test_the_fast_path_builds_what_safe_loader_builds(tmp_path):
    tricky = tmp_path / "tricky.yaml"
    tricky.write_text(TRICKY)
    files = [tricky, *sorted((ROOT / "manifests").rglob("*.yaml")), *sorted((ROOT / "tests" / "fixtures").rglob("*.yaml"))]
    assert len(files) > 20  # the shipped profiles and the rendered Helm chart
    for f in files:
        want = [d for d in yaml.load_all(f.read_text(), Loader=yaml.SafeLoader) if d is not None]
        assert read_yaml(f) == want, f


def test_documents_of_skipped_kinds_are_not_built():
    docs = load_documents(ROOT / "tests" / "fixtures" / "helm-shop" / "rendered.yaml", keep=MODELLED_KINDS)
    skipped = [d for d in docs if d["kind"] not in MODELLED_KINDS]
    assert sorted(d["kind"] for d in skipped) == ["ConfigMap", "HorizontalPodAutoscaler", "Ingress", "Service",
                                                  "Service", "Service", "ServiceAccount"]
    assert all(d == {"kind": d["kind"]} for d in skipped)
    assert all("spec" in d for d in docs if d["kind"] in ("Deployment", "NetworkPolicy"))
