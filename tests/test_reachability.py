"""`inv reachability`, `inv policies-check`, `inv explain` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cluster.errors import ManifestError
from cluster.policy.reachability import reachability

ROOT = Path(__file__).resolve().parent.parent

RESOURCES = {
    "ns.yaml": """
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: ops, labels: {team: ops}}
        """,
    "apps.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: shop}
        spec:
          replicas: 3
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: c
                  image: x
                  ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: db, namespace: shop, labels: {app: db}}
        spec:
          containers:
            - name: c
              image: x
              ports: [{name: pg, containerPort: 5432}]
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: prom, namespace: ops}
        spec:
          selector: {matchLabels: {app: prom}}
          template:
            metadata: {labels: {app: prom}}
            spec: {containers: [{name: c, image: x}]}
        """,
    "policies/deny.yaml": """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: db, namespace: shop}
        spec:
          podSelector: {matchLabels: {app: db}}
          ingress:
            - from: [{podSelector: {matchLabels: {app: web}}}]
              ports: [{port: pg}]
        """,
}


def write(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp


def inv(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True)


def test_reachability_exact(tmp_path):
    result = reachability(write(tmp_path, RESOURCES))
    assert result == {
        "endpoints": ["ops/prom", "shop/db", "shop/web"],
        "allowed": [
            {"src": "ops/prom", "dst": "shop/web", "protocol": "TCP", "port": 8080},
            {"src": "ops/prom", "dst": "shop/web", "protocol": "UDP", "port": 53},
            {"src": "shop/db", "dst": "shop/web", "protocol": "TCP", "port": 8080},
            {"src": "shop/db", "dst": "shop/web", "protocol": "UDP", "port": 53},
            {"src": "shop/web", "dst": "shop/db", "protocol": "TCP", "port": 5432},
        ],
    }


def test_reachability_task_prints_the_same_json(tmp_path):
    write(tmp_path, RESOURCES)
    proc = inv("reachability", "--resources", str(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == reachability(tmp_path)


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "kind: Namespace\nmetadata: {name: a\n"}, "a.yaml: invalid YAML: line 3: "),
    ({"a.yaml": "apiVersion: v1\nkind: Gadget\nmetadata: {name: g, namespace: default}\n"},
     "a.yaml: Gadget default/g: unknown kind 'Gadget'"),
    ({"a.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: nowhere}\n"
                "spec: {podSelector: {}}\n"},
     "a.yaml: NetworkPolicy nowhere/p: namespace 'nowhere' does not exist"),
    ({"a.yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: default}\n---\n"
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: default}\n"},
     "a.yaml: Pod default/x: duplicate Pod (also in"),
])
def test_reachability_bad_input_is_one_line(tmp_path, files, message):
    write(tmp_path, files)
    with pytest.raises(ManifestError) as err:
        reachability(tmp_path)
    assert message in str(err.value)
    proc = inv("reachability", "--resources", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_policies_check_task_exit_codes():
    ok = inv("policies-check", "--quiet")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "final matrix equals the intended matrix" in ok.stdout
    seed = inv("policies-check", "--quiet", "--skip", "allow-catalog-internal", "--json")
    assert seed.returncode == 1
    data = json.loads(seed.stdout)
    assert data["ok"] is False
    assert [(d["src"], d["dst"], d["port"]) for d in data["final_differences"]] == \
        [("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432)]
    strict = inv("policies-check", "--quiet", "--strict")
    assert strict.returncode == 1  # the port-forward rule is over-permissive


def test_explain_task_and_its_errors():
    proc = inv("explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080")
    assert proc.returncode == 0
    assert proc.stdout.startswith("dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP: BLOCKED")
    bad = inv("explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080/icmp")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: invalid protocol 'ICMP' in '8080/icmp' (TCP, UDP, SCTP)"
