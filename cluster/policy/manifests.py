"""Reading Kubernetes objects from manifest files, and turning them into endpoints.

Pure: no client. Used by profile loading and by ``inv reachability`` on
whatever a user points at: a file or a directory tree of ``.yaml``, ``.yml``
and ``.json`` files (any letter case; symlinks followed, loops refused),
multi-document YAML, ``List`` objects, objects without
``metadata.namespace`` (rendered Helm charts) placed in a default namespace
as kubectl does. Every problem is a ``ManifestError`` naming the file, the
object and the field: the structure of the kinds we read is checked against
the upstream schema (``cluster.policy.schema``), the values the API server
would refuse by ``cluster.policy.apivalidation``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import yaml

from cluster import yamlio
from cluster.errors import Invalid, ManifestError
from cluster.policy import apivalidation as av
from cluster.policy import schema
from cluster.policy.engine.compile import compile_policy
from cluster.policy.engine.model import KCNP_KIND, NS_NAME_LABEL, Endpoint, Port, parse_selector
from cluster.policy.kinds import (
    API_VERSIONS,
    CLUSTER_SCOPED,
    DEBUG_ANNOTATION,
    DNS_LABEL_NAMES,
    ENDPOINT_KINDS,
    KNOWN_KINDS,
    MAX_NAME,
    MODELLED_KINDS,
    POLICY_KINDS,
    SELECTED_KINDS,
    WORKLOAD_KINDS,
)
from cluster.selectors import equality_text

_STR = "tag:yaml.org,2002:str"


def _kind_of(node) -> str | None:
    if node.__class__ is yaml.MappingNode:
        for k, v in node.value:
            if k.__class__ is yaml.ScalarNode and k.value == "kind" and v.__class__ is yaml.ScalarNode \
                    and v.tag == _STR and v.value:
                return v.value
    return None

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# YAML aliases re-use a node; a few levels of aliases of aliases ("billion
# laughs") expand to billions of nodes for whatever walks the result. Real
# manifests use few or none: refuse more than this many expanded nodes.
MAX_ALIAS_NODES = 10_000


def obj_ref(obj: dict, kind: bool = True) -> str:
    """How every message names an object: "Kind ns/name" ("ns/name" without the kind)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    ns = meta.get("namespace")
    where = f"{ns}/{meta.get('name', '?')}" if ns else str(meta.get("name", "?"))
    return f"{obj.get('kind', '?') if isinstance(obj, dict) else '?'} {where}" if kind else where


# --------------------------------------------------------------------------
# Files


