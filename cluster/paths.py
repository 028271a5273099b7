"""Where the tool's files are: the repository (profiles, CNI values) and the
project-local directory for generated configs and tools."""

from __future__ import annotations

import os
from pathlib import Path

# cluster/paths.py -> the repository (or the installed tree) root.
REPO_ROOT = Path(__file__).resolve().parent.parent


def dashi_home() -> Path:
    """Project-local state: generated configs and the tool directory."""
    return Path(os.environ.get("DASHI_HOME") or REPO_ROOT / ".dashi")


def default_bin_dir() -> Path:
    return dashi_home() / "bin"
