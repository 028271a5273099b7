"""`inv reachability`, `inv policies-check`, `inv explain` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from support import cli_process
from cluster.errors import ManifestError
from cluster.policy.reachability import reachability
from support import ROOT
from support.manifest_trees import RESOURCES, write


def inv(*args: str) -> subprocess.CompletedProcess:
    return cli_process.run(*args)


ALL = [[1, 65535]]


def test_reachability_exact(tmp_path):
    result = reachability(write(tmp_path, RESOURCES))
    assert result["endpoints"] == ["ops/prom", "shop/db", "shop/web"]
    # Declared ports only, as before; web has 3 replicas, so web -> web is
    # traffic between its pods and stays in.
    assert result["allowed"] == [
        {"src": "ops/prom", "dst": "shop/web", "protocol": "TCP", "port": 8080},
        {"src": "ops/prom", "dst": "shop/web", "protocol": "UDP", "port": 53},
        {"src": "shop/db", "dst": "shop/web", "protocol": "TCP", "port": 8080},
        {"src": "shop/db", "dst": "shop/web", "protocol": "UDP", "port": 53},
        {"src": "shop/web", "dst": "shop/db", "protocol": "TCP", "port": 5432},
        {"src": "shop/web", "dst": "shop/web", "protocol": "TCP", "port": 8080},
        {"src": "shop/web", "dst": "shop/web", "protocol": "UDP", "port": 53},
    ]
    # Every allowed range, declared or not: prom declares no port and is
    # reachable on everything; db only from web on 5432.
    ranges = {(r["src"], r["dst"], r["protocol"]): r["ports"] for r in result["ranges"]}
    assert ranges == {
        **{(s, d, p): ALL for s, d in [("ops/prom", "shop/web"), ("shop/db", "ops/prom"), ("shop/db", "shop/web"),
                                        ("shop/web", "ops/prom"), ("shop/web", "shop/web")]
           for p in ("TCP", "UDP", "SCTP")},
        ("shop/web", "shop/db", "TCP"): [[5432, 5432]],
    }
    assert [list(r) for r in result["ranges"]] == [["src", "dst", "protocol", "ports"]] * len(result["ranges"])


def test_reachability_task_prints_the_same_json(tmp_path):
    write(tmp_path, RESOURCES)
    proc = inv("reachability", "--resources", str(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == reachability(tmp_path)


HELM_SHOP = ROOT / "tests" / "fixtures" / "helm-shop"


def test_a_rendered_helm_chart_is_read_as_kubectl_would():
    """`helm template` output: `# Source:` comments, no namespace, most
    workloads without containerPort, a CronJob, an HPA, an Ingress, a
    ConfigMap, Services, a test Pod. The skipped kinds are one warning line,
    the traffic to undeclared ports is in ``ranges``, the namespace is
    --namespace's."""
    proc = inv("reachability", "-r", str(HELM_SHOP), "--namespace", "shop")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "warning: skipped 7 object(s) of kinds that do not take part in NetworkPolicy reachability: "
        "ConfigMap, HorizontalPodAutoscaler, Ingress, Service (3), ServiceAccount"]
    result = json.loads(proc.stdout)
    assert result == {
        "endpoints": ["shop/shop", "shop/shop-api", "shop/shop-backup", "shop/shop-redis",
                      "shop/shop-test-connection"],
        "allowed": [],  # the frontend's 8080 is the only declared port, and egress reaches it from nowhere
        "ranges": [
            {"src": "shop/shop", "dst": "shop/shop-api", "protocol": "TCP", "ports": [[3000, 3000]]},
            {"src": "shop/shop-api", "dst": "shop/shop-redis", "protocol": "TCP", "ports": [[6379, 6379]]},
            {"src": "shop/shop-backup", "dst": "shop/shop-redis", "protocol": "TCP", "ports": [[6379, 6379]]},
        ],
    }
    table = inv("reachability", "-r", str(HELM_SHOP / "rendered.yaml"), "-f", "table")
    assert table.returncode == 0, table.stderr
    lines = [line.split() for line in table.stdout.splitlines()]
    assert lines[0][:4] == ["5", "endpoints", "(workloads),", "3"]
    assert ["default/shop-backup", "default/shop-redis", "6379", "-", "-", "-"] in lines


