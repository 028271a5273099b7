"""A scratch git repository for the tests that need history: a pull
request's two commits (policies-diff --git, the GitHub Action), a project
that uses the pre-commit hooks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Commits the same on every machine: no user config, no signing, no hooks.
GIT_ENV = {"GIT_AUTHOR_NAME": "Reviewer", "GIT_AUTHOR_EMAIL": "reviewer@example.com",
           "GIT_COMMITTER_NAME": "Reviewer", "GIT_COMMITTER_EMAIL": "reviewer@example.com",
           "GIT_AUTHOR_DATE": "2025-01-01T12:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T12:00:00Z",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV})
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def new_repo(path: Path, branch: str = "main") -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    return path


def copy_of_this_repository(dest: Path) -> Path:
    """This repository's files as a checkout of it would have them: tracked
    and new files, the changes not yet committed included, nothing ignored
    (no virtualenv, no build output)."""
    from support import ROOT

    names = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():  # a file deleted and not yet committed is listed, and gone
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def commit(repo: Path, message: str) -> str:
    """Everything in the work tree, committed; the new commit's name."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()
