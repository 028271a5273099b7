"""A generated profile of any size, for benchmarks: N namespaces, P stand-in
pods in each serving Q ports, and three steps (default-deny, allow-dns,
allow-same-namespace on the first port).

    python benchmarks/synthetic.py DIR --namespaces 10 --pods 6 --ports 2

writes a profile directory that `inv prepare --profile DIR`,
`inv network-policies-up --profile DIR` and `inv policies-check --profile DIR`
read like the shipped ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
FIRST_PORT = 8000


def namespace(i: int, prefix: str = "bench") -> str:
    return f"{prefix}-{i:02d}"


def _deployment(ns: str, name: str, ports: int) -> dict:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "bench"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                     "name": "standin", "image": AGNHOST, "imagePullPolicy": "IfNotPresent", "args": ["porter"],
                     "env": [{"name": f"SERVE_PORT_{FIRST_PORT + q}", "value": f"{ns}-{name}"} for q in range(ports)],
                     "ports": [{"name": f"p{q}", "containerPort": FIRST_PORT + q, "protocol": "TCP"}
                               for q in range(ports)],
                     "readinessProbe": {"tcpSocket": {"port": FIRST_PORT}, "periodSeconds": 2},
                     "resources": {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"memory": "256Mi"}},
                 }]}}},
    }


def _policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def write(root: Path, namespaces: int, pods: int, ports: int, prefix: str = "bench") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "policies").mkdir(exist_ok=True)
    names = [namespace(i, prefix) for i in range(namespaces)]
    dump = lambda path, docs: (root / path).write_text(yaml.safe_dump_all(docs, sort_keys=False))  # noqa: E731
    dump("namespaces.yaml", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names])
    dump("workloads.yaml", [_deployment(n, f"app-{j}", ports) for n in names for j in range(pods)])
    dump("policies/01-default-deny.yaml",
         [_policy(n, "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}) for n in names])
    dns_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    dump("policies/02-allow-dns.yaml",
         [_policy(n, "allow-dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
             {"to": [dns_peer], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]})
          for n in names])
    same = [{"podSelector": {}}]
    dump("policies/03-allow-same-namespace.yaml",
         [_policy(n, "allow-same-namespace", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                              "ingress": [{"from": same, "ports": [{"port": FIRST_PORT}]}],
                                              "egress": [{"to": same, "ports": [{"port": FIRST_PORT}]}]})
          for n in names])
    allowed = []
    for proto in ("UDP", "TCP"):
        allowed.append({"from": [f"{n}/*" for n in names], "to": "kube-system/kube-dns", "port": 53,
                        "protocol": proto, "step": "allow-dns", "reason": "DNS"})
    for n in names:
        allowed.append({"from": f"{n}/*", "to": f"{n}/*", "port": FIRST_PORT, "step": "allow-same-namespace",
                        "reason": "pods of one namespace talk on the first port"})
    (root / "matrix.yaml").write_text(yaml.safe_dump({"allowed": allowed}, sort_keys=False))
    (root / "profile.yaml").write_text(yaml.safe_dump({
        "name": root.name, "description": f"{namespaces} namespaces x {pods} pods x {ports} ports",
        "namespaces": "namespaces.yaml", "workloads": ["workloads.yaml"], "matrix": "matrix.yaml",
        "steps": [{"name": "default-deny", "file": "policies/01-default-deny.yaml", "origin": "added"},
                  {"name": "allow-dns", "file": "policies/02-allow-dns.yaml", "origin": "added"},
                  {"name": "allow-same-namespace", "file": "policies/03-allow-same-namespace.yaml",
                   "origin": "added"}],
        "cluster_endpoints": [{"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"},
                               "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                         {"name": "dns-tcp", "port": 53, "protocol": "TCP"}],
                               "live_selector": "k8s-app=kube-dns"}],
    }, sort_keys=False))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--pods", type=int, default=6)
    ap.add_argument("--ports", type=int, default=2)
    a = ap.parse_args()
    print(write(a.dir, a.namespaces, a.pods, a.ports))


if __name__ == "__main__":
    main()
