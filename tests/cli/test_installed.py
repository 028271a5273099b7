"""The installed package is the product.

The wheel is built from the repository's files (git's view: what a clone
holds, not what lies around in this working tree), installed without
its editable link into a fresh virtualenv outside the clone, and every task
is run as `dashi` from an empty working directory: dry runs where a cluster
is needed, the offline checks, export, diff, reachability. Each must end
with the exit code and output a user expects, no traceback anywhere, and
leave its files in that directory's ./.dashi.

The fresh virtualenv has our wheel and nothing else installed; its
dependencies (invoke, rich, the Kubernetes client, ...) are read from this
test run's own site-packages through a .pth file, so the test needs no
package index. The clone's editable install there is never activated (a
.pth line adds a path; the editable finder lives in a .pth of its own,
which only site-packages directories run), and the wheel's copy of
``cluster`` comes first on the path: the test checks that it is the one
imported.
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ROOT

pytestmark = pytest.mark.integration  # the wheel built and installed into a venv of its own, run as a user runs it

TASKS = {"cluster-up", "cluster-down", "status", "tools", "prepare", "network-policies-up", "rollback", "smoke",
         "history", "policies-check", "explain", "reachability", "export", "policies-diff", "observe",
         "flows-check", "matrix-from-flows"}


@dataclass
class Installed:
    venv: Path
    work: Path  # the empty working directory every task runs in
    env: dict

    @property
    def site_packages(self) -> Path:
        return Path(sysconfig.get_path("purelib", vars={"base": str(self.venv), "platbase": str(self.venv)}))

    def dashi(self, *args: str, cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.venv / "bin" / "dashi"), *args], cwd=cwd or self.work, env=self.env,
                              capture_output=True, text=True, timeout=120)
        shown = f"$ dashi {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stdout + proc.stderr, shown
        assert proc.returncode in ok, shown
        return proc


def _sources(dest: Path) -> None:
    """The files of the repository as a clone has them (tracked, or new and not ignored)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    base = tmp_path_factory.mktemp("installed")
    src, dist, venv, work, home = (base / n for n in ("src", "dist", "venv", "work", "home"))
    for d in (src, work, home):
        d.mkdir()
    _sources(src)
    # No build isolation: setuptools comes from the test extras (no download).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, text=True)
    wheels = list(dist.glob("dashi_cluster-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheels[0])], check=True, capture_output=True, text=True)
    inst = Installed(venv, work, {})
    (inst.site_packages / "zz-test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    inst.env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
                "KUBECONFIG": str(home / "no-kubeconfig"), "DOCKER_HOST": f"unix://{home}/no-docker.sock",
                "DASHI_TOOLS_BASE_URL": ""}
    return inst


def test_the_wheel_is_what_runs_and_it_holds_every_file_the_tasks_read(installed):
    proc = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                           "import cluster, importlib.metadata as m; print(cluster.__file__); "
                           "print(m.distribution('dashi-cluster').read_text('direct_url.json'))"],
                          cwd=installed.work, env=installed.env, capture_output=True, text=True, check=True)
    module, direct_url = proc.stdout.splitlines()[:2]
    assert Path(module).is_relative_to(installed.site_packages), module
    assert "editable" not in direct_url  # a wheel, not a link to the clone
    share = installed.venv / "share" / "dashi-cluster"
    for rel in ("cni/calico/custom-resources.yaml", "cni/cilium/values.yaml", "manifests/dashi/profile.yaml",
                "manifests/environments/policies/03-allow-from-ingress-controller.yaml"):
        assert (share / rel).read_text() == (ROOT / rel).read_text(), rel


def test_version_list_and_help(installed):
    assert installed.dashi("--version").stdout.strip() == "dashi 0.1.0"
    assert "policies-check" in installed.dashi("--list").stdout
    listed = json.loads(installed.dashi("--list", "--list-format", "json").stdout)
    assert {t["name"] for t in listed["tasks"]} == TASKS
    assert "--profile" in installed.dashi("--help", "policies-check").stdout


def test_offline_checks(installed):
    out = installed.dashi("policies-check").stdout
    assert "final matrix equals the intended matrix" in out and "✓" in out and "[dim" not in out
    failing = installed.dashi("policies-check", "--skip", "allow-catalog-internal", ok=(1,)).stdout
    assert "BLOCKED: dashi-catalog/stac-fastapi -> dashi-catalog/pgstac 5432/TCP" in failing and " ! " in failing
    strict = installed.dashi("policies-check", "--strict", "-q", ok=(1,)).stdout
    assert strict.rstrip().endswith("(without --strict the audit is reported, not failed)")
    assert json.loads(installed.dashi("policies-check", "-p", "environments", "--json").stdout)["ok"] is True
    explain = installed.dashi("explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080", ok=(3,))
    assert explain.stdout.startswith("dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP: BLOCKED")
    dry = installed.dashi("network-policies-up", "--dry-run", "-p", "environments").stdout
    assert "dry run: every step 1..3 predicts exactly its intended matrix" in dry


def test_reachability_of_a_directory_in_the_working_directory(installed):
    shutil.copytree(ROOT / "tests/fixtures/helm-shop", installed.work / "shop")
    table = installed.dashi("reachability", "-r", "shop", "-N", "shop", "-f", "table")
    assert "shop/shop-api     shop/shop-redis  6379" in table.stdout
    assert table.stderr.startswith("warning: skipped 7 object(s)")
    data = json.loads(installed.dashi("reachability", "-r", "shop", "-N", "shop").stdout)
    assert len(data["endpoints"]) == 5


