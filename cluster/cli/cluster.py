"""Entry points of the cluster tasks (cluster-up, cluster-down, status,
prepare, tools): the real seams wired in, a console made, the package called.

Each returns the process exit code (0: success); expected failures raise a
``DashiError``, which the task turns into one line and its exit code.
"""

from __future__ import annotations

from cluster.cli.common import make_console, real_kube
from cluster.live import guard
from cluster.live import prepare as live_prepare
from cluster.local import lifecycle, preflight, tools
from cluster.local.runner import Runner


def up(**options) -> int:
    lifecycle.cluster_up(lifecycle.UpOptions(**options), runner=Runner(), console=make_console(),
                         docker=preflight.SDKDocker(), kube_factory=real_kube)
    return 0


def down(name: str, force: bool = False) -> int:
    lifecycle.cluster_down(name, runner=Runner(), console=make_console(), force=force)
    return 0


def status(name: str, profile: str = "dashi", context: str | None = None) -> int:
    lifecycle.status(name, runner=Runner(), console=make_console(), kube_factory=real_kube, profile=profile,
                     context=context)
    return 0


def prepare(context: str, profile: str = "dashi", adopt: bool = False, dry_run: bool = False,
            yes: bool = False) -> int:
    live_prepare.prepare(context, profile=profile, console=make_console(), kube_factory=real_kube, adopt=adopt,
                         dry_run=dry_run, yes=yes, confirm=guard.terminal_confirm())
    return 0


def install_tools(only: list[str] | None = None, base_url: str | None = None) -> int:
    console = make_console()
    for line in tools.install(only or None, base_url=base_url):
        console.print(line, markup=False)
    bin_dir = Runner().bin_dir
    console.print(f"tools live in {bin_dir}; dashi-cluster puts that directory first on PATH. "
                  f"For your shell: export PATH=\"{bin_dir}:$PATH\"", markup=False)
    return 0