def read_text(path: Path) -> str:
    """A file's text, or a one-line ManifestError (unreadable, not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read ({e.strerror or e})", path=str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r}); "
                            "manifests are UTF-8 YAML or JSON", path=str(path)) from None


def _check_aliases(text: str, path: Path) -> None:
    """Refuse recursive aliases and alias expansion beyond MAX_ALIAS_NODES,
    from the parser's events, before anything is constructed."""
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    stack: list[list] = []  # open collections: [anchor, nodes so far]
    expanded = 0
    for ev in yaml.parse(text, Loader=yamlio.Loader):
        if isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent)):
            if isinstance(ev, yaml.AliasEvent):
                if any(anchor == ev.anchor for anchor, _ in stack):
                    raise ManifestError(f"invalid YAML: line {ev.start_mark.line + 1}: alias *{ev.anchor} "
                                        "refers to a node that contains it", path=str(path))
                n = sizes.get(ev.anchor, 1)
                expanded += n
                if expanded > MAX_ALIAS_NODES:
                    raise ManifestError(f"invalid YAML: aliases expand to more than {MAX_ALIAS_NODES} nodes "
                                        f"(line {ev.start_mark.line + 1}); refusing an alias bomb",
                                        path=str(path))
            else:
                n = 1
                if ev.anchor:
                    sizes[ev.anchor] = 1
            if stack:
                stack[-1][1] += n
        elif isinstance(ev, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([ev.anchor, 1])
        elif isinstance(ev, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, n = stack.pop()
            if anchor:
                sizes[anchor] = n
            if stack:
                stack[-1][1] += n


def _yaml_error(e: yaml.YAMLError, path: Path) -> ManifestError:
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return ManifestError(f"invalid YAML: {where}{problem}", path=str(path))


def _node_path(node, target, where: str = "") -> str | None:
    """The field path ("spec.ingress[0]") of the node ``target`` within the document ``node``."""
    if node is target:
        return where
    if node.__class__ is yaml.MappingNode:
        for k, v in node.value:
            if k.__class__ is yaml.ScalarNode:
                found = _node_path(v, target, f"{where}.{k.value}" if where else k.value)
                if found is not None:
                    return found
    elif node.__class__ is yaml.SequenceNode:
        for i, v in enumerate(node.value):
            found = _node_path(v, target, f"{where}[{i}]")
            if found is not None:
                return found
    return None


def _node_ref(node) -> str | None:
    """How messages name the object a document holds ("Kind ns/name"), from its nodes."""
    def scalar(mapping, key):
        if mapping.__class__ is yaml.MappingNode:
            for k, v in mapping.value:
                if k.__class__ is yaml.ScalarNode and k.value == key:
                    return v
        return None

    kind = scalar(node, "kind")
    if kind.__class__ is not yaml.ScalarNode:
        return None
    meta = scalar(node, "metadata")
    name, ns = scalar(meta, "name"), scalar(meta, "namespace")
    name = name.value if name.__class__ is yaml.ScalarNode else "?"
    return f"{kind.value} {ns.value}/{name}" if ns.__class__ is yaml.ScalarNode else f"{kind.value} {name}"


def _duplicate(e: yamlio.DuplicateKey, root, path: Path) -> ManifestError:
    field = _node_path(root, e.mapping) if root is not None else None
    return ManifestError(f"{field + ': ' if field else ''}duplicate key {e.key!r} (line {e.problem_mark.line + 1}); "
                         "a field may appear once (the API server's strict field validation refuses duplicates)",
                         path=str(path), obj=_node_ref(root) if root is not None else None)


def _json_pairs(pairs):
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise _JSONDuplicate(k)
            seen.add(k)
    return out


class _JSONDuplicate(ValueError):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def read_yaml(path: Path, keep=None, text: str | None = None) -> list:
    """The non-empty documents of a YAML (or, by suffix, JSON) file, or a
    one-line ManifestError. With ``keep`` (a set of kinds), a document of
    another kind is not built: it stands as ``{"kind": ...}`` alone.
    ``text``: the file's text, where the caller has read it."""
    if text is None:
        text = read_text(path)
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text, object_pairs_hook=_json_pairs)
        except _JSONDuplicate as e:
            loose = json.loads(text)  # parsed once more, the last value winning, to name the object
            ref = obj_ref(loose) if isinstance(loose, dict) else None
            raise ManifestError(f"duplicate key {e.key!r}; a field may appear once (the API server's strict "
                                "field validation refuses duplicates)", path=str(path), obj=ref) from None
        except ValueError as e:
            where = f"line {e.lineno} column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e)
            raise ManifestError(f"invalid JSON: {where}", path=str(path)) from None
        return [] if doc is None else [doc]
    aliases = yamlio.may_alias(text)  # the common case pays nothing
    try:
        if aliases:
            _check_aliases(text, path)
        loader = yamlio.Loader(text)
        node = None
        try:
            docs = []
            while loader.check_node():
                node = loader.get_node()
                kind = _kind_of(node) if keep is not None else None
                if kind is not None and kind not in keep and not kind.endswith("List"):
                    docs.append({"kind": kind})
                    continue
                doc = yamlio.document(node, loader, aliases)
                if doc is not None:
                    docs.append(doc)
            return docs
        finally:
            loader.dispose()
    except yamlio.DuplicateKey as e:
        raise _duplicate(e, node, path) from None
    except yaml.YAMLError as e:
        raise _yaml_error(e, path) from None
    except RecursionError:
        raise ManifestError("invalid YAML: nested too deeply", path=str(path)) from None


def load_documents(path: Path, keep=None, text: str | None = None) -> list[dict]:
    """All objects of a file: each document, ``List`` items expanded, each
    checked to be a mapping with a string kind and a name. Objects whose
    kind is not in ``keep`` (when given) are ``{"kind": ...}`` alone."""
    out = []
    for i, doc in enumerate(read_yaml(path, keep, text)):
        where = f"document {i + 1}"
        if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") \
                and "items" in doc:
            items = doc["items"] or []
            if not isinstance(items, list):
                raise ManifestError(f"{where}: {doc['kind']}.items: expected a list, got "
                                    f"{schema._type_name(items)}", path=str(path))
            entries = [(f"{where} item {j + 1}", item) for j, item in enumerate(items)]
        else:
            entries = [(where, doc)]
        for what, item in entries:
            if not isinstance(item, dict):
                raise ManifestError(f"{what}: expected a mapping (a Kubernetes object), got "
                                    f"{schema._type_name(item)}", path=str(path))
            kind = item.get("kind")
            if not isinstance(kind, str) or not kind:
                raise ManifestError(f"{what}: kind must be a non-empty string, got {kind!r}", path=str(path))
            if keep is not None and kind not in keep:
                out.append(item)
                continue
            meta = item.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
                raise ManifestError(f"{what}: metadata.name is required (a string)", path=str(path),
                                    obj=obj_ref(item))
            out.append(item)
    return out


def applied_documents(path: Path, holds: str = "objects", text: str | None = None) -> list[dict]:
    """``load_documents`` of a file that is applied as a whole (a profile's
    step, its namespaces, its workloads): one that holds no object (empty,
    or comments only) is an error, as `kubectl apply -f` says "no objects
    passed to apply", not a step that changes nothing."""
    objs = load_documents(path, text=text)
    if not objs:
        raise ManifestError(f"holds no {holds} (empty, or comments only); kubectl would say "
                            "\"no objects passed to apply\"", path=str(path))
    return objs


def check_known(objs: Iterable[dict], path: str, kinds=KNOWN_KINDS) -> None:
    for obj in objs:
        if obj["kind"] not in kinds:
            raise ManifestError(f"unknown kind {obj['kind']!r} (known: {', '.join(kinds)})",
                                path=path, obj=obj_ref(obj))


def manifest_files(root: Path) -> list[Path]:
    """The manifest files below ``root`` (itself, if a file), sorted per
    directory. Follows symlinks; a file reached twice is read once; a
    directory that leads back to one of its ancestors is a loop and an error;
    hidden entries (``.git``, ``.github``) are skipped."""
    try:
        st = root.stat()
    except OSError as e:
        raise ManifestError(f"cannot read ({e.strerror or e})", path=str(root)) from None
    if not root.is_dir():
        return [root]
    files: list[Path] = []
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()

    def walk(d: Path, ancestors: tuple[tuple[int, int], ...]) -> None:
        st = d.stat()
        ident = (st.st_dev, st.st_ino)
        if ident in ancestors:
            raise ManifestError("symlink loop: this directory leads back to one that contains it", path=str(d))
        if ident in seen_dirs:
            return  # reached again through another link: read once
        seen_dirs.add(ident)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            raise ManifestError(f"cannot read directory ({e.strerror or e})", path=str(d)) from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = entry.is_file()
                if entry.is_symlink():
                    p.stat()  # a dangling link or a link loop raises here
            except OSError as e:
                raise ManifestError(f"cannot read ({e.strerror or e})", path=str(p)) from None
            if is_dir:
                walk(p, ancestors + (ident,))
            elif is_file and p.suffix.lower() in MANIFEST_SUFFIXES:
                real = os.path.realpath(p)
                if real not in seen_files:
                    seen_files.add(real)
                    files.append(p)

    del st
    walk(root, ())
    return files


# --------------------------------------------------------------------------
# Objects


def check_object(obj: dict, path: str):
    """Structure (upstream schema) and values (API server rules) of a kind we
    read; returns the compiled policy for a NetworkPolicy or a
    ClusterNetworkPolicy (checked against its CRD), else None."""
    kind = obj["kind"]
    if kind == KCNP_KIND:
        return compile_policy(obj, path)
    ref = obj_ref(obj)
    if not schema.validate(obj, path, ref):
        raise ManifestError(f"apiVersion {obj.get('apiVersion')!r} does not serve {kind} in Kubernetes "
                            f"{schema.SCHEMA_VERSION[:4]} (use {API_VERSIONS[kind]})", path=path, obj=ref)
    meta = obj["metadata"]
    try:
        if kind in DNS_LABEL_NAMES:
            av.dns_label(meta["name"], "metadata.name")
        else:
            av.dns_subdomain(meta["name"], "metadata.name")
        if kind in MAX_NAME and len(meta["name"]) > MAX_NAME[kind]:
            raise Invalid(f"metadata.name {meta['name']!r} is {len(meta['name'])} characters; a {kind} name may "
                          f"have at most {MAX_NAME[kind]} (the names it gives its pods must stay valid)")
        if meta.get("namespace") is not None:
            av.dns_label(meta["namespace"], "metadata.namespace")
    except Invalid as e:
        raise ManifestError(str(e), path=path, obj=ref) from None
    av.labels(meta.get("labels"), "metadata.labels", path, ref)
    av.annotations(meta.get("annotations"), "metadata.annotations", path, ref)
    if kind == "Pod":
        av.containers_present(obj.get("spec"), "spec", path, ref)
        av.container_ports(obj.get("spec"), "spec", path, ref)
        ip = (obj.get("status") or {}).get("podIP")
        if ip is not None:
            try:
                av.ip(ip, "status.podIP")
            except Invalid as e:
                raise ManifestError(str(e), path=path, obj=ref) from None
    elif kind in WORKLOAD_KINDS or kind == "CronJob":
        spec = obj.get("spec") or {}
        field = "spec"
        if kind == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
            field = "spec.jobTemplate.spec"
        if kind in ("Job", "CronJob"):
            _job_selector(kind, spec, field, path, ref)
        for count in ("replicas", "parallelism"):
            if isinstance(spec.get(count), int) and not isinstance(spec[count], bool) and spec[count] < 0:
                raise ManifestError(f"{field}.{count} must not be negative, got {spec[count]}", path=path, obj=ref)
        template = spec.get("template") or {}
        tlabels = (template.get("metadata") or {}).get("labels")
        av.labels(tlabels, f"{field}.template.metadata.labels", path, ref)
        av.containers_present(template.get("spec"), f"{field}.template.spec", path, ref)
        av.container_ports(template.get("spec"), f"{field}.template.spec", path, ref)
        sel = spec.get("selector")
        if sel is not None:
            parsed = parse_selector(sel, path, ref, f"{field}.selector")
            if kind in SELECTED_KINDS and not (parsed.match_labels or parsed.expressions):
                # apps/v1 ValidateDeploymentSpec (and its siblings): "empty
                # selector is invalid for deployment"; it would take in every
                # pod of the namespace.
                raise ManifestError(f"{field}.selector: an empty selector is invalid (it would select every pod "
                                    "of the namespace; the API server refuses it)", path=path, obj=ref)
            if not parsed.matches(av.label_map(tlabels)):
                raise ManifestError(f"{field}.selector does not match {field}.template.metadata.labels "
                                    "(the API server refuses this)", path=path, obj=ref)
        elif kind in SELECTED_KINDS:
            raise ManifestError("spec.selector is required", path=path, obj=ref)
    elif kind == "NetworkPolicy":
        return compile_policy(obj, path)
    return None


def _job_selector(kind: str, spec: dict, field: str, path: str, ref: str) -> None:
    """A Job's selector is the API server's to make (pkg/apis/batch/validation):
    a Job may name one only with manualSelector: true (and then must), or
    an empty one the server fills in; a CronJob's job template never."""
    sel, manual = spec.get("selector"), spec.get("manualSelector") is True
    if kind == "CronJob":
        if manual:
            raise ManifestError(f"{field}.manualSelector: a CronJob's jobs cannot choose their selector (only "
                                "unset or false)", path=path, obj=ref)
        if sel is not None:
            raise ManifestError(f"{field}.selector: a CronJob's job template cannot have one (`selector` will be "
                                "auto-generated)", path=path, obj=ref)
    elif manual and sel is None:
        raise ManifestError(f"{field}.selector is required with manualSelector: true", path=path, obj=ref)
    elif not manual and isinstance(sel, dict) and (sel.get("matchLabels") or sel.get("matchExpressions")):
        raise ManifestError(f"{field}.selector: set without manualSelector: true, and the API server makes it "
                            "(`selector` not auto-generated); remove it or set manualSelector: true",
                            path=path, obj=ref)


def _ports(pod_spec: dict) -> tuple[Port, ...]:
    return tuple(Port(p.get("name") or None, p["containerPort"], p.get("protocol") or "TCP")
                 for c in (pod_spec or {}).get("containers") or [] for p in (c or {}).get("ports") or [])


def endpoint_of(obj: dict, path: str) -> Endpoint | None:
    """The endpoint a Pod or a workload's pod template stands for, else None.
    Call ``check_object`` first: this trusts the shape."""
    kind = obj["kind"]
    if kind not in ENDPOINT_KINDS:
        return None
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    if kind == "Pod":
        spec = obj.get("spec") or {}
        debug = (meta.get("annotations") or {}).get(DEBUG_ANNOTATION) == "debug"
        return Endpoint(key=f"{ns}/{meta['name']}", namespace=ns, name=meta["name"],
                        kind="debug" if debug else "workload", labels=av.label_map(meta.get("labels")),
                        ports=_ports(spec), replicas=1, ip=(obj.get("status") or {}).get("podIP"))
    spec = obj.get("spec") or {}
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") or {}
    if kind in ("Job", "CronJob"):
        replicas = spec.get("parallelism")
        replicas = 1 if replicas is None else replicas
    elif kind == "DaemonSet":
        replicas = 1  # one per node; offline we do not know the nodes
    else:
        replicas = spec.get("replicas")
        replicas = 1 if replicas is None else replicas
    return Endpoint(key=f"{ns}/{meta['name']}", namespace=ns, name=meta["name"], kind="workload",
                    labels=av.label_map((template.get("metadata") or {}).get("labels")),
                    ports=_ports(template.get("spec") or {}), replicas=replicas,
                    pod_selector=equality_text((spec.get("selector") or {}).get("matchLabels") or {}))


class ResourceSet:
    """Namespaces, endpoints and policies read from a set of files.

    ``default_namespace`` is where objects without ``metadata.namespace``
    go (kubectl's ``--namespace``). With ``skip_unknown``, kinds we do not
    model are counted in ``skipped`` instead of being refused.
    """

    def __init__(self, default_namespace: str = "default", skip_unknown: bool = False):
        try:
            av.dns_label(default_namespace, "namespace")
        except Invalid as e:
            raise ManifestError(f"--namespace: {e}") from None
        self.default_namespace = default_namespace
        self.skip_unknown = skip_unknown
        self.namespaces: dict[str, dict[str, str]] = {}
        self.namespace_objects: list[dict] = []
        self.objects: list[dict] = []  # non-namespace, non-policy objects in file order
        self.endpoints: list = []
        self.policies: list[dict] = []
        self.policy_sources: list[str] = []
        self.compiled: list = []  # the policies compiled for the engine, in the same order
        self.skipped: Counter = Counter()
        self._seen: dict[tuple, str] = {}
        self._keys: set[str] = set()
        self.pod_keys: set[str] = set()  # endpoints that are bare Pods, not workloads

    def add(self, obj: dict, path: str) -> None:
        kind = obj["kind"]
        if kind not in KNOWN_KINDS or (self.skip_unknown and kind not in MODELLED_KINDS):
            if not self.skip_unknown:
                raise ManifestError(f"unknown kind {kind!r} (known: {', '.join(KNOWN_KINDS)})",
                                    path=path, obj=obj_ref(obj))
            self.skipped[kind] += 1
            return
        meta = obj["metadata"]
        if kind not in CLUSTER_SCOPED and meta.get("namespace") is None:
            meta["namespace"] = self.default_namespace
        compiled = check_object(obj, path)
        ns = None if kind in CLUSTER_SCOPED else meta["namespace"]
        key = (kind, ns, meta["name"])
        if key in self._seen:
            raise ManifestError(f"duplicate {kind} (also in {self._seen[key]})", path=path, obj=obj_ref(obj))
        self._seen[key] = path
        if kind == "Namespace":
            labels = {str(k): v for k, v in av.label_map(meta.get("labels")).items()}
            self.namespaces[meta["name"]] = {**labels, NS_NAME_LABEL: meta["name"]}
            self.namespace_objects.append(obj)
        elif kind in POLICY_KINDS:
            self.policies.append(obj)
            self.policy_sources.append(path)
            self.compiled.append(compiled)
        else:
            self.objects.append(obj)
            ep = endpoint_of(obj, path)
            if ep is not None:
                # Pods and workloads share one key space ("ns/name"): a Pod
                # and a Deployment of the same name would be ambiguous.
                if ep.key in self._keys:
                    raise ManifestError(f"duplicate endpoint name {ep.key}", path=path, obj=obj_ref(obj))
                self._keys.add(ep.key)
                self.endpoints.append(ep)
                if kind == "Pod":
                    self.pod_keys.add(ep.key)

    def check_namespaces(self, extra: Iterable[str] = ()) -> None:
        """Every namespaced object must live in a namespace we know."""
        known = set(self.namespaces) | set(extra)
        for obj in self.objects + self.policies:
            if obj["kind"] in CLUSTER_SCOPED:
                continue
            ns = obj["metadata"].get("namespace") or "default"
            if ns not in known:
                raise ManifestError(f"namespace {ns!r} does not exist (no Namespace object for it)",
                                    path=self._seen[(obj["kind"], ns, obj["metadata"]["name"])],
                                    obj=obj_ref(obj))


def _profile_excludes(directory: Path) -> set[str]:
    """A profile directory holds two files that are not Kubernetes objects:
    profile.yaml and its matrix. Everything else in it is a manifest."""
    meta = directory / "profile.yaml"
    if not meta.is_file():
        return set()
    docs = read_yaml(meta)
    matrix = docs[0].get("matrix", "matrix.yaml") if len(docs) == 1 and isinstance(docs[0], dict) else "matrix.yaml"
    return {os.path.realpath(meta), os.path.realpath(directory / str(matrix))}


def read_dir(directory: Path, namespace: str = "default", check_namespaces: bool = True) -> ResourceSet:
    """Every manifest below ``directory`` (or the one file it names): kinds we
    do not model are skipped (see ``skipped``). For reachability it must hold
    Pods or workloads; ``check_namespaces=False`` reads a tree of policies
    only (for a profile's namespaces, declaring none; possibly empty) and
    leaves both checks to the caller."""
    directory = Path(directory)
    rs = ResourceSet(default_namespace=namespace, skip_unknown=True)
    files = manifest_files(directory)
    if directory.is_dir():
        exclude = _profile_excludes(directory)
        files = [f for f in files if os.path.realpath(f) not in exclude]
    if not files and check_namespaces:
        raise ManifestError("no manifests here (no .yaml, .yml or .json files)", path=str(directory))
    count = 0
    for f in files:
        for obj in load_documents(f, keep=MODELLED_KINDS):
            count += 1
            rs.add(obj, str(f))
    if not check_namespaces:
        return rs
    if not rs.endpoints:
        what = f"{count} object(s) in {len(files)} file(s)" if count else f"{len(files)} empty file(s)"
        raise ManifestError(f"no Pods or workloads ({', '.join(ENDPOINT_KINDS[1:])}) among {what}",
                            path=str(directory))
    # The default namespace always exists in a cluster (as does the one
    # named with --namespace: kubectl assumes it); others must be declared.
    rs.check_namespaces(extra=("default", namespace))
    return rs