def test_export_writes_into_the_working_directory(installed):
    out = installed.dashi("export").stdout
    exported = installed.work / ".dashi" / "export" / "dashi"
    assert f"-> {exported}:" in out
    assert (exported / "flux/infrastructure/network-policies/base/05-allow-catalog-internal.yaml").is_file()
    assert not (installed.site_packages / ".dashi").exists()
    assert "dashi export --profile dashi" in (exported / "flux/bootstrap/flux-system/infrastructure.yaml").read_text()
    # Relative --out is the working directory's too; an unwritable one is one line, nothing written.
    installed.dashi("export", "-p", "environments", "--out", "fleet")
    assert (installed.work / "fleet/flux/infrastructure/network-policies/develop/kustomization.yaml").is_file()
    (installed.work / "a-file").write_text("x")
    err = installed.dashi("export", "--out", "a-file", ok=(1,)).stderr
    assert err == "error: --out a-file: it is a file, not a directory; nothing was written\n"


def test_policies_diff_of_two_trees_and_two_revisions(installed):
    work = installed.work / "diff"
    installed.dashi("export", "--out", str(work / "old"))
    shutil.copytree(work / "old", work / "new")
    np = work / "new/flux/infrastructure/network-policies/base"
    (np / "05-allow-catalog-internal.yaml").unlink()
    ks = np / "kustomization.yaml"
    ks.write_text("".join(line for line in ks.read_text().splitlines(True) if "05-allow-catalog" not in line))
    out = installed.dashi("policies-diff", "old", "new", cwd=work).stdout
    assert "\n0 opened, 1 closed, 239 unchanged" in out
    # --git, in a repository that is the working directory.
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    repo = work / "old"
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "all steps"], cwd=repo, check=True)
    shutil.copy(ks, repo / "flux/infrastructure/network-policies/base/kustomization.yaml")
    (repo / "flux/infrastructure/network-policies/base/05-allow-catalog-internal.yaml").unlink()
    subprocess.run([*git, "commit", "-q", "-am", "no catalog-internal"], cwd=repo, check=True)
    out = installed.dashi("policies-diff", "--git", "HEAD~1:flux", "HEAD:flux", cwd=repo).stdout
    assert "\n0 opened, 1 closed, 239 unchanged" in out
    err = installed.dashi("policies-diff", "--git", "HEAD:nosuchpath", "HEAD:flux", cwd=repo, ok=(1,)).stderr
    assert err.startswith("error: HEAD:nosuchpath: no path 'nosuchpath' at HEAD (") and err.count("\n") == 1


@pytest.mark.parametrize("cni, shipped", [("calico", "cni/calico/custom-resources.yaml"),
                                          ("cilium", "cni/cilium/values.yaml"), ("k3s", None)])
def test_cluster_up_dry_run_plans_from_the_shipped_files(installed, cni, shipped):
    out = installed.dashi("cluster-up", "--dry-run", "--cni", cni).stdout
    config = installed.work / ".dashi" / "k3d-dashi.yaml"
    assert f"write {config}:" in out and f"--config {config}" in out  # planned, not written
    assert "k3d: not found — run `dashi tools`" in out
    if shipped:
        path = installed.venv / "share" / "dashi-cluster" / shipped
        assert str(path) in out
        assert (ROOT / shipped).read_text().splitlines()[0] in out  # its contents, shown


def test_errors_name_the_dashi_command(installed):
    err = installed.dashi("cluster-down", ok=(1,)).stderr
    assert err.startswith("error: ") and "`dashi tools`" in err and "inv " not in err and err.count("\n") == 1
    err = installed.dashi("smoke", ok=(1,)).stderr
    assert err.startswith("error: cannot load the current context from kubeconfig") and err.count("\n") == 1
    err = installed.dashi("-p", "environments", "policies-check", ok=(1,)).stderr
    assert err.startswith("error: -p environments: a task's flags go after the task name: "
                          "dashi policies-check -p environments")


def test_the_working_directory_holds_what_the_tasks_wrote_and_nothing_else_changed(installed):
    """Run last in this module: every task above wrote only below the working directory."""
    written = {p.relative_to(installed.work).parts[0] for p in installed.work.iterdir()}
    assert written <= {".dashi", "shop", "fleet", "diff", "a-file"}, written
    assert not list(installed.venv.rglob(".dashi"))
    home = {p.relative_to(installed.env["HOME"]).as_posix() for p in Path(installed.env["HOME"]).rglob("*")
            if p.is_dir()}
    assert home <= {".cache", ".cache/dashi-cluster", ".cache/dashi-cluster/schema"}, home


def test_flows_from_a_file_and_hubble_from_the_wheel(installed):
    # A flow file handed over in the working directory, the recording in the
    # state directory (HOME's), the replay against the installed profile.
    shutil.copy(ROOT / "tests/fixtures/flows/hubble-observe.jsonl", installed.work / "flows.json")
    rec = installed.dashi("observe", "--flows", "flows.json").stdout
    assert "recorded 5 flow(s) of 5 read from flows.json (hubble)" in rec
    check = installed.dashi("flows-check", ok=(3,)).stdout
    assert "BLOCKS   dashi-serving/titiler -> dashi-catalog/stac-fastapi 8080/TCP" in check
    assert "from: dashi-serving/titiler" in installed.dashi("matrix-from-flows").stdout
    # The generated Hubble client is in the wheel: a Hubble that is not there is one line.
    gone = installed.dashi("observe", "--duration", "1s", "--hubble", "127.0.0.1:1", ok=(1,))
    assert gone.stderr.startswith("error: Hubble at 127.0.0.1:1: ServerStatus failed: UNAVAILABLE")
