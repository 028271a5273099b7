"""helm adapter: version and "is this release installed" (used by Cilium)."""

from __future__ import annotations

import json
import re

from cluster.errors import DashiError
from cluster.seams.runner import Runner, tool_version

_VERSION_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")


VERSION_ARGV = ["helm", "version", "--short"]


def parse_version(out: str) -> tuple[int, int, int] | None:
    """`helm version --short` prints "<version>+g<7 hex of the commit>", e.g.
    "v3.19.2+g8766e71" (helm/helm v3 cmd/helm/version.go formatVersion)."""
    m = _VERSION_RE.search(out or "")
    return tuple(int(x) for x in m.groups()) if m else None  # type: ignore[return-value]


def version(runner: Runner) -> tuple[int, int, int]:
    return tool_version(runner, VERSION_ARGV, parse_version)


def list_argv(context: str, namespace: str, release: str) -> list[str]:
    return ["helm", "list", "--kube-context", context, "--namespace", namespace,
            "--filter", f"^{re.escape(release)}$", "--output", "json"]


def release(runner: Runner, context: str, namespace: str, name: str) -> dict | None:
    """`helm list` entry of a release: keys name, status, chart ("cilium-1.18.6"), app_version."""
    out = runner.run(list_argv(context, namespace, name)).stdout
    try:
        items = json.loads(out or "[]")
    except json.JSONDecodeError as e:
        raise DashiError(f"`helm list` printed something that is not JSON: {out[:200]!r}") from e
    for item in items or []:
        if item.get("name") == name:
            return item
    return None
