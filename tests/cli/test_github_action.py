"""The GitHub Action (action.yml), its steps run the way the Actions runner
runs a composite action's steps: each `run` script with
`bash --noprofile --norc -eo pipefail`, its `env` with the expressions filled
in, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY as files, in the checkout of a
scratch repository whose pull request is one commit on a branch of its
clone. A step that `uses` another action (the artifact upload) is checked
for what it would be given, not run: that is GitHub's.

Installing the package (the action's first step) is done once for the module."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from cluster.policy.profile import MANIFESTS_DIR
from support.manifest_trees import SERVING_INTO_CATALOG
from support.scratch_repo import GIT_ENV, commit, copy_of_this_repository, git, new_repo

pytestmark = pytest.mark.install

SERVER, REPOSITORY, RUN_ID = "https://github.example", "fleet/policies", "4242"
RUN_URL = f"{SERVER}/{REPOSITORY}/actions/runs/{RUN_ID}"
INSTALL_TIMEOUT = 1200
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")

class Runner:
    """What the Actions runner does for this composite action's steps, and no more:
    an expression this does not know fails the test, so a new one is noticed."""

    def __init__(self, action_path: Path, temp: Path, workspace: Path, inputs: dict, base_ref: str = "main"):
        self.action = yaml.safe_load((action_path / "action.yml").read_text())
        self.action_path, self.temp, self.workspace = action_path, temp, workspace
        defaults = {k: v.get("default", "") for k, v in self.action["inputs"].items()}
        assert set(inputs) <= set(defaults)
        self.inputs = {**defaults, **inputs}
        self.base_ref = base_ref
        self.outputs: dict[str, dict[str, str]] = {}
        self.summary = temp / "step-summary.md"
        self.used: list[dict] = []  # the `uses` steps, with what they would be given
        self.log: list[tuple[str, int, str]] = []  # (step name, exit code, output)

    def value(self, expr: str) -> str:
        known = {"github.action_path": str(self.action_path), "github.server_url": SERVER,
                 "github.repository": REPOSITORY, "github.run_id": RUN_ID, "runner.temp": str(self.temp),
                 "github.workspace": str(self.workspace)}
        if expr in known:
            return known[expr]
        if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
            return str(self.inputs[m[1]])
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return self.outputs.get(m[1], {}).get(m[2], "")
        raise AssertionError(f"action.yml uses an expression this test does not know: {expr}")

    def expand(self, text: str) -> str:
        return EXPRESSION.sub(lambda m: self.value(m[1]), str(text))

    def condition(self, expr: str) -> bool:
        m = re.fullmatch(r"inputs\.([\w-]+) == '([^']*)'", expr.strip())
        assert m, f"action.yml has a condition this test does not know: {expr}"
        return self.inputs[m[1]] == m[2]

    def steps(self) -> list[dict]:
        assert self.action["runs"]["using"] == "composite"
        return self.action["runs"]["steps"]

    def run(self, steps: list[dict]) -> int:
        """The steps in order, as the runner runs them; the first that fails ends the job (its code)."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DASHI_MANIFESTS")}
        env.update(GIT_ENV, GITHUB_WORKSPACE=str(self.workspace), GITHUB_BASE_REF=self.base_ref,
                   RUNNER_TEMP=str(self.temp), GITHUB_STEP_SUMMARY=str(self.summary), CI="true",
                   GITHUB_ACTIONS="true")
        for step in steps:
            if "if" in step and not self.condition(step["if"]):
                continue
            if "uses" in step:
                self.used.append({"uses": step["uses"], **{k: self.expand(v) for k, v in step.get("with", {}).items()}})
                continue
            assert step["shell"] == "bash"
            script = self.temp / "step.sh"
            script.write_text(step["run"])
            output = self.temp / "github-output"
            output.write_text("")
            step_env = {**env, **{k: self.expand(v) for k, v in step.get("env", {}).items()},
                        "GITHUB_OUTPUT": str(output)}
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=step_env,
                                  cwd=self.workspace, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            self.log.append((step["name"], proc.returncode, proc.stdout + proc.stderr))
            if "id" in step:
                self.outputs[step["id"]] = dict(line.split("=", 1) for line in output.read_text().splitlines())
            if proc.returncode:
                return proc.returncode
        return 0


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """The action checked out as GitHub checks it out (its repository's files),
    and its first step run once: dashi-cluster installed into its virtualenv."""
    action = copy_of_this_repository(tmp_path_factory.mktemp("action"))
    temp = tmp_path_factory.mktemp("runner-temp")
    runner = Runner(action, temp, temp, {})
    first = runner.steps()[0]
    assert first["name"] == "Install dashi-cluster"
    code = runner.run([first])
    assert code == 0, runner.log
    assert (temp / "dashi-cluster-venv" / "bin" / "dashi").is_file()
    return action, temp


