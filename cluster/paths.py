"""Where the tool's files are: what it ships (the profiles, the CNI values),
found in a clone or where an installed package put them, and the
project-local directory for generated configs and tools (``./.dashi``)."""

from __future__ import annotations

import os
import site
import sys
from pathlib import Path

from cluster.errors import DashiError

# cluster/paths.py -> the repository (or, installed, site-packages).
REPO_ROOT = Path(__file__).resolve().parent.parent
# Where pyproject.toml's data-files put the shipped directories, below an
# installation's data prefix (sys.prefix, or the user base of --user).
SHARE = Path("share") / "dashi-cluster"


def _in_clone() -> bool:
    return (REPO_ROOT / "pyproject.toml").is_file()


def shipped(name: str) -> Path:
    """A directory the package ships as data (``manifests``, ``cni``): the
    clone's own where the code runs from a clone (editable installs too),
    else the copy pip installed under <prefix>/share/dashi-cluster/. A
    non-editable install leaves nothing next to the code but the package:
    site-packages/<name> would be some other distribution's."""
    if _in_clone():
        return REPO_ROOT / name
    prefixes = [Path(sys.prefix), Path(site.getuserbase())]
    for prefix in prefixes:
        if (prefix / SHARE / name).is_dir():
            return prefix / SHARE / name
    return prefixes[0] / SHARE / name  # missing: the caller's error names where it looked


def dashi_home() -> Path:
    """Project-local files (generated k3d configs, the tool directory, the
    default export): ``./.dashi`` of the working directory, as README says,
    whether the tool runs from a clone or installed; $DASHI_HOME moves it."""
    if os.environ.get("DASHI_HOME"):
        return Path(os.environ["DASHI_HOME"])
    try:
        return Path.cwd() / ".dashi"
    except OSError as e:  # the working directory was removed under the shell
        raise DashiError(f"cannot use ./.dashi: the working directory is gone ({e.strerror or e}); "
                         "cd to a directory that exists, or set $DASHI_HOME") from None


def default_bin_dir() -> Path:
    return dashi_home() / "bin"
