"""Values the API server rejects that a schema cannot express.

The rules follow k8s.io/apimachinery/pkg/util/validation/validation.go
(IsDNS1123Label, IsDNS1123Subdomain, IsValidPortNum, IsValidPortName,
IsValidIP; label keys and values, IsQualifiedName and IsValidLabelValue, are
``cluster.selectors``'s) and the object checks of pkg/apis/core/validation
and pkg/apis/apps/validation that matter for what we read: names, labels,
ports, addresses. Each check raises a ``ManifestError`` naming the field;
the caller adds the file and object.
"""

from __future__ import annotations

import ipaddress
import re

from cluster.errors import Invalid, ManifestError
from cluster.selectors import DNS1123_SUBDOMAIN, check_labels, label_value

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
PROTOCOLS = ("TCP", "UDP", "SCTP")


def _string_map(mapping, field: str, path, obj, check_value) -> None:
    try:
        check_labels(mapping, field, check_value)
    except Invalid as e:
        raise ManifestError(str(e), path=path, obj=obj) from None


def _any_string(value) -> None:
    if value is not None and not isinstance(value, str):  # null decodes as ""
        raise Invalid(f"value {value!r} must be a string (quote it in YAML)")


# apimachinery ValidateAnnotationsSize: keys and values together.
MAX_ANNOTATIONS_BYTES = 256 * 1024


def labels(mapping, field: str, path=None, obj=None) -> None:
    _string_map(mapping, field, path, obj, label_value)


def annotations(mapping, field: str, path=None, obj=None) -> None:
    _string_map(mapping, field, path, obj, _any_string)
    if mapping:
        size = sum(len(str(k).encode()) + len((v or "").encode()) for k, v in mapping.items())
        if size > MAX_ANNOTATIONS_BYTES:
            raise ManifestError(f"{field}: {size} bytes, more than the {MAX_ANNOTATIONS_BYTES} the API server "
                                "takes", path=path, obj=obj)


def label_map(mapping) -> dict[str, str]:
    """Labels as the API server stores them (a null value is "")."""
    return {k: "" if v is None else v for k, v in (mapping or {}).items()}


def dns_label(value, what: str = "name") -> None:
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise Invalid(f"{what} {value!r} must be a DNS label: at most 63 lowercase letters, digits and '-', "
                      "starting and ending with a letter or digit")


def dns_subdomain(value, what: str = "name") -> None:
    if not isinstance(value, str) or len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
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


def containers_present(pod_spec, field: str, path=None, obj=None) -> None:
    """A pod needs a container (pkg/apis/core/validation, validateContainers:
    "Required value"); the schema lists the field as required but lets an
    empty list through."""
    if not (pod_spec or {}).get("containers"):
        raise ManifestError(f"{field}.containers: at least one container is required", path=path, obj=obj)


def container_ports(pod_spec, field: str, path=None, obj=None) -> None:
    """Every container's name (a DNS label, unique in the pod) and ports:
    number, host port, name (unique in the container, as validateContainerPorts
    has it: two containers may name a port alike, and a named port in a
    policy then opens both), protocol ("" is TCP, as the defaulting has it)."""
    names: dict[str, str] = {}
    for key in ("initContainers", "containers"):
        for i, c in enumerate((pod_spec or {}).get(key) or []):
            c = c or {}
            cwhere = f"{field}.{key}[{i}]"
            try:
                cname = c.get("name")
                if not cname:
                    raise Invalid("name is required")
                dns_label(cname, "name")
                if cname in names:
                    raise Invalid(f"name {cname!r} is used twice in the pod (also {names[cname]})")
                names[cname] = cwhere
            except Invalid as e:
                raise e.at(cwhere, path, obj) from None
            seen: dict[str, str] = {}
            for j, p in enumerate(c.get("ports") or []):
                where = f"{cwhere}.ports[{j}]"
                p = p or {}  # a null entry decodes as an empty ContainerPort (containerPort 0)
                try:
                    port_number(p.get("containerPort"), "containerPort")
                    if p.get("hostPort"):
                        port_number(p.get("hostPort"), "hostPort")
                    protocol(p.get("protocol") or None)
                    name = p.get("name")
                    if name:  # "" is no name
                        port_name(name)
                        if name in seen:
                            raise Invalid(f"port name {name!r} is used twice in the container (also {seen[name]})")
                        seen[name] = where
                except Invalid as e:
                    raise e.at(where, path, obj) from None
