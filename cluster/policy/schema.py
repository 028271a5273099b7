"""Structural checks of Kubernetes objects against the upstream OpenAPI schema.

The schemas are the JSON-schema form of the Kubernetes OpenAPI that the
``kubernetes-validate`` package ships per Kubernetes release (strict
variant: unknown fields are errors, as with kubectl's default
``--validate=strict``); we pin the release our clusters run
(``SCHEMA_VERSION``). Its own ``validate()`` reloads the 1.4 MB definitions
file and builds a validator for every object (about 2 ms an object), so we
read the files once and compile one validator per (apiVersion, kind) with
``fastjsonschema``, which turns a schema into Python code (tens of
microseconds an object).

Only what we read is checked in depth: ``READ`` lists, per kind, the fields
the tool uses. On the way down to them every level keeps its full list of
fields (so a misspelt field is still an error) and every other field keeps
its type (a list where a map goes is still an error); what lies below the
fields we do not read is left to the API server. Compiling the whole pod
template schema would cost about a second per kind and process.

Even pruned, compiling a validator costs 0.1-0.3 s, so the compiled code is
kept in a cache directory (``$DASHI_CACHE_DIR``, default
``~/.cache/dashi-cluster``) under a digest of everything it depends on;
a later run loads it in well under a millisecond. An unwritable cache only
makes every run compile again.

Semantic rules the schema cannot express (label syntax, port ranges, IPs)
are in ``cluster.policy.apivalidation``.
"""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import re
import sys
import time
import zlib
from functools import lru_cache
from pathlib import Path

from cluster.errors import DashiError, ManifestError

# Kubernetes release whose API the checks follow (the k3s pin is v1.33.x).
SCHEMA_VERSION = "1.33.0"

# Labels and annotations keep their type here (a map); their keys and
# values are checked by apivalidation, which says more than "must be string".
_META = {"name": True, "namespace": True}
_CONTAINER = {"name": True, "ports": True}
_POD_SPEC = {"containers": {"*": _CONTAINER}, "initContainers": {"*": _CONTAINER}, "hostNetwork": True}
_TEMPLATE = {"metadata": _META, "spec": _POD_SPEC}
_WORKLOAD = {"metadata": _META, "spec": {"replicas": True, "selector": True, "template": _TEMPLATE}}
_JOB_SPEC = {"parallelism": True, "selector": True, "template": _TEMPLATE}
# Per kind, the fields we read (True: the whole subtree).
READ = {
    "Namespace": {"metadata": _META},
    "Pod": {"metadata": _META, "spec": _POD_SPEC, "status": {"podIP": True, "podIPs": True}},
    "Deployment": _WORKLOAD,
    "StatefulSet": _WORKLOAD,
    "DaemonSet": _WORKLOAD,
    "ReplicaSet": _WORKLOAD,
    "Job": {"metadata": _META, "spec": _JOB_SPEC},
    "CronJob": {"metadata": _META, "spec": {"jobTemplate": {"metadata": _META, "spec": _JOB_SPEC}}},
    "NetworkPolicy": True,
    # Applied to clusters as part of a profile's stand-ins: small, checked whole.
    "Service": True,
    "ServiceAccount": True,
    "ConfigMap": True,
    "Secret": True,
}


def _schema_dir() -> Path:
    # find_spec locates the package without importing it (its __init__
    # imports jsonschema, a quarter of a second we do not need).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise DashiError("the kubernetes-validate package is missing: pip install kubernetes-validate")
    return Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema" / \
        f"v{SCHEMA_VERSION}-local-strict"


_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


# The API's integers are Go int32 and int64: a value past their range is
# refused when the server decodes the object ("cannot unmarshal number
# 3000000000 into ... of type int32"). The OpenAPI says so only as a format,
# which fastjsonschema does not check (nor should it: use_formats=False
# skips the costly string formats); as a range it does.
_INT_RANGES = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}


