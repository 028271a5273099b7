"""Label selectors, in one place, for every layer.

A LabelSelector (``{"matchLabels": {k: v}, "matchExpressions": [{key,
operator, values}]}``, k8s.io/apimachinery pkg/apis/meta/v1) is:

* parsed and validated here (``parse``), as the API server validates one:
  label keys and values (``qualified_name``, ``label_value``, the rules of
  apimachinery's IsQualifiedName and IsValidLabelValue), and each
  expression's operator and values: In and NotIn need values, Exists and
  DoesNotExist take none;
* matched against an object's labels (``Selector.matches``): matchLabels
  and matchExpressions ANDed; NotIn and DoesNotExist match an object
  without the key, In and Exists do not. An empty selector matches
  everything. Where a selector is optional (a list's label selector,
  ``spec.podSelector``), ``None`` is read as the empty one; where nil means
  "not set" (a NetworkPolicy peer's selectors), the caller decides;
* rendered to the query string the API takes (``render``), as
  apimachinery's LabelSelectorAsSelector writes it: ``k=v``, ``k in
  (a,b)``, ``k notin (a,b)``, ``k``, ``!k``, joined by commas.

Two text forms are read here too: ``a=b,c=d``, the equality form a profile
writes and a workload's matchLabels give (``parse_equality``,
``equality_text``), and the full string form kubectl and kustomize take,
``a=b,c!=d,e in (f,g),!h`` (``parse_text``).

Errors are ``Invalid``, one line saying why and naming the field; each
caller turns it into its own error (a ManifestError naming the file and
the object, a KubeError at the Kubernetes seam). Imports no layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cluster.errors import Invalid

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
# A label key's prefix; also the rule for most object names (apivalidation).
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Keys and label values already found valid: manifests repeat the same few
# (app, tier, app.kubernetes.io/name, ...) on every object.
_VALID_KEYS: set[str] = set()
_VALID_VALUES: set[str] = set()


# --------------------------------------------------------------------------
# Label keys and values


def qualified_name(value) -> None:
    """A label or annotation key: [prefix/]name, prefix a DNS subdomain."""
    if value.__class__ is str and value in _VALID_KEYS:
        return
    if not isinstance(value, str):
        raise Invalid(f"key {value!r} must be a string")
    prefix, slash, name = value.rpartition("/")
    if slash and not prefix:
        raise Invalid(f"key {value!r}: the prefix before '/' is empty")
    if slash:
        if len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix):
            raise Invalid(f"key {value!r}: prefix {prefix!r} must be a DNS subdomain "
                          "(lowercase letters, digits, '-' and '.', at most 253 characters)")
    if not name or len(name) > 63 or not _NAME_PART.match(name):
        raise Invalid(f"key {value!r}: name part must be 1-63 characters of letters, digits, '-', '_' "
                      "or '.', starting and ending with a letter or digit")
    _VALID_KEYS.add(value)


def label_value(value) -> None:
    if value.__class__ is str and value in _VALID_VALUES:
        return
    if value is None:  # JSON null decodes into a Go string as "": the empty value
        return
    if not isinstance(value, str):
        raise Invalid(f"value {value!r} must be a string (quote it in YAML)")
    if value and (len(value) > 63 or not _NAME_PART.match(value)):
        raise Invalid(f"value {value!r} must be at most 63 characters of letters, digits, '-', '_' or '.', "
                      "starting and ending with a letter or digit")
    _VALID_VALUES.add(value)


def check_labels(mapping, field: str, check_value=label_value) -> None:
    """A map of label keys to values (``check_value`` checks each value:
    annotations take any string), as in metadata.labels or matchLabels."""
    if mapping is None:
        return
    if not isinstance(mapping, dict):
        raise Invalid(f"{field}: expected a map")
    for key, value in mapping.items():
        try:
            qualified_name(key)
            check_value(value)
        except Invalid as e:
            raise Invalid(f"{field}[{key!r}]: {e}" if isinstance(key, str) else f"{field}: {e}") from None


def _check_keys_and_values(data, what: str) -> None:
    """A LabelSelector's matchLabels as labels; its expressions' keys and values."""
    if not isinstance(data, dict):
        return
    check_labels(data.get("matchLabels"), f"{what}.matchLabels")
    for i, expr in enumerate(data.get("matchExpressions") or []):
        if not isinstance(expr, dict):
            continue
        try:
            qualified_name(expr.get("key"))
            for v in expr.get("values") or []:
                label_value(v)
        except Invalid as e:
            raise Invalid(f"{what}.matchExpressions[{i}]: {e}") from None


# --------------------------------------------------------------------------
# A parsed selector, and matching


def _requirement(key: str, op: str, values: Iterable[str]) -> str:
    """One expression as the API's string form writes it."""
    if op in ("In", "NotIn"):
        return f"{key} {op.lower()} ({','.join(sorted(values))})"
    return key if op == "Exists" else f"!{key}"


