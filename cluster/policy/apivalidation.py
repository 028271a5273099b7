"""Values the API server rejects that a schema cannot express.

The rules follow k8s.io/apimachinery/pkg/util/validation/validation.go
(IsQualifiedName, IsValidLabelValue, IsDNS1123Label, IsDNS1123Subdomain,
IsValidPortNum, IsValidPortName, IsValidIP) and the object checks of
pkg/apis/core/validation and pkg/apis/apps/validation that matter for what
we read: names, labels, selectors, ports, addresses. Each check raises a
``ManifestError`` naming the field; the caller adds the file and object.
"""

from __future__ import annotations

import ipaddress
import re

from cluster.errors import ManifestError

_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
# Keys and label values already found valid: manifests repeat the same few
# (app, tier, app.kubernetes.io/name, ...) on every object.
_VALID_KEYS: set[str] = set()
_VALID_VALUES: set[str] = set()


class Invalid(ValueError):
    """A value is invalid; ``str()`` says why. ``at()`` makes it a ManifestError."""

    def at(self, field: str, path: str | None = None, obj: str | None = None) -> ManifestError:
        return ManifestError(f"{field}: {self}", path=path, obj=obj)


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
        if len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
            raise Invalid(f"key {value!r}: prefix {prefix!r} must be a DNS subdomain "
                          "(lowercase letters, digits, '-' and '.', at most 253 characters)")
    if not name or len(name) > 63 or not _NAME_PART.match(name):
        raise Invalid(f"key {value!r}: name part must be 1-63 characters of letters, digits, '-', '_' "
                      "or '.', starting and ending with a letter or digit")
    _VALID_KEYS.add(value)


def label_value(value) -> None:
    if value.__class__ is str and value in _VALID_VALUES:
        return
    if not isinstance(value, str):
        raise Invalid(f"value {value!r} must be a string (quote it in YAML)")
    if value and (len(value) > 63 or not _NAME_PART.match(value)):
        raise Invalid(f"value {value!r} must be at most 63 characters of letters, digits, '-', '_' or '.', "
                      "starting and ending with a letter or digit")
    _VALID_VALUES.add(value)


def _string_map(mapping, field: str, path, obj, check_value) -> None:
    if mapping is None:
        return
    if not isinstance(mapping, dict):
        raise ManifestError(f"{field}: expected a map", path=path, obj=obj)
    for key, value in mapping.items():
        try:
            qualified_name(key)
            check_value(value)
        except Invalid as e:
            raise e.at(f"{field}[{key!r}]" if isinstance(key, str) else field, path, obj) from None


def _any_string(value) -> None:
    if not isinstance(value, str):
        raise Invalid(f"value {value!r} must be a string (quote it in YAML)")


def labels(mapping, field: str, path=None, obj=None) -> None:
    _string_map(mapping, field, path, obj, label_value)


def annotations(mapping, field: str, path=None, obj=None) -> None:
    _string_map(mapping, field, path, obj, _any_string)


def selector(data, field: str, path=None, obj=None) -> None:
    """A LabelSelector: matchLabels as labels; matchExpressions keys and values."""
    if not isinstance(data, dict):
        return
    labels(data.get("matchLabels"), f"{field}.matchLabels", path, obj)
    for i, expr in enumerate(data.get("matchExpressions") or []):
        if not isinstance(expr, dict):
            continue
        where = f"{field}.matchExpressions[{i}]"
        try:
            qualified_name(expr.get("key"))
            for v in expr.get("values") or []:
                label_value(v)
        except Invalid as e:
            raise e.at(where, path, obj) from None


def dns_label(value, what: str = "name") -> None:
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise Invalid(f"{what} {value!r} must be a DNS label: at most 63 lowercase letters, digits and '-', "
                      "starting and ending with a letter or digit")


def dns_subdomain(value, what: str = "name") -> None:
    if not isinstance(value, str) or len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise Invalid(f"{what} {value!r} must be a DNS subdomain: at most 253 lowercase letters, digits, "
                      "'-' and '.', starting and ending with a letter or digit")


def port_number(value, what: str = "port") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Invalid(f"{what} {value!r} must be a number from 1 to 65535")


def port_name(value, what: str = "port name") -> None:
    """IANA_SVC_NAME: at most 15 lowercase letters, digits and '-', a letter
    among them, no '--', not starting or ending with '-'."""
    if not isinstance(value, str) or not 1 <= len(value) <= 15 or not _PORT_NAME.match(value) \
            or "--" in value or not re.search("[a-z]", value):
        raise Invalid(f"{what} {value!r} must be 1-15 lowercase letters, digits and '-' with at least "
                      "one letter (an IANA service name)")


def protocol(value) -> None:
    if value is not None and value not in PROTOCOLS:
        raise Invalid(f"protocol {value!r} must be TCP, UDP or SCTP")


def ip(value, what: str = "address") -> None:
    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise Invalid(f"{what} {value!r} is not an IP address") from None


def cidr(value, what: str = "cidr"):
    try:
        return ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        raise Invalid(f"{what} {value!r} is not a CIDR (like 10.0.0.0/16)") from None


def container_ports(pod_spec, field: str, path=None, obj=None) -> None:
    """Every container's ports: number, host port, name (unique in the pod), protocol."""
    seen: dict[str, str] = {}
    for key in ("initContainers", "containers"):
        for i, c in enumerate((pod_spec or {}).get(key) or []):
            for j, p in enumerate((c or {}).get("ports") or []):
                where = f"{field}.{key}[{i}].ports[{j}]"
                try:
                    port_number(p.get("containerPort"), "containerPort")
                    if p.get("hostPort"):
                        port_number(p.get("hostPort"), "hostPort")
                    protocol(p.get("protocol"))
                    name = p.get("name")
                    if name is not None:
                        port_name(name)
                        if name in seen:
                            raise Invalid(f"port name {name!r} is used twice in the pod (also {seen[name]})")
                        seen[name] = where
                except Invalid as e:
                    raise e.at(where, path, obj) from None
