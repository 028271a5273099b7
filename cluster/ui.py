"""Shared terminal output: one rich Console, plain when not a terminal."""

from __future__ import annotations

import os
import shlex
import sys

from rich.console import Console


def make_console(file=None) -> Console:
    # Width 100 when piped (CI logs, tests) so the plan is not wrapped at 80.
    f = file or sys.stdout
    interactive = hasattr(f, "isatty") and f.isatty()
    return Console(file=f, highlight=False, soft_wrap=True,
                   width=None if interactive else 100,
                   no_color=bool(os.environ.get("NO_COLOR")) or not interactive)


def elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip("\n").splitlines())



def display(argv, env: dict | None = None) -> str:
    """The command as a user would type it (env assignments first)."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return (prefix + " " if prefix else "") + shlex.join(argv)
