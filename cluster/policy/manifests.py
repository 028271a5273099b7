"""Reading Kubernetes objects from YAML files, and turning them into endpoints.

Pure: no client. Used by profile loading and by ``inv reachability`` on
arbitrary directories. Every problem is a ``ManifestError`` naming the file
and the object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import yaml

from cluster.errors import ManifestError
from cluster.policy.engine import NS_NAME_LABEL, PROTOCOLS, Endpoint, Port, compile_policy

# The kinds whose pods come from ``spec.template``, with the API version
# that serves each: the one table of workload kinds (the fake cluster
# reconciles the same kinds).
WORKLOAD_KINDS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
                  "ReplicaSet": "apps/v1", "Job": "batch/v1"}
# Kinds we read for their meaning; others we know and pass through (apply them,
# ignore them for reachability). Anything else is a typo or a CRD we cannot
# reason about, and is refused rather than silently skipped.
ENDPOINT_KINDS = ("Pod", *WORKLOAD_KINDS)
KNOWN_KINDS = ENDPOINT_KINDS + ("Namespace", "NetworkPolicy", "Service", "ServiceAccount",
                                "ConfigMap", "Secret", "CronJob")
DEBUG_ANNOTATION = "dashi.io/role"


def obj_ref(obj: dict, kind: bool = True) -> str:
    """How every message names an object: "Kind ns/name" ("ns/name" without the kind)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    ns = meta.get("namespace")
    where = f"{ns}/{meta.get('name', '?')}" if ns else str(meta.get("name", "?"))
    return f"{obj.get('kind', '?') if isinstance(obj, dict) else '?'} {where}" if kind else where


def read_yaml(path: Path) -> list:
    """The non-empty documents of a YAML file, or a one-line ManifestError."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(f"cannot read ({e.strerror})", path=str(path)) from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"invalid YAML: {where}{problem}", path=str(path)) from None


def load_documents(path: Path) -> list[dict]:
    """All non-empty YAML documents of a file, each checked to be an object."""
    docs = read_yaml(path)
    out = []
    for i, doc in enumerate(docs):
        if isinstance(doc, dict) and doc.get("kind") == "List":
            docs_items = doc.get("items") or []
        else:
            docs_items = [doc]
        for item in docs_items:
            if not isinstance(item, dict):
                raise ManifestError(f"document {i + 1} is not a mapping", path=str(path))
            kind = item.get("kind")
            meta = item.get("metadata")
            if not kind or not isinstance(meta, dict) or not meta.get("name"):
                raise ManifestError(f"document {i + 1} needs kind and metadata.name", path=str(path),
                                    obj=obj_ref(item))
            out.append(item)
    return out


def check_known(objs: Iterable[dict], path: str, kinds=KNOWN_KINDS) -> None:
    for obj in objs:
        if obj["kind"] not in kinds:
            raise ManifestError(f"unknown kind {obj['kind']!r} (known: {', '.join(kinds)})",
                                path=path, obj=obj_ref(obj))


def _ports(pod_spec: dict, path: str, ref: str) -> tuple[Port, ...]:
    ports = []
    containers = (pod_spec or {}).get("containers") or []
    if not isinstance(containers, list):
        raise ManifestError("spec.containers must be a list", path=path, obj=ref)
    for c in containers:
        for p in (c or {}).get("ports") or []:
            number = (p or {}).get("containerPort")
            protocol = (p or {}).get("protocol") or "TCP"
            if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
                raise ManifestError(f"invalid containerPort {number!r}", path=path, obj=ref)
            if protocol not in PROTOCOLS:
                raise ManifestError(f"invalid protocol {protocol!r} (TCP, UDP, SCTP)", path=path, obj=ref)
            ports.append(Port(p.get("name"), number, protocol))
    return tuple(ports)


def _selector_string(selector: dict | None) -> str | None:
    labels = (selector or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def endpoint_of(obj: dict, path: str) -> Endpoint | None:
    """The endpoint a Pod or a workload's pod template stands for, else None."""
    kind = obj["kind"]
    if kind not in ENDPOINT_KINDS:
        return None
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    ref = obj_ref(obj)
    if kind == "Pod":
        labels = meta.get("labels") or {}
        spec = obj.get("spec") or {}
        debug = (meta.get("annotations") or {}).get(DEBUG_ANNOTATION) == "debug"
        return Endpoint(key=f"{ns}/{meta['name']}", namespace=ns, name=meta["name"],
                        kind="debug" if debug else "workload", labels=dict(labels),
                        ports=_ports(spec, path, ref), replicas=1,
                        ip=(obj.get("status") or {}).get("podIP"))
    spec = obj.get("spec") or {}
    template = spec.get("template")
    if kind == "Job" and template is None:
        template = {}
    if not isinstance(template, dict):
        raise ManifestError("spec.template is required", path=path, obj=ref)
    labels = (template.get("metadata") or {}).get("labels") or {}
    replicas = spec.get("replicas", 1) if kind in ("Deployment", "StatefulSet", "ReplicaSet") else 1
    if not isinstance(replicas, int) or replicas < 0:
        raise ManifestError(f"invalid replicas {replicas!r}", path=path, obj=ref)
    return Endpoint(key=f"{ns}/{meta['name']}", namespace=ns, name=meta["name"], kind="workload",
                    labels=dict(labels), ports=_ports(template.get("spec") or {}, path, ref),
                    replicas=replicas, pod_selector=_selector_string(spec.get("selector")))


