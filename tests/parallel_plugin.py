"""`python -m pytest` spreads the unit tests over the machine's cores.

Loaded by ``-p parallel_plugin`` (pyproject.toml, ``addopts``), before the
command line is parsed: where pytest-xdist is installed and the machine has
more than one core, it adds ``-n <cores + 1> --dist loadscope``, unless

- ``DASHI_E2E_KUBECONFIG`` is set: the real-cluster tests (tests/e2e) run in
  one process, in file order, with their output as they print it;
- the command line already says how to distribute (``-n``, ``--dist``,
  ``-p no:xdist``) or asks for a debugger;
- this is one of xdist's workers.

Each test then goes to whichever worker is free, except those that share
something: ``SCOPES`` keeps the tests of a file, or of several files, on one
worker, largest first.

It also keeps Python's bytecode cache on for the run where the environment
turns it off (``PYTHONDONTWRITEBYTECODE``, set in many container images):
otherwise every worker, and every ``inv`` a test starts, compiles the
package and the tests again, about 4 s of CPU per run. The ``.pyc`` files go
where Python puts them by default, in ``__pycache__`` (ignored by git).
"""

from __future__ import annotations

import os
import sys

import pytest

if sys.dont_write_bytecode:
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # for the workers and the processes the tests start

# Test files whose tests run on one worker, under a name of their own.
SCOPES = {
    # One Docker engine: the session's private dockerd is started once.
    "test_docker_engine.py": "docker",
    "test_k3d_contract.py": "docker",
    "test_preflight.py": "docker",
    # The DNS responders bound on 127.0.0.9-11:53.
    "test_probe_script.py": "loopback-53",
    # The kubernetes client package, about 0.4 s of CPU to import in a
    # process (nothing else imports it): one worker pays it, not each.
    # test_bad_input's module-scoped fixture also runs once there.
    "test_bad_input.py": "kubernetes",
    "test_kube_client.py": "kubernetes",
    # Module-scoped fixtures, computed once.
    "test_profile.py": "test_profile.py",
    # The wheel built and installed once; every terminal view rendered once
    # (four at a time, each a process and a tmux server).
    "test_installed.py": "test_installed.py",
    "test_terminal.py": "test_terminal.py",
}

# The options by which a command line chooses its own distribution.
_CHOSEN = ("-n", "--numprocesses", "--dist", "-d", "--tx", "--looponfail", "-f", "--pdb", "--trace")

_added = False


def _chosen(args: list[str]) -> bool:
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in _CHOSEN or (arg.startswith("-n") and not arg.startswith("--")):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _added
    if os.environ.get("DASHI_E2E_KUBECONFIG") or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if not early_config.pluginmanager.has_plugin("xdist") or (os.cpu_count() or 1) < 2:
        return
    if _chosen(args):
        return
    # One worker more than the cores: about a fifth of the suite waits (real
    # probe timeouts, dockerd, kubectl), and the extra worker fills it.
    args[:0] = ["-n", str(os.cpu_count() + 1), "--dist", "loadscope"]
    _added = True


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if not _added or config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SCOPES.get(path.rsplit("/", 1)[-1], nodeid)

    return Scheduling(config, log)