@dataclass(frozen=True)
class Selector:
    """A parsed LabelSelector: (key, value) pairs and (key, operator,
    values) expressions, all of which must hold."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, frozenset[str]], ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for key, op, values in self.expressions:
            present = key in labels
            if op == "In":
                if not present or labels[key] not in values:
                    return False
            elif op == "NotIn":
                if present and labels[key] in values:
                    return False
            elif op == "Exists":
                if not present:
                    return False
            elif present:  # DoesNotExist
                return False
        return True

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in self.match_labels]
        parts += [_requirement(key, op, values) for key, op, values in self.expressions]
        return "{" + ", ".join(parts) + "}" if parts else "{} (all)"


def parse(data, what: str = "labelSelector") -> Selector:
    """Validate a LabelSelector mapping (``None``: the empty selector) and
    parse it. Raises ``Invalid`` naming the field, under ``what``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise Invalid(f"{what} must be a mapping")
    labels = data.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise Invalid(f"{what}.matchLabels must be a mapping")
    if not isinstance(data.get("matchExpressions") or [], list):
        raise Invalid(f"{what}.matchExpressions must be a list")
    _check_keys_and_values(data, what)
    exprs = []
    for i, expr in enumerate(data.get("matchExpressions") or []):
        if not isinstance(expr, Mapping) or "key" not in expr or "operator" not in expr:
            raise Invalid(f"{what}.matchExpressions[{i}] needs key and operator")
        op = expr["operator"]
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise Invalid(f"{what}.matchExpressions[{i}].values must be a list")
        if op in ("In", "NotIn"):
            if not values:
                raise Invalid(f"{what}.matchExpressions[{i}]: operator {op} needs values")
        elif op in ("Exists", "DoesNotExist"):
            if values:
                raise Invalid(f"{what}.matchExpressions[{i}]: operator {op} takes no values")
        else:
            raise Invalid(f"{what}.matchExpressions[{i}]: invalid operator {op!r} (In, NotIn, Exists, DoesNotExist)")
        exprs.append((str(expr["key"]), op, frozenset(_text(v) for v in values)))
    return Selector(tuple(sorted((str(k), _text(v)) for k, v in labels.items())), tuple(exprs))


def _text(value) -> str:
    """A label value as the API server stores it: null is ""."""
    return "" if value is None else str(value)


# --------------------------------------------------------------------------
# The API's query string


def render(selector) -> str | None:
    """A LabelSelector mapping as the query string the API takes
    (k8s.io/apimachinery pkg/apis/meta/v1/helpers.go,
    ``LabelSelectorAsSelector``); None for "everything" (``None`` or an
    empty selector). Checks only what the string form needs; raises
    ``Invalid``."""
    if selector is None:
        return None
    if not isinstance(selector, Mapping):
        raise Invalid(f"label selector must be a LabelSelector mapping, not {type(selector).__name__}")
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for i, e in enumerate(selector.get("matchExpressions") or []):
        op, key, values = e.get("operator"), e.get("key"), sorted(e.get("values") or [])
        if not key or op not in OPERATORS or (op in ("In", "NotIn")) != bool(values):
            raise Invalid(f"label selector matchExpressions[{i}] is invalid: {dict(e)}")
        parts.append(_requirement(key, op, values))
    return ",".join(parts) or None


def match_labels(labels: Mapping[str, str]) -> dict:
    """The LabelSelector of objects carrying all these labels."""
    return {"matchLabels": dict(labels)}


# --------------------------------------------------------------------------
# Text forms


def parse_equality(text: str | None) -> dict[str, str]:
    """``a=b,c=d`` (the form a profile writes and a workload's matchLabels
    give) as labels. Only equality is accepted: anything richer belongs in
    matchExpressions, written as a structure. Raises ``Invalid``."""
    labels = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or value.startswith("=") or any(c in key for c in "!() "):
            raise Invalid(f"label selector {text!r}: {part!r} is not key=value")
        labels[key.strip()] = value.strip()
    return labels


def equality_text(labels: Mapping[str, str]) -> str | None:
    """Labels as ``a=b,c=d``, keys sorted (what ``parse_equality`` reads); None for none."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*)"
                   r"|\s(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    return terms + [cur]


def parse_text(text: str) -> Selector:
    """The string form (``a=b,c==d,e!=f,g in (h,i),j notin (k),l,!m``) as a
    Selector: ``=``/``==`` is a matchLabels pair, ``!=`` is NotIn one value,
    ``in``/``notin`` are In/NotIn, ``k`` is Exists and ``!k`` DoesNotExist.
    Raises ``Invalid`` naming the term it cannot read."""
    labels: list[tuple[str, str]] = []
    exprs: list[tuple[str, str, frozenset[str]]] = []
    for term in _split_terms(text):
        m = _TERM.match(term)
        if not m or (m.group(1) and (m.group(3) or m.group(5))):
            raise Invalid(f"cannot read {term.strip()!r}")
        neg, key, op, value, setop, values = m.groups()
        if op in ("=", "=="):
            labels.append((key, value))
        elif op == "!=":
            exprs.append((key, "NotIn", frozenset((value,))))
        elif setop:
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            exprs.append((key, "In" if setop == "in" else "NotIn", vals))
        else:
            exprs.append((key, "DoesNotExist" if neg else "Exists", frozenset()))
    return Selector(tuple(sorted(labels)), tuple(exprs))