def test_every_manifest_a_user_points_at_is_read(tmp_path):
    """Suffixes in any case, .json, List kinds, multi-document files, CronJobs,
    symlinked files and directories (each read once), hidden dirs skipped."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"app": "a"}},
           "spec": {"containers": [{"name": "c", "image": "x"}]}}
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "A.YAML").write_text(json.dumps(pod))
    (tmp_path / "real" / "list.Json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {**pod, "metadata": {"name": "b"}}, {**pod, "kind": "Pod", "metadata": {"name": "c"}}]}))
    (tmp_path / "real" / "multi.yml").write_text(textwrap.dedent("""
        apiVersion: batch/v1
        kind: CronJob
        metadata: {name: nightly}
        spec:
          schedule: "0 1 * * *"
          jobTemplate:
            spec:
              parallelism: 2
              template:
                metadata: {labels: {app: nightly}}
                spec:
                  restartPolicy: Never
                  containers: [{name: c, image: x, ports: [{containerPort: 9000}]}]
        ---
        ---
        apiVersion: apps/v1
        kind: DeploymentList
        items: []
        """))
    (tmp_path / "real" / "notes.txt").write_text("not a manifest")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text("garbage: [")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "real" / "A.YAML")
    (tmp_path / "linkdir").symlink_to(tmp_path / "real", target_is_directory=True)
    result = reachability(tmp_path)
    assert result["endpoints"] == ["default/a", "default/b", "default/c", "default/nightly"]
    pods = reachability(tmp_path, endpoints="pods")
    assert pods["endpoints"] == ["default/a", "default/b", "default/c", "default/nightly-0", "default/nightly-1"]
    assert {"src": "default/nightly-0", "dst": "default/nightly-1", "protocol": "TCP", "port": 9000} \
        in pods["allowed"]


def test_endpoints_pods_reports_each_replica():
    """RustFS's two replicas talk to each other on the S3 port: one endpoint
    each with --endpoints pods; a pod to itself (loopback) is left out."""
    result = reachability(ROOT / "manifests" / "dashi", endpoints="pods")
    assert "dashi-platform/rustfs-0" in result["endpoints"] and "dashi-platform/debug" in result["endpoints"]
    rustfs = [r for r in result["ranges"] if "rustfs" in r["src"] and "rustfs" in r["dst"]]
    assert rustfs == [
        {"src": "dashi-platform/rustfs-0", "dst": "dashi-platform/rustfs-1", "protocol": "TCP", "ports": [[9000, 9000]]},
        {"src": "dashi-platform/rustfs-1", "dst": "dashi-platform/rustfs-0", "protocol": "TCP", "ports": [[9000, 9000]]},
    ]
    workloads = reachability(ROOT / "manifests" / "dashi")
    assert {"src": "dashi-platform/rustfs", "dst": "dashi-platform/rustfs", "protocol": "TCP",
            "port": 9000} in workloads["allowed"]


def test_a_profile_directory_is_read_as_resources():
    """profile.yaml and matrix.yaml are not Kubernetes objects; the rest is,
    and every step's policies apply (the profile's final state)."""
    result = reachability(ROOT / "manifests" / "environments")
    assert "production/backend" in result["endpoints"]
    allowed = {(a["src"], a["dst"]) for a in result["allowed"]}
    assert ("ingress-nginx/ingress-nginx-controller", "production/frontend") in allowed
    assert not any(s.startswith("production/") and d.startswith("staging/") for s, d in allowed)


def test_a_directory_without_manifests_is_an_error(tmp_path):
    (tmp_path / "README.md").write_text("# nothing here")
    with pytest.raises(ManifestError, match="no manifests here"):
        reachability(tmp_path)
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    with pytest.raises(ManifestError, match="no Pods or workloads .* among 1 object"):
        reachability(tmp_path)


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
    assert proc.returncode == 3  # blocked: scripts can gate on it
    assert proc.stdout.startswith("dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP: BLOCKED")
    bad = inv("explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080/icmp")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: invalid protocol 'ICMP' in '8080/icmp' (TCP, UDP, SCTP)"


def test_a_policy_without_pod_selector_selects_every_pod_of_its_namespace(tmp_path):
    """The API server accepts it though the 1.33 OpenAPI lists podSelector as
    required (kubernetes/kubernetes PR 131354); it isolates every pod."""
    (tmp_path / "a.yaml").write_text(textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: a, labels: {app: a}}
        spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: b, labels: {app: b}}
        spec: {containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}
        """))
    assert len(reachability(tmp_path)["allowed"]) == 2
    (tmp_path / "deny.yaml").write_text(textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny-ingress}
        spec: {policyTypes: [Ingress]}
        """))
    assert reachability(tmp_path)["allowed"] == []
