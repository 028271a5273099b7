"""The `dashi` command's fast path (cluster/cli/offline.py) behaves as
invoke does: each offline task runs both ways on the same command lines,
good and bad, and prints the same stdout and stderr with the same exit
code. Every case says whether the fast path reads it (and must then agree
with invoke) or hands it to invoke (help, parse errors, other tasks, core
flags, invoke's configuration), so a change to either side shows here.
Each run is a process forked from this one (tests/support/cli_process.py);
one real `python -m cluster.cli` shows that the fast path imports neither
invoke nor what the task does not use."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from support import ROOT, cli_process
from support.manifest_trees import RESOURCES, write

from cluster.cli import offline

pytestmark = pytest.mark.integration  # the offline command lines run as processes

FAST, INVOKE = True, False
DASHI_DIR = "manifests/dashi"
CASES = [
    # reachability
    (FAST, ["reachability", "-r", "{tree}"]),
    (FAST, ["reachability", "{tree}"]),
    (FAST, ["reachability", "--resources", "{tree}", "-f", "table"]),
    (FAST, ["reachability", "--resources={tree}", "--endpoints", "pods", "-N", "shop"]),
    (FAST, ["reachability", "-e", "pods", "--format=json", "--namespace", "shop", "{tree}"]),
    (FAST, ["reachability", "-r", "{tmp}/nowhere"]),
    (FAST, ["reachability", "-r", "{tree}", "-f", "xml"]),
    (FAST, ["reachability", "-r", "{tree}", "-e", "nodes"]),
    (FAST, ["reachability", "-r", "{tree}", "-N", "Not_A_Name"]),
    (FAST, ["reachability", "-r", ""]),
    (INVOKE, ["reachability"]),
    (INVOKE, ["reachability", "-r"]),
    (INVOKE, ["reachability", "-r", "{tree}", "extra"]),
    (INVOKE, ["reachability", "--help"]),
    (INVOKE, ["reachability", "-h"]),
    (INVOKE, ["reachability", "-r", "{tree}", "-x"]),
    (INVOKE, ["reachability", "-r", "{tree}", "-r", "{tree}"]),
    (INVOKE, ["reachability", "-r{tree}"]),
    (INVOKE, ["reachability", "-r", "{tree}", "--format"]),
    (INVOKE, ["reachability", "-r", "{tree}", "policies-check", "-j"]),
    (INVOKE, ["reachability", "-r", "{tree}", "--", "x"]),
    (INVOKE, ["reachability", "-r", "-f", "table"]),
    # policies-check
    (FAST, ["policies-check"]),
    (FAST, ["policies-check", "-j"]),
    (FAST, ["policies-check", "--json", "--quiet"]),
    (FAST, ["policies-check", "-q", "--strict"]),
    (FAST, ["policies-check", "--skip", "allow-catalog-internal"]),
    (FAST, ["policies-check", "--skip", "allow-dns", "--skip=allow-platform", "-j", "-q"]),
    (FAST, ["policies-check", "-p", "environments", "--cni", "cilium"]),
    (FAST, ["policies-check", "--cni", "flannel"]),
    (FAST, ["policies-check", "-j", "--cni", "flannel"]),
    (FAST, ["policies-check", "--profile", "{tmp}/nowhere"]),
    (FAST, ["policies-check", "--skip", "no-such-step", "-j"]),
    (INVOKE, ["policies-check", "--skip"]),
    (INVOKE, ["policies-check", "--json=yes"]),
    (INVOKE, ["policies-check", "-jq"]),
    (INVOKE, ["policies-check", "-j", "-j"]),
    (INVOKE, ["policies-check", "--no-json"]),
    (INVOKE, ["policies-check", "extra"]),
    (INVOKE, ["policies-check", "--context", "x"]),
    # explain
    (FAST, ["explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080"]),
    (FAST, ["explain", "-j", "dashi-data/prefect-worker", "dashi-data/prefect-server", "4200"]),
    (FAST, ["explain", "--src", "dashi-data/flow-run", "--dst", "dashi-data/prefect-server", "--port", "4200"]),
    (FAST, ["explain", "host", "dashi-monitoring/prometheus", "9090", "--step", "default-deny"]),
    (FAST, ["explain", "dashi-serving/duckdb", "kube-system/kube-dns", "dns/UDP", "-p", "dashi", "--cni", "k3s"]),
    (FAST, ["explain", "x/y", "dashi-catalog/pgstac", "5432", "-j"]),
    (FAST, ["explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "http/TCPX"]),
    (FAST, ["explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080", "--step", "nope"]),
    (INVOKE, ["explain", "a", "b"]),
    (INVOKE, ["explain", "a", "b", "c", "d"]),
    (INVOKE, ["explain", "--help"]),
    (INVOKE, ["explain", "a", "b", "-5"]),
    # policies-diff
    (FAST, ["policies-diff", DASHI_DIR, DASHI_DIR]),
    (FAST, ["policies-diff", DASHI_DIR, "{changed}", "-f", "json"]),
    (FAST, ["policies-diff", "{changed}", DASHI_DIR, "--format", "markdown", "--json", "{tmp}/diff.json"]),
    (FAST, ["policies-diff", DASHI_DIR, "{changed}", "--markdown", "{tmp}/diff.md", "-p", "dashi"]),
    (FAST, ["policies-diff", "--git", "HEAD:manifests/dashi", "HEAD:manifests/dashi", "--repo", str(ROOT)]),
    (FAST, ["policies-diff", DASHI_DIR, "{tmp}/nowhere"]),
    (FAST, ["policies-diff", DASHI_DIR, DASHI_DIR, "-f", "yaml"]),
    (INVOKE, ["policies-diff", DASHI_DIR, DASHI_DIR, "-j"]),  # -j takes a file here
    (INVOKE, ["policies-diff", DASHI_DIR]),
    (INVOKE, ["policies-diff", DASHI_DIR, DASHI_DIR, "--git=1"]),
    # not offline tasks, or not a task first
    (INVOKE, []),
    (INVOKE, ["--list"]),
    (INVOKE, ["--version"]),
    (INVOKE, ["-e", "reachability", "-r", "{tree}"]),
    (INVOKE, ["status", "--json"]),
    (INVOKE, ["nope"]),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fast-path")
    tree = write(tmp / "tree", RESOURCES)
    changed = tmp / "changed"
    shutil.copytree(ROOT / DASHI_DIR, changed)
    (changed / "policies" / "05-allow-catalog-internal.yaml").unlink()
    return {"tree": str(tree), "tmp": str(tmp), "changed": str(changed)}


def _argv(argv, places):
    return [a.format(**places) for a in argv]


@pytest.mark.parametrize("fast,argv", CASES, ids=[" ".join(a) or "(none)" for _, a in CASES])
def test_fast_path_and_invoke_print_and_exit_alike(fast, argv, places, monkeypatch):
    for key in [k for k in os.environ if k.startswith("INVOKE_")]:
        monkeypatch.delenv(key)
    argv = _argv(argv, places)
    assert (offline.parse(argv) is not None) == fast, "the fast path reads it" if not fast else "invoke reads it"
    via_invoke = cli_process.run(*argv, cli="dashi")
    via_entry = cli_process.run(*argv, cli="dashi-entry")
    assert (via_entry.returncode, via_entry.stdout, via_entry.stderr) == \
        (via_invoke.returncode, via_invoke.stdout, via_invoke.stderr)
    assert "Traceback" not in via_entry.stderr


def test_the_cases_cover_both_outcomes_of_every_offline_task():
    for task in offline.TASKS:
        outcomes = {fast for fast, argv in CASES if argv[:1] == [task]}
        assert outcomes == {FAST, INVOKE}, task


def test_invoke_configuration_hands_the_command_line_to_invoke(places, monkeypatch, tmp_path):
    argv = _argv(["reachability", "-r", "{tree}"], places)
    monkeypatch.setenv("INVOKE_DEBUG", "1")
    assert offline.parse(argv) is None
    monkeypatch.delenv("INVOKE_DEBUG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert offline.parse(argv) is not None
    (tmp_path / ".invoke.yaml").write_text("tasks: {auto_dash_names: false}\n")
    assert offline.parse(argv) is None


def test_the_grammar_is_invoke_s(places):
    """The flags, short flags, kinds and positional arguments the fast path
    derives from each body are those invoke derives from the task."""
    from cluster.cli import tasks

    for name, body in offline.TASKS.items():
        task = getattr(tasks, body.__name__)
        positional, defaults, flags = offline._grammar(name)
        want = {}
        for arg in task.get_arguments():
            for n in arg.names:
                want[("--" if len(n) > 1 else "-") + n] = (arg.name, arg.kind)
        assert {f: (p, k) for f, (p, k) in flags.items()} == want, name
        assert positional == [a.name for a in task.get_arguments() if a.positional], name


def test_the_installed_command_imports_no_invoke_for_an_offline_task(places):
    """A real process: the JSON of a tree, without invoke, rich (the console),
    the Kubernetes client or the live layer among its imports."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cluster.cli", "reachability", "-r",
                           places["tree"]], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "cluster.policy.reachability" in imported
    unwanted = {m for m in imported if m.split(".")[0] in ("invoke", "rich", "kubernetes", "docker", "urllib3")
                or m.startswith(("cluster.live", "cluster.seams", "cluster.local"))}
    assert not unwanted
    assert proc.stdout == cli_process.run("reachability", "-r", places["tree"], cli="dashi").stdout
