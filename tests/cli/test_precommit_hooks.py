"""The repository's pre-commit hooks (.pre-commit-hooks.yaml), run by the
real pre-commit (from PyPI, in the test extras) in a scratch project, as a
user trying them would: `pre-commit try-repo` clones this repository,
installs its package into the hooks' own virtualenv (dependencies from the
package index pip reaches) and runs every hook on the project's files.

The installed package is what runs: the shipped profile found under the
virtualenv's prefix, no import from this clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from support import ROOT, cli_process
from support.availability import unavailable
from support.manifest_trees import RESOURCES, write
from support.scratch_repo import GIT_ENV, commit, copy_of_this_repository, new_repo

from cluster.cli import policy
from cluster.policy.reachability import reachability
from cluster.policy.reachexpect import compare

# Installing the package and its dependencies (kubernetes, kubernetes-validate:
# about 230 MB unpacked) takes 30-60 s of CPU; on a loaded machine minutes.
INSTALL_TIMEOUT = 1200


def test_the_hooks_declare_what_they_run():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"dashi-policies-check", "dashi-reachability"}
    for h in hooks.values():
        # the whole tree is the input, not the files a commit touches
        assert (h["language"], h["pass_filenames"], h["files"]) == ("python", False, r"\.(ya?ml|json)$")
        assert h["entry"].split()[0] == "dashi"
    assert hooks["dashi-reachability"]["args"] == ["-r", ".", "--expect", ".reachability.json"]


@pytest.mark.install
def test_the_hooks_in_a_project_with_pre_commit_try_repo(tmp_path):
    pre_commit = shutil.which("pre-commit")
    if pre_commit is None:
        unavailable("install", "pre-commit is not installed (pip install -e '.[test]')")
    this = copy_of_this_repository(new_repo(tmp_path / "dashi-cluster"))
    commit(this, "dashi-cluster as it is")
    # A project of manifests with the reachability it had, recorded; then a
    # change under review: the database also admits the ops namespace.
    project = new_repo(tmp_path / "project")
    write(project, RESOURCES)
    (project / ".reachability.json").write_text(json.dumps(reachability(project)))
    commit(project, "manifests and their reachability")
    db = project / "policies" / "deny.yaml"
    db.write_text(db.read_text() + "    - from: [{namespaceSelector: {matchLabels: {team: ops}}}]\n")

    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    # The hooks run in their own virtualenv: nothing of this test run's may leak in.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "DASHI_MANIFESTS", "DASHI_STATE_DIR"):
        env.pop(name, None)
    proc = subprocess.run([pre_commit, "try-repo", str(this), "--all-files", "--color", "never"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert re.search(r"^dashi policies-check\.+Passed$", out, re.M), out
    assert re.search(r"^dashi reachability\.+Failed$", out, re.M), out
    assert "- exit code: 3" in out
    # the installed hook names the same changes as this clone's code
    changes = compare(json.loads((project / ".reachability.json").read_text()), reachability(project))
    assert "+ ops/prom -> shop/db TCP 1-65535" in changes
    assert f"reachability -r . differs from .reachability.json in {len(changes)} place(s):\n" + "".join(
        f"  {line}\n" for line in changes) in out
    assert "if the change is intended, record it: dashi reachability -r . > .reachability.json" in out


def test_the_readme_s_hook_arguments_are_the_commands_flags(tmp_path, monkeypatch, capsys):
    """What README tells a user to put in .pre-commit-config.yaml, run as the hooks' entries run it."""
    readme = (ROOT / "README.md").read_text()
    config = yaml.safe_load(re.search(r"```yaml\n(repos:\n.*?)```", readme, re.S).group(1))
    [repo] = config["repos"]
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "manifests" / "dashi", tmp_path / "policy-profile")
    write(tmp_path / "deploy", RESOURCES)
    (tmp_path / "deploy" / ".reachability.json").write_text(json.dumps(reachability(tmp_path / "deploy")))
    for h in repo["hooks"]:
        argv = hooks[h["id"]]["entry"].split()[1:] + h.get("args", hooks[h["id"]].get("args", []))
        proc = cli_process.run(*argv, cli="dashi", cwd=tmp_path)
        assert proc.returncode == 0, (h["id"], proc.stdout, proc.stderr)
    step = tmp_path / "policy-profile" / "policies" / "05-allow-catalog-internal.yaml"
    step.write_text(step.read_text().replace("port: postgres}", "port: 5433}"))
    assert policy.policies_check("policy-profile", [], quiet=True) == 1
    assert "final matrix differs from the intended matrix in 1 edge(s)" in capsys.readouterr().out
