"""Entry points of the cluster tasks (cluster-up, cluster-down, status,
prepare, tools): the real seams wired in, a console made, the package called.

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlsplit

from cluster.cli.common import make_console, real_kube
from cluster.errors import DashiError
from cluster.live.safety import guard
from cluster.live.setup import prepare as live_prepare
from cluster.local import lifecycle, preflight, tools
from cluster.seams.runner import Runner


def up(**options) -> int:
    lifecycle.cluster_up(lifecycle.UpOptions(**options), runner=Runner(), console=make_console(),
                         docker=preflight.SDKDocker(), kube_factory=real_kube)
    return 0


def down(name: str, force: bool = False) -> int:
    lifecycle.cluster_down(name, runner=Runner(), docker=preflight.SDKDocker(), console=make_console(), force=force)
    return 0


def status(name: str, profile: str = "dashi", context: str | None = None, as_json: bool = False) -> int:
    # With --json, stdout carries the JSON document alone: the report goes to stderr.
    result = lifecycle.status(name, runner=Runner(), docker=preflight.SDKDocker(),
                              console=make_console(sys.stderr if as_json else None),
                              kube_factory=real_kube, profile=profile, context=context)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    return 0


def prepare(context: str, profile: str = "dashi", adopt: bool = False, dry_run: bool = False,
            yes: bool = False, traffic: bool = False) -> int:
    live_prepare.prepare(context, profile=profile, console=make_console(), kube_factory=real_kube, adopt=adopt,
                         dry_run=dry_run, yes=yes, confirm=guard.terminal_confirm(), traffic=traffic)
    return 0


def _check_mirror(url: str, where: str) -> None:
    """A mirror must be an http(s) URL with a host, or a file:// URL: anything
    else would fail later, per tool, with a message that hides the cause."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) or \
            parts.scheme == "file" and bool(parts.path)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        ok = False
    if not ok:
        raise DashiError(f"{where}: {url!r} is not a mirror URL (http://host/..., https://host/... or file:///dir)")


def install_tools(only: list[str] | None = None, base_url: str | None = None) -> int:
    if base_url is not None:
        _check_mirror(base_url, "--base-url")
    elif os.environ.get(tools.BASE_URL_ENV):
        _check_mirror(os.environ[tools.BASE_URL_ENV], f"${tools.BASE_URL_ENV}")
    console = make_console()
    for line in tools.install(only or None, base_url=base_url):
        console.print(line, markup=False)
    bin_dir = Runner().bin_dir
    console.print(f"tools live in {bin_dir}; dashi-cluster puts that directory first on PATH. "
                  f"For your shell: export PATH=\"{bin_dir}:$PATH\"", markup=False)
    return 0