def _simplify(node):
    """IntOrString is ``oneOf: [string|null, integer|null]``, which null
    matches twice (so ``oneOf`` fails); as one type list it means what the
    API means and reads better in an error. An int32 or int64 gets its
    range."""
    if isinstance(node, dict):
        fmt, types = node.get("format"), node.get("type")
        bounds = _INT_RANGES.get(fmt) if isinstance(fmt, str) else None
        if bounds and "integer" in (types if isinstance(types, list) else [types]):
            node = {"minimum": bounds[0], "maximum": bounds[1], **node}
        alts = node.get("oneOf")
        if alts and all(set(a) == {"type"} for a in alts):
            types = []
            for a in alts:
                for t in a["type"] if isinstance(a["type"], list) else [a["type"]]:
                    if t not in types:
                        types.append(t)
            node = {k: v for k, v in node.items() if k != "oneOf"}
            node["type"] = types
        return {k: _simplify(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_simplify(v) for v in node]
    return node


# Where the pinned OpenAPI is stricter than the API server, the server wins:
# the tool must not refuse what `kubectl apply` is accepted for. Each entry
# is checked against a real kube-apiserver of the pinned release by
# tests/e2e/test_apiserver_agreement_e2e.py.
#
# NetworkPolicySpec.podSelector: the 1.33 OpenAPI lists it as required, but
# the API server accepts a policy without it (the lane's 1.33.13 one does:
# the differential test sends one), and such a policy selects every pod of
# its namespace, as an empty selector does. kubernetes/kubernetes PR 131354
# ("Clarify optional podSelector in NetworkPolicy docs and schema", issue
# 130896) corrected the schema from 1.34 on; real repositories hold such
# policies.
NOT_REQUIRED = {"io.k8s.api.networking.v1.NetworkPolicySpec": ("podSelector",)}


def _server_wins(defs: dict) -> dict:
    for name, fields in NOT_REQUIRED.items():
        node = defs[name]
        node["required"] = [r for r in node.get("required", []) if r not in fields]
        if not node["required"]:
            del node["required"]
    return defs


@lru_cache(maxsize=1)
def _definitions() -> dict:
    path = _schema_dir() / "_definitions.json"
    try:
        return _server_wins(_simplify(json.loads(path.read_text())["$defs"]))
    except (OSError, ValueError, KeyError) as e:
        raise DashiError(f"cannot read the Kubernetes schema {path}: {e}") from None


def _resolve(node: dict, defs: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = defs[_REF.match(node["$ref"]).group(1)]
    return node


def _collect(node, defs: dict, out: dict) -> None:
    """Copy every definition ``node`` refers to (transitively) into ``out``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref:
            name = _REF.match(ref).group(1)
            if name not in out:
                out[name] = defs[name]
                _collect(defs[name], defs, out)
        for v in node.values():
            _collect(v, defs, out)
    elif isinstance(node, list):
        for v in node:
            _collect(v, defs, out)


def _local_refs(node):
    if isinstance(node, dict):
        return {k: ("#/$defs/" + _REF.match(v).group(1) if k == "$ref" else _local_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_local_refs(v) for v in node]
    return node


def _shallow(node: dict, defs: dict) -> dict:
    """A field we do not read: its type only."""
    node = _resolve(node, defs)
    return {"type": node["type"]} if "type" in node else {}


def _inline(node, defs: dict, used: dict, within: tuple = ()):
    """``node`` with every reference written out in place, except one that
    leads back into itself (kept as a reference, its definition collected).
    A reference compiles to a call whose error-path argument is formatted
    from ``locals()`` on every call (a tenth of the checking time)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref:
            name = _REF.match(ref).group(1)
            if name in within:
                _collect(node, defs, used)
                return node
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[name], defs, used, within + (name,)), **rest}
        return {k: _inline(v, defs, used, within) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs, used, within) for v in node]
    return node


def _prune(node: dict, keep, defs: dict, used: dict) -> dict:
    if keep is True:
        return _inline(node, defs, used)
    node = _resolve(node, defs)
    if "*" in keep:
        return {"type": node.get("type", "array"), "items": _prune(node["items"], keep["*"], defs, used)}
    out = {k: v for k, v in node.items() if k in ("type", "required", "additionalProperties")}
    out["properties"] = {name: _prune(sub, keep[name], defs, used) if name in keep else _shallow(sub, defs)
                         for name, sub in (node.get("properties") or {}).items()}
    return out


def _schema_file(api_version: str, kind: str) -> Path:
    # apps/v1 -> apps-v1, networking.k8s.io/v1 -> networking-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return _schema_dir() / f"{kind.lower()}-{group_version}.json"