def pull_request(tmp_path: Path, change) -> Path:
    """origin: the profile on main; the checkout: a clone with the pull request's commit on a branch."""
    origin = new_repo(tmp_path / "origin")
    shutil.copytree(MANIFESTS_DIR / "dashi", origin / "policy-profile")
    (origin / "README.md").write_text("the fleet's policies\n")
    commit(origin, "the dashi profile")
    subprocess.run(["git", "clone", "-q", str(origin), str(tmp_path / "checkout")], check=True,
                   env={**os.environ, **GIT_ENV})
    checkout = tmp_path / "checkout"
    git(checkout, "checkout", "-q", "-b", "pull-request")
    change(checkout / "policy-profile")
    commit(checkout, "the change under review")
    return checkout


def the_rest(installed, checkout: Path, **inputs) -> tuple[Runner, int]:
    action, temp = installed
    # What an earlier job of the module left (the runner's temp is per job).
    (temp / "step-summary.md").unlink(missing_ok=True)
    shutil.rmtree(temp / "dashi-policies-diff", ignore_errors=True)
    runner = Runner(action, temp, checkout, {"path": "policy-profile", "profile": "policy-profile", **inputs})
    return runner, runner.run(runner.steps()[1:])


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.marks: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "g" and a.get("class") == "cell":
            self.marks.append(a["data-mark"])


def test_a_pull_request_that_opens_an_unintended_edge_fails_with_the_summary(installed, tmp_path):
    def leak(profile: Path):
        step = profile / "policies" / "04-allow-catalog.yaml"
        step.write_text(step.read_text() + SERVING_INTO_CATALOG)

    runner, code = the_rest(installed, pull_request(tmp_path, leak))
    assert code == 3, runner.log
    out = Path(runner.outputs["diff"]["markdown"]).read_text()
    # the job summary is the Markdown, which links the run's artifacts
    assert runner.summary.read_text() == out
    assert out.startswith("### NetworkPolicy connectivity: `origin/main:policy-profile (")
    assert f"[HTML report](<{RUN_URL}#artifacts>)" in out
    assert ":x: FAIL:" in out and "dashi-catalog/allow-from-serving" in out
    assert runner.outputs["diff"]["exit-code"] == "3"
    assert runner.used == [{"uses": "actions/upload-artifact@v4", "name": "policies-diff",
                            "path": f"{installed[1]}/dashi-policies-diff/", "if-no-files-found": "ignore"}]
    assert sorted(p.name for p in (installed[1] / "dashi-policies-diff").iterdir()) == [
        "policies-diff.html", "policies-diff.json", "policies-diff.md"]
    cells = _Cells()
    cells.feed(Path(runner.outputs["diff"]["html"]).read_text())
    assert len(cells.marks) == 240 and cells.marks.count("opened") > 0
    name, last_code, last_out = runner.log[-1]
    assert (name, last_code) == ("Fail when the change opens what it should not", 3)
    assert last_out.startswith("::error title=policies-diff::the change opens an edge the intended matrix")


def test_a_pull_request_that_only_closes_passes_and_says_what_it_breaks(installed, tmp_path):
    def close(profile: Path):
        # The STAC API's rule to its database moves to a port pgstac does not serve.
        internal = profile / "policies" / "05-allow-catalog-internal.yaml"
        internal.write_text(internal.read_text().replace("port: 5432", "port: 5433"))

    runner, code = the_rest(installed, pull_request(tmp_path, close), upload="false")
    assert code == 0, runner.log
    summary = runner.summary.read_text()
    assert "**0 opened, 1 closed, 239 unchanged**" in summary and ":warning:" in summary
    assert "HTML report" not in summary and runner.used == []  # nothing uploaded, nothing to link


def test_without_a_base_the_step_says_what_to_set(installed, tmp_path):
    checkout = pull_request(tmp_path, lambda profile: None)
    action, temp = installed
    runner = Runner(action, temp, checkout, {}, base_ref="")
    assert runner.run(runner.steps()[1:]) == 1
    assert "GITHUB_BASE_REF: no base revision: set the base input, or run on pull_request" in runner.log[-1][2]