class ResourceSet:
    """Namespaces, endpoints and policies read from a set of files."""

    def __init__(self):
        self.namespaces: dict[str, dict[str, str]] = {}
        self.namespace_objects: list[dict] = []
        self.objects: list[dict] = []  # non-namespace, non-policy objects in file order
        self.endpoints: list = []
        self.policies: list[dict] = []
        self.policy_sources: list[str] = []
        self._seen: dict[tuple, str] = {}

    def add(self, obj: dict, path: str) -> None:
        kind = obj["kind"]
        meta = obj["metadata"]
        ns = None if kind == "Namespace" else (meta.get("namespace") or "default")
        key = (kind, ns, meta["name"])
        if key in self._seen:
            raise ManifestError(f"duplicate {kind} (also in {self._seen[key]})", path=path, obj=obj_ref(obj))
        self._seen[key] = path
        if kind == "Namespace":
            labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
            self.namespaces[meta["name"]] = {**labels, NS_NAME_LABEL: meta["name"]}
            self.namespace_objects.append(obj)
        elif kind == "NetworkPolicy":
            compile_policy(obj, path)  # validate early, naming the file
            self.policies.append(obj)
            self.policy_sources.append(path)
        else:
            self.objects.append(obj)
            ep = endpoint_of(obj, path)
            if ep is not None:
                # Pods and workloads share one key space ("ns/name"): a Pod
                # and a Deployment of the same name would be ambiguous.
                if any(e.key == ep.key for e in self.endpoints):
                    raise ManifestError(f"duplicate endpoint name {ep.key}", path=path, obj=obj_ref(obj))
                self.endpoints.append(ep)

    def check_namespaces(self, extra: Iterable[str] = ()) -> None:
        """Every namespaced object must live in a namespace we know."""
        known = set(self.namespaces) | set(extra)
        for obj in self.objects + self.policies:
            ns = obj["metadata"].get("namespace") or "default"
            if ns not in known:
                raise ManifestError(f"namespace {ns!r} does not exist (no Namespace object for it)",
                                    path=self._seen[(obj["kind"], ns, obj["metadata"]["name"])],
                                    obj=obj_ref(obj))


def read_dir(directory: Path, check_namespaces: bool = True) -> ResourceSet:
    """Every *.yaml / *.yml file below ``directory``, in sorted order.
    ``check_namespaces=False`` leaves the namespace check to the caller (a
    directory of policies for a profile's namespaces declares none)."""
    if not directory.is_dir():
        raise ManifestError("not a directory", path=str(directory))
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    rs = ResourceSet()
    for f in files:
        docs = load_documents(f)
        check_known(docs, str(f))
        for obj in docs:
            rs.add(obj, str(f))
    # "default" always exists in a cluster; anything else must be declared.
    if check_namespaces:
        rs.check_namespaces(extra=("default",))
    return rs
