"""git adapter: the files of a directory as they were at a revision.

``policies-diff --git OLD NEW`` compares two revisions of a repository. The
pure readers work on directories, so each revision's YAML files under the
requested path are written into a temporary directory first, at the same
relative paths (a Flux tree's ``spec.path`` stays valid). Three plumbing
calls, all through the runner seam (``FakeRunner`` records them in tests):

    git -C REPO rev-parse --verify --quiet --end-of-options REV^{commit}
    git -C REPO ls-tree -r -z --name-only --full-tree COMMIT -- PATH
    git -C REPO show COMMIT:FILE                      (once per YAML file)

``--full-tree`` makes PATH relative to the repository's top, as in git's own
``REV:PATH``, wherever inside the work tree REPO points; ``-z`` keeps file
names with spaces or newlines intact; ``--end-of-options`` stops a revision
that starts with '-' from being read as an option (git >= 2.24).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cluster.errors import DashiError
from cluster.seams.runner import Runner

YAML_SUFFIXES = (".yaml", ".yml")
# kustomize's extension-less kustomization file name
EXTRA_NAMES = ("Kustomization",)


@dataclass(frozen=True)
class Revision:
    spec: str  # as the user wrote it: REV or REV:PATH
    rev: str
    path: str  # relative to the repository's top; "" for all of it
    commit: str

    @property
    def label(self) -> str:
        return f"{self.rev}:{self.path or '.'} ({self.commit[:12]})"


def parse(spec: str) -> tuple[str, str]:
    """'origin/main:flux' -> ('origin/main', 'flux'); 'HEAD' -> ('HEAD', '')."""
    rev, _, path = spec.partition(":")
    path = path.strip("/")
    if not rev:
        raise DashiError(f"{spec!r}: no revision before ':' (REV or REV:PATH)")
    if path and (PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts):
        raise DashiError(f"{spec!r}: PATH must stay inside the repository")
    return rev, path


def resolve(runner: Runner, repo: Path, spec: str) -> Revision:
    rev, path = parse(spec)
    res = runner.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
                      f"{rev}^{{commit}}"], check=False)
    commit = res.stdout.strip()
    if res.returncode != 0 or not commit:
        detail = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "unknown revision"
        raise DashiError(f"{rev!r} is not a commit in {repo} ({detail})")
    return Revision(spec, rev, path, commit)


def files(runner: Runner, repo: Path, revision: Revision) -> list[str]:
    out = runner.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", "--name-only", "--full-tree",
                      revision.commit, "--", revision.path or "."]).stdout
    return [n for n in out.split("\0") if n]


def materialize(runner: Runner, repo: Path, spec: str, dest: Path) -> tuple[Path, Revision]:
    """Write the YAML files under REV:PATH into ``dest`` at their repository
    paths; return the directory standing for PATH and the resolved revision.
    A PATH the revision does not have gives an empty directory (whether
    that is right is the caller's to say: see ``write_tree``)."""
    revision = resolve(runner, repo, spec)
    return write_tree(runner, repo, revision, files(runner, repo, revision), dest), revision


def write_tree(runner: Runner, repo: Path, revision: Revision, names: list[str], dest: Path) -> Path:
    """Write the YAML files among ``names`` (``files()`` of the revision)
    into ``dest`` at their repository paths; return the directory standing
    for the revision's PATH. No names: PATH does not exist at the revision,
    and the directory is empty."""
    for name in names:
        pure = PurePosixPath(name)
        if pure.suffix not in YAML_SUFFIXES and pure.name not in EXTRA_NAMES:
            continue
        text = runner.run(["git", "-C", str(repo), "show", f"{revision.commit}:{name}"]).stdout
        target = dest.joinpath(*pure.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    top = dest.joinpath(*PurePosixPath(revision.path).parts) if revision.path else dest
    if top.is_file():
        raise DashiError(f"{revision.spec!r}: {revision.path} is a file; name a directory")
    top.mkdir(parents=True, exist_ok=True)  # PATH may hold no YAML at all: then it reads as empty
    return top
