"""Read what Flux applies from a repository tree, without kustomize or a cluster.

``read_flux_tree`` starts at ``flux/bootstrap/flux-system/infrastructure.yaml``
(the chapter's wiring, which ``inv export`` writes), takes the Flux
Kustomizations (``kustomize.toolkit.fluxcd.io/v1``) named
``network-policies*`` and those they depend on, and builds each one's
``spec.path``. Flux's kustomize-controller builds a path as kustomize does
(fluxcd/pkg ``kustomize/kustomize_generator.go``): a ``kustomization.yaml``
if there is one, otherwise one generated from every YAML file below the
path, a subdirectory with its own kustomization counting as one resource;
files may be loaded from anywhere inside the repository
(``LoadRestrictionsNone``); ``spec.targetNamespace`` becomes the build's
``namespace``.

``build`` models the part of kustomize that such trees use:

* ``resources``: local files and directories (no remote bases);
* ``namespace``: set on every namespaced object (kustomize would rename a
  Namespace object, which is refused here rather than guessed);
* ``patches`` that delete objects (``$patch: delete``), selected by
  ``target`` (kind, group, version, name, namespace, labelSelector) or by the
  patch's own kind and name.

Anything else a kustomization or a Flux Kustomization may say (other
patches, name prefixes, common labels, components, post-build substitution,
a remote kubeConfig) is refused with the file and the field: a tool that
guessed would show a reviewer the wrong connectivity. Build such trees with
kustomize and compare the output directories instead. ``export`` writes only
what this module reads, and a test builds every exported overlay with
``kubectl kustomize`` as well and compares.

Pure: files only.
"""

from __future__ import annotations

from pathlib import Path

from cluster import yamlio
from cluster.errors import Invalid, ManifestError
from cluster.policy.engine.model import KCNP_KIND
from cluster.policy.manifests import load_documents, obj_ref, read_yaml
from cluster.selectors import parse_text

FLUX_API = "kustomize.toolkit.fluxcd.io/v1"
KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
WIRING = Path("flux/bootstrap/flux-system/infrastructure.yaml")
POLICY_KUSTOMIZATION_PREFIX = "network-policies"
# kustomize's recognised file names (sigs.k8s.io/kustomize api/konfig).
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")

_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches"}
# Fields of a Flux Kustomization's spec that change what gets applied and are
# not modelled; the others (interval, prune, dependsOn, wait, timeout...)
# change when and how, not what.
_FLUX_CONTENT_FIELDS = ("patches", "images", "namePrefix", "nameSuffix", "commonMetadata", "components",
                        "postBuild", "kubeConfig")
_TARGET_FIELDS = {"kind", "group", "version", "name", "namespace", "labelSelector"}
_NOT_MODELLED = ("is not modelled by policies-diff (it reads resources, namespace and delete patches); "
                 "build with kustomize and compare the output directories")

Built = list[tuple[dict, str]]  # (object, the file it came from)


def kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def find_root(directory: Path) -> Path | None:
    """The repository root of a Flux tree given as the root or as its ``flux/`` directory."""
    if (directory / WIRING).is_file():
        return directory
    if directory.name == WIRING.parts[0] and (directory.parent / WIRING).is_file():
        return directory.parent
    return None


def _inside(base: Path, rel: str, root: Path, where: str, what: str) -> Path:
    resolved = (base / rel).resolve()
    if resolved != root and root not in resolved.parents:
        raise ManifestError(f"{what} {rel!r} leaves the repository ({root})", path=where)
    return resolved


# -- label selectors (the string form: "a=b,c!=d,e in (f,g),!h") -------------


def label_matcher(text: str, where: str):
    """A predicate over a labels dict for a kustomize target's labelSelector
    (``selectors.parse_text``)."""
    try:
        return parse_text(text).matches
    except Invalid as e:
        raise ManifestError(f"labelSelector {text!r}: {e}", path=where) from None


# -- kustomize build (the modelled subset) -----------------------------------


