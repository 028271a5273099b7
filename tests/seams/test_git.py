"""The git seam: exact argv behind FakeRunner, and the same scenario against
real git (installed here; skipped with the reason elsewhere)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from cluster.cli import gitops
from cluster.errors import DashiError
from cluster.seams import git
from cluster.seams.runner import FakeRunner, Result, Runner
from cluster.ui import make_console

GIT = shutil.which("git")
needs_git = pytest.mark.skipif(GIT is None, reason="git is not installed")
SHA = "3f1c0de5a1b2c3d4e5f60718293a4b5c6d7e8f90"

# What git prints, from its documentation (Documentation/git-rev-parse.txt:
# --verify prints the object name and a newline; --quiet makes a miss exit 1
# with nothing on stderr. Documentation/git-ls-tree.txt: -z ends each
# name with NUL; --name-only prints names only).
LS_TREE = "flux/a.yaml\0flux/sub/b.yml\0flux/README.md\0flux/sub/Kustomization\0"


def fake() -> FakeRunner:
    r = FakeRunner(tools={"git"})
    r.on("git", "-C", "/repo", "rev-parse", stdout=SHA + "\n")
    r.on("git", "-C", "/repo", "ls-tree", stdout=LS_TREE)
    r.on("git", "-C", "/repo", "show", respond=lambda call: Result(call.argv, 0, f"# {call.argv[-1]}\n"))
    return r


def test_materialize_argv_and_files(tmp_path):
    r = fake()
    top, rev = git.materialize(r, Path("/repo"), "origin/main:flux", tmp_path)
    assert r.argvs == [
        ("git", "-C", "/repo", "rev-parse", "--verify", "--quiet", "--end-of-options", "origin/main^{commit}"),
        ("git", "-C", "/repo", "ls-tree", "-r", "-z", "--name-only", "--full-tree", SHA, "--", "flux"),
        ("git", "-C", "/repo", "show", f"{SHA}:flux/a.yaml"),
        ("git", "-C", "/repo", "show", f"{SHA}:flux/sub/b.yml"),
        ("git", "-C", "/repo", "show", f"{SHA}:flux/sub/Kustomization"),
    ]
    assert top == tmp_path / "flux"
    assert (tmp_path / "flux/sub/b.yml").read_text() == f"# {SHA}:flux/sub/b.yml\n"
    assert not (tmp_path / "flux/README.md").exists()  # only what the readers read
    assert rev.label == "origin/main:flux (3f1c0de5a1b2)"


def test_the_whole_repository_is_asked_for_with_a_dot(tmp_path):
    r = fake()
    top, _ = git.materialize(r, Path("/repo"), "HEAD", tmp_path)
    assert r.argvs[1][-2:] == ("--", ".") and top == tmp_path


@pytest.mark.parametrize("spec, message", [
    (":flux", "no revision before ':'"),
    ("HEAD:../etc", "PATH must stay inside the repository"),
    ("HEAD:flux/../../x", "PATH must stay inside the repository"),
])
def test_bad_specs(spec, message):
    with pytest.raises(DashiError, match=message):
        git.parse(spec)


def test_unknown_revision_and_a_path_the_revision_lacks(tmp_path):
    r = FakeRunner(tools={"git"})
    r.on("git", "-C", "/repo", "rev-parse", returncode=1)
    with pytest.raises(DashiError, match=r"'nope' is not a commit in /repo \(unknown revision\)"):
        git.materialize(r, Path("/repo"), "nope", tmp_path)
    r = FakeRunner(tools={"git"})
    r.on("git", "-C", "/repo", "rev-parse", stdout=SHA + "\n")
    top, _ = git.materialize(r, Path("/repo"), "HEAD:flux", tmp_path)
    assert top == tmp_path / "flux" and top.is_dir() and not any(top.iterdir())


def test_missing_git_says_so(tmp_path):
    with pytest.raises(DashiError, match="git: not found"):
        git.materialize(FakeRunner(tools=set()), Path("/repo"), "HEAD", tmp_path)


# -- real git ------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _commit_export(repo: Path, until: list[str], message: str) -> None:
    gitops.export("environments", out=str(repo), until=until, console=make_console(io.StringIO()))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path):
    if GIT is None:
        pytest.skip("git is not installed")
    r = tmp_path / "repo"
    r.mkdir()
    _git(r, "init", "-q")
    _commit_export(r, ["allow-dns"], "steps 1-2")
    _commit_export(r, ["allow-dns", "develop=allow-from-ingress-controller"], "develop: step 3")
    return r


@needs_git
def test_real_and_fake_git_materialize_the_same_tree(repo, tmp_path):
    real_dir, real_rev = git.materialize(Runner(), repo, "HEAD:flux", tmp_path / "real")
    # The fake answers with what real git printed for the same calls.
    recorded = FakeRunner(tools={"git"})
    sha = _git(repo, "rev-parse", "HEAD")
    recorded.on("git", "-C", str(repo), "rev-parse", stdout=sha)
    recorded.on("git", "-C", str(repo), "ls-tree",
                stdout=_git(repo, "ls-tree", "-r", "-z", "--name-only", "--full-tree", sha.strip(), "--", "flux"))
    recorded.on("git", "-C", str(repo), "show",
                respond=lambda call: Result(call.argv, 0, _git(repo, "show", call.argv[-1])))
    fake_dir, fake_rev = git.materialize(recorded, repo, "HEAD:flux", tmp_path / "fake")
    assert real_rev.commit == fake_rev.commit == sha.strip()
    files = sorted(p.relative_to(real_dir) for p in real_dir.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(fake_dir) for p in fake_dir.rglob("*") if p.is_file())
    assert all((real_dir / f).read_text() == (fake_dir / f).read_text() for f in files)
    assert (real_dir / "infrastructure/network-policies/develop/kustomization.yaml").read_text() == \
        (repo / "flux/infrastructure/network-policies/develop/kustomization.yaml").read_text()


@needs_git
def test_policies_diff_between_two_commits(repo, tmp_path):
    code = gitops.policies_diff("HEAD~1:flux", "HEAD:flux", profile="environments", use_git=True, repo=str(repo),
                                json_path=str(tmp_path / "d.json"), console=make_console(io.StringIO()))
    data = json.loads((tmp_path / "d.json").read_text())
    assert code == 0
    assert data["old"].startswith("HEAD~1:flux (") and data["new"].startswith("HEAD:flux (")
    assert sorted((c["src"], c["dst"], c["port"]) for c in data["opened"]) == [
        ("ingress-nginx/ingress-nginx-controller", "develop/backend", 8080),
        ("ingress-nginx/ingress-nginx-controller", "develop/frontend", 3000)]
    assert data["closed"] == [] and data["steps"] == ["develop: +allow-from-ingress-controller"]


@needs_git
def test_the_first_pull_request_compares_with_no_policies(tmp_path):
    """The base branch has no flux/ yet: that side reads as no policies."""
    repo = tmp_path / "fleet"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "README.md").write_text("fleet\n")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "no policies yet")
    _commit_export(repo, ["allow-dns"], "the first policies")
    buf = io.StringIO()
    code = gitops.policies_diff("HEAD~1:flux", "HEAD:flux", profile="environments", use_git=True,
                                repo=str(repo), json_path=str(tmp_path / "d.json"), console=make_console(buf))
    data = json.loads((tmp_path / "d.json").read_text())
    assert code == 0 and data["opened"] == [] and len(data["closed"]) > 0
    assert data["notes"][0].startswith("HEAD~1:flux (") and data["notes"][0].endswith(
        "has no YAML at flux: read as no policies")
    assert "read as no policies" in buf.getvalue()


@needs_git
@pytest.mark.parametrize("old, new, missing", [
    ("HEAD:nosuchpath", "HEAD:flux", "HEAD:nosuchpath: no path 'nosuchpath' at HEAD ("),
    ("HEAD~1:flux", "HEAD:flxu", "HEAD:flxu: no path 'flxu' at HEAD ("),
    ("HEAD~1:nothing", "HEAD:nothing", "HEAD~1:nothing: no path 'nothing' at HEAD~1 ("),
])
def test_a_path_neither_side_has_is_an_error_naming_it(repo, old, new, missing):
    """A typo would otherwise read as no policies: every edge opened or closed, exit 0."""
    with pytest.raises(DashiError) as err:
        gitops.policies_diff(old, new, profile="environments", use_git=True, repo=str(repo),
                             console=make_console(io.StringIO()))
    assert str(err.value).startswith(missing)


@needs_git
def test_errors_name_the_revision_not_the_temporary_copy(repo):
    ks = repo / "flux/infrastructure/network-policies/develop/kustomization.yaml"
    ks.write_text(ks.read_text() + "commonLabels: {a: b}\n")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-am", "labels")
    with pytest.raises(DashiError) as err:
        gitops.policies_diff("HEAD~1", "HEAD", profile="environments", use_git=True, repo=str(repo),
                             console=make_console(io.StringIO()))
    assert str(err.value).startswith("HEAD:flux/infrastructure/network-policies/develop/kustomization.yaml: "
                                     "field 'commonLabels' is not modelled")