def _compile(path: Path, kind: str):
    """The code object of a validator module for one schema file."""
    import fastjsonschema

    try:
        top = _simplify(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise DashiError(f"cannot read the Kubernetes schema {path}: {e}") from None
    defs = _definitions()
    used: dict = {}
    top.pop("$id", None)
    top.pop("$schema", None)
    schema = _prune(top, READ[kind], defs, used)
    schema = _local_refs({"$schema": "http://json-schema.org/draft-07/schema#", **schema, "$defs": used})
    return compile(fastjsonschema.compile_to_code(schema, use_formats=False), f"<schema {path.name}>", "exec")


def cache_dir() -> Path:
    return Path(os.environ.get("DASHI_CACHE_DIR") or Path.home() / ".cache" / "dashi-cluster")


@lru_cache(maxsize=1)
def _digest() -> str:
    """Everything a compiled validator depends on: this module (the pruning),
    the schema release, the validator library and the interpreter (marshal's
    format is version-specific). Every run computes it, so it is cheap: two
    checksums from zlib (64 bits, against accidental collisions among a
    few versions of a few files) where hashlib's import alone (OpenSSL's
    bindings) costs a few milliseconds, and the validator library's
    version file read rather than the library imported."""
    crc, adler = 0, 1
    own = sorted(p for p in (Path(__file__).parent / "schemas").iterdir() if p.suffix in (".json", ".yaml"))
    spec = importlib.util.find_spec("fastjsonschema")
    library = Path(spec.origin).with_name("version.py").read_bytes() if spec and spec.origin else b""
    for part in (Path(__file__).read_bytes(), *(p.read_bytes() for p in own), SCHEMA_VERSION.encode(), str(_schema_dir()).encode(),
                 library, sys.version.encode()):
        crc, adler = zlib.crc32(part + b"\0", crc), zlib.adler32(part + b"\0", adler)
    return f"{crc:08x}{adler:08x}"


def _cached(stem: str, build):
    """The ``validate`` function of a generated validator module: from the
    cache when there, else ``build()`` (a code object) and cached."""
    cached = cache_dir() / "schema" / f"{_digest()}-{stem}.marshal"
    try:
        code = marshal.loads(cached.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        code = build()
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            # Validators of other versions, unused for a week (two checkouts
            # of different versions may share the cache meanwhile).
            week_ago = time.time() - 7 * 86400
            for old in cached.parent.glob("*.marshal"):
                if not old.name.startswith(_digest()) and old.stat().st_mtime < week_ago:
                    old.unlink(missing_ok=True)
            import tempfile  # only on a miss: a few milliseconds to import

            fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps(code))
            os.replace(tmp, cached)
        except OSError:
            pass  # no cache: the next run compiles again
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - code generated by fastjsonschema from a pinned schema
    return namespace["validate"]


@lru_cache(maxsize=None)
def _validator(api_version: str, kind: str):
    path = _schema_file(api_version, kind)
    if not path.is_file():
        return None
    return _cached(path.stem, lambda: _compile(path, kind))


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__  # dates and times YAML made of unquoted values


_NAMES = {"object": "a map", "array": "a list", "string": "a string", "integer": "an integer",
          "number": "a number", "boolean": "true or false"}


def _message(e) -> str:
    field = e.name[5:] if e.name.startswith("data.") else "(the object)"
    definition = e.definition if isinstance(e.definition, dict) else {}
    if e.rule == "type":
        types = definition.get("type")
        types = [t for t in (types if isinstance(types, list) else [types]) if t != "null"]
        return f"{field}: expected {' or '.join(_NAMES.get(t, t) for t in types)}, got {_type_name(e.value)}"
    if e.rule == "additionalProperties":
        allowed = set((definition.get("properties") or {}))
        extra = sorted(str(k) for k in (e.value or {}) if k not in allowed)
        return f"{field}: unknown field{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
    if e.rule == "required":
        missing = [r for r in definition.get("required", []) if r not in (e.value or {})]
        return f"{field}: missing required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    if e.rule in ("minimum", "maximum"):
        if isinstance(definition.get("format"), str) and definition["format"] in _INT_RANGES:
            return f"{field}: {e.value!r} does not fit the API's {definition['format']} " \
                   f"({definition.get('minimum')} to {definition.get('maximum')})"
        return f"{field}: {e.value!r} is out of range {definition.get('minimum')}-{definition.get('maximum')}"
    if e.rule == "pattern":
        return f"{field}: {e.value!r} does not match {definition.get('pattern')}"
    if e.rule in ("maxLength", "minLength"):
        return f"{field}: {e.value!r} must be {definition.get('minLength', 0)}-{definition.get('maxLength', 'any')} " \
               "characters long"
    if e.rule == "enum":
        return f"{field}: must be {' or '.join(map(str, definition.get('enum', [])))}, got {e.value!r}"
    if e.rule in ("minProperties", "maxProperties"):
        fields = ", ".join(definition.get("properties") or ())
        if definition.get("minProperties") == definition.get("maxProperties") == 1:
            got = ", ".join(map(str, e.value or ())) or "none"
            return f"{field}: exactly one of {fields} must be set, got {got}"
        return f"{field}: at least one of {fields} must be set"
    if e.rule in ("minItems", "maxItems"):
        n = len(e.value) if isinstance(e.value, list) else "?"
        if e.rule == "minItems":
            return f"{field}: must have at least {definition.get('minItems')} item(s), got {n}"
        return f"{field}: must have at most {definition.get('maxItems')} items, got {n}"
    if e.rule == "uniqueItems":
        return f"{field}: duplicate items ({', '.join(map(repr, e.value or ()))}): the API keeps it as a set"
    if e.rule == "propertyNames":
        # fastjsonschema names neither the key nor the rule ("must be named
        # by propertyName definition"); the keys its schema allows are an enum.
        allowed = (definition.get("propertyNames") or {}).get("enum") or []
        bad = [str(k) for k in (e.value or {}) if str(k) not in allowed]
        return f"{field}: unknown key{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))} " \
               f"(known: {', '.join(map(str, allowed))})"
    return e.message.replace(e.name, field, 1)


def validate(obj: dict, path: str, ref: str) -> bool:
    """Check a kind we read against the upstream schema; False when the
    schema has no such kind (the caller decides whether that is an error).
    Raises ManifestError naming the file, the object and the field."""
    import fastjsonschema

    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind not in READ or not isinstance(api_version, str):
        return False
    check = _validator(api_version, kind)
    if check is None:
        return False
    try:
        check(obj)
    except fastjsonschema.JsonSchemaValueException as e:
        raise ManifestError(_message(e), path=path, obj=ref) from None
    return True


@lru_cache(maxsize=None)
def _own(name: str):
    def build():
        import fastjsonschema

        path = Path(__file__).parent / "schemas" / f"{name}.schema.json"
        code = fastjsonschema.compile_to_code(json.loads(path.read_text()), use_formats=False)
        return compile(code, f"<schema {path.name}>", "exec")

    return _cached(f"own-{name}", build)


def validate_file(name: str, data, path: str) -> None:
    """Check one of our own files (``schemas/<name>.schema.json``: profile, matrix)."""
    import fastjsonschema

    try:
        _own(name)(data)
    except fastjsonschema.JsonSchemaValueException as e:
        raise ManifestError(_message(e), path=path) from None


# --------------------------------------------------------------------------
# ClusterNetworkPolicy: its CRD is the schema

# The CRD as sigs.k8s.io/network-policy-api ships it (config/crd/experimental/,
# the channel with destinationNamedPort, nodes and domainNames), unchanged;
# cluster-up installs the same file (versions.NETWORK_POLICY_API_SHA256).
CNP_CRD = Path(__file__).parent / "schemas" / "policy.networking.k8s.io_clusternetworkpolicies.yaml"
CNP_GROUP = "policy.networking.k8s.io"
_OPENAPI_ONLY = ("description", "format", "default", "nullable")


def _from_openapi(node):
    """A CRD's structural OpenAPI v3 schema as a JSON schema for fastjsonschema:
    a map with properties refuses other fields (the API server's strict field
    validation, kubectl's default), a ``set`` list refuses duplicates; the
    CEL rules (``x-kubernetes-validations``) are checked by the caller."""
    if isinstance(node, list):
        return [_from_openapi(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _from_openapi(v) for k, v in node.items()
           if k not in _OPENAPI_ONLY and not k.startswith("x-kubernetes-")}
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


@lru_cache(maxsize=1)
def _cnp_crd() -> dict:
    from cluster import yamlio  # libyaml: 0.03 s for this 141 KiB file, PyYAML's pure-Python safe_load 0.32 s

    return yamlio.load(CNP_CRD.read_bytes())


def cnp_versions() -> tuple[str, ...]:
    """The API versions the pinned CRD serves (v1alpha2 and v1beta1 since v0.3.0)."""
    return tuple(f"{CNP_GROUP}/{v['name']}" for v in _cnp_crd()["spec"]["versions"] if v.get("served"))


@lru_cache(maxsize=None)
def _cnp_validator(api_version: str):
    def build():
        import fastjsonschema

        version = api_version.rsplit("/", 1)[1]
        crd = next(v for v in _cnp_crd()["spec"]["versions"] if v["name"] == version)
        schema = {"$schema": "http://json-schema.org/draft-07/schema#",
                  **_from_openapi(crd["schema"]["openAPIV3Schema"])}
        return compile(fastjsonschema.compile_to_code(schema, use_formats=False), f"<schema CRD {version}>", "exec")

    return _cached(f"crd-clusternetworkpolicies-{api_version.rsplit('/', 1)[1]}", build)


def validate_cnp(obj: dict, path: str, ref: str) -> None:
    """Check a ClusterNetworkPolicy against its CRD's schema for its apiVersion
    (the caller has checked that the CRD serves it). Raises ManifestError
    naming the file, the object and the field."""
    import fastjsonschema

    try:
        _cnp_validator(obj["apiVersion"])(obj)
    except fastjsonschema.JsonSchemaValueException as e:
        raise ManifestError(_message(e), path=path, obj=ref) from None