def _delete_patch(entry, base: Path, kfile: str, i: int):
    """A predicate selecting the objects a delete patch removes."""
    what = f"patches[{i}]"
    if not isinstance(entry, dict) or set(entry) - {"target", "patch", "path"}:
        raise ManifestError(f"{what}: only 'target' with 'patch' or 'path' {_NOT_MODELLED}", path=kfile)
    if "path" in entry:
        docs = read_yaml(base / str(entry["path"]))
    else:
        try:
            docs = [d for d in yamlio.load_all(str(entry.get("patch") or "")) if d is not None]
        except yamlio.YAMLError:
            raise ManifestError(f"{what}: the patch is not valid YAML", path=kfile) from None
    if len(docs) != 1 or not isinstance(docs[0], dict) or docs[0].get("$patch") != "delete":
        raise ManifestError(f"{what}: a patch that does not delete {_NOT_MODELLED}", path=kfile)
    doc = docs[0]
    target = entry.get("target")
    if target is None:
        meta = doc.get("metadata") or {}
        target = {"kind": doc.get("kind"), "name": meta.get("name"), "namespace": meta.get("namespace")}
        target = {k: v for k, v in target.items() if v}
    if not isinstance(target, dict) or set(target) - _TARGET_FIELDS:
        raise ManifestError(f"{what}: target fields other than {', '.join(sorted(_TARGET_FIELDS))} "
                            f"{_NOT_MODELLED}", path=kfile)
    labels = label_matcher(target["labelSelector"], kfile) if target.get("labelSelector") else None

    def selects(obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        for key, actual in (("kind", obj.get("kind")), ("name", meta.get("name")),
                            ("namespace", meta.get("namespace")), ("group", group), ("version", version)):
            if target.get(key) is not None and target[key] != actual:
                return False
        return labels is None or labels(meta.get("labels") or {})

    return selects


def _generated(directory: Path, root: Path) -> Built:
    """Flux's generated kustomization: every YAML file below, a subdirectory
    with a kustomization as one unit."""
    out: Built = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            out += build(entry, root) if kustomization_file(entry) else _generated(entry, root)
        elif entry.suffix in (".yaml", ".yml"):
            out += [(o, str(entry)) for o in load_documents(entry)]
    return out


def build(directory: Path, root: Path | None = None) -> Built:
    """The objects ``kustomize build directory`` yields, within the modelled
    subset. Nothing is read from outside ``root`` (default: anywhere, as
    ``kubectl kustomize`` reads directories)."""
    directory = Path(directory).resolve()
    root = Path(root or directory.anchor).resolve()
    kfile = kustomization_file(directory)
    if kfile is None:
        return _generated(directory, root)
    where = str(kfile)
    docs = read_yaml(kfile)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ManifestError("a kustomization must be one YAML mapping", path=where)
    spec = docs[0]
    for key in spec:
        if key not in _KUSTOMIZATION_FIELDS:
            raise ManifestError(f"field {key!r} {_NOT_MODELLED}", path=where)
    if spec.get("apiVersion", KUSTOMIZE_API) != KUSTOMIZE_API or spec.get("kind", "Kustomization") != "Kustomization":
        raise ManifestError(f"{spec.get('apiVersion')}/{spec.get('kind')} {_NOT_MODELLED}", path=where)
    objs: Built = []
    for res in spec.get("resources") or []:
        if not isinstance(res, str) or "://" in res or res.startswith(("github.com/", "git@")):
            raise ManifestError(f"resource {res!r}: only local files and directories are read", path=where)
        target = _inside(directory, res, root, where, "resource")
        if target.is_dir():
            objs += build(target, root)
        elif target.is_file():
            objs += [(o, str(target)) for o in load_documents(target)]
        else:
            raise ManifestError(f"resource {res!r} does not exist", path=where)
    deletes = [_delete_patch(p, directory, where, i) for i, p in enumerate(spec.get("patches") or [])]
    objs = [(o, s) for o, s in objs if not any(sel(o) for sel in deletes)]
    ns = spec.get("namespace")
    return _set_namespace(objs, ns, where) if ns else objs


def _set_namespace(objs: Built, namespace: str, where: str) -> Built:
    out = []
    for obj, src in objs:
        if obj["kind"] == "Namespace":
            raise ManifestError(f"{obj_ref(obj)} under 'namespace: {namespace}' (kustomize renames it) "
                                f"{_NOT_MODELLED}", path=where)
        if obj["kind"] == KCNP_KIND:
            # kustomize knows the built-in kinds that are cluster-scoped; a
            # custom resource's kind it takes as namespaced and writes the
            # namespace into it.
            raise ManifestError(f"{obj_ref(obj)} under 'namespace: {namespace}': kustomize would write that "
                                "namespace into this cluster-scoped object (it takes a custom resource's kind "
                                "as namespaced); keep ClusterNetworkPolicies in a kustomization without "
                                "namespace:", path=where)
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        out.append((obj, src))
    return out


# -- the Flux wiring ----------------------------------------------------------


def _selected(kustomizations: dict[str, dict]) -> list[str]:
    names = [n for n in kustomizations if n.startswith(POLICY_KUSTOMIZATION_PREFIX)]
    todo, seen = list(names), []
    while todo:
        n = todo.pop(0)
        if n in seen:
            continue
        seen.append(n)
        for dep in (kustomizations[n].get("spec") or {}).get("dependsOn") or []:
            name = (dep or {}).get("name") if isinstance(dep, dict) else None
            if name in kustomizations:
                todo.append(name)
    return seen


def read_flux_tree(directory: Path) -> tuple[list[dict], Built]:
    """Namespaces, NetworkPolicies and ClusterNetworkPolicies (with their
    files) that the tree's network-policies Kustomizations, and what they
    depend on, apply."""
    root = find_root(Path(directory))
    if root is None:
        raise ManifestError(f"no {WIRING} here", path=str(directory))
    root = root.resolve()
    wiring = root / WIRING
    kustomizations: dict[str, dict] = {}
    for obj in load_documents(wiring):
        if obj.get("kind") != "Kustomization":
            continue
        if obj.get("apiVersion") != FLUX_API:
            if str(obj["metadata"]["name"]).startswith(POLICY_KUSTOMIZATION_PREFIX):
                raise ManifestError(f"apiVersion {obj.get('apiVersion')!r}: only {FLUX_API} is read",
                                    path=str(wiring), obj=obj_ref(obj))
            continue
        kustomizations[obj["metadata"]["name"]] = obj
    names = _selected(kustomizations)
    if not names:
        raise ManifestError(f"no Flux Kustomization named {POLICY_KUSTOMIZATION_PREFIX}-*", path=str(wiring))
    namespaces: list[dict] = []
    policies: Built = []
    for name in names:
        ks = kustomizations[name]
        spec = ks.get("spec") or {}
        ref = obj_ref(ks)
        for key in _FLUX_CONTENT_FIELDS:
            if key in spec:
                raise ManifestError(f"spec.{key} {_NOT_MODELLED}", path=str(wiring), obj=ref)
        path = spec.get("path")
        if not isinstance(path, str) or not path.strip("./"):
            raise ManifestError("spec.path must name a directory of the repository", path=str(wiring), obj=ref)
        target = _inside(root, path, root, str(wiring), "spec.path")
        if not target.is_dir():
            raise ManifestError(f"spec.path {path!r} is not a directory", path=str(wiring), obj=ref)
        objs = build(target, root)
        if spec.get("targetNamespace"):
            objs = _set_namespace(objs, spec["targetNamespace"], str(wiring))
        for obj, src in objs:
            if obj["kind"] == "Namespace":
                namespaces.append(obj)
            elif obj["kind"] == KCNP_KIND:
                policies.append((obj, src))
            elif obj["kind"] == "NetworkPolicy":
                if not obj["metadata"].get("namespace"):
                    raise ManifestError(f"no namespace after the build of {ref} (set namespace: in the "
                                        "kustomization or spec.targetNamespace)", path=src, obj=obj_ref(obj))
                policies.append((obj, src))
    return namespaces, policies
