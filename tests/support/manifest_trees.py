"""Small manifest trees written to a temporary directory, as a user's
repository would hold them: a shop namespace with a Deployment, a Pod and a
StatefulSet, and one NetworkPolicy."""

from __future__ import annotations

import textwrap
from pathlib import Path

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


# A pull request's policies on the dashi profile that let the tile server
# (dashi-serving/titiler) into the catalog's API: both sides, every port.
SERVING_INTO_CATALOG = """---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-serving-to-catalog, namespace: dashi-serving}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: titiler}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dashi-catalog}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-serving, namespace: dashi-catalog}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: stac-fastapi}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dashi-serving}}}]
"""
