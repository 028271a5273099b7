"""Shared terminal output: one rich Console, plain when not a terminal."""

from __future__ import annotations

import os
import shlex
import sys

from rich.console import Console


def make_console(file=None) -> Console:
    f = file or sys.stdout
    interactive = hasattr(f, "isatty") and f.isatty()
    return Console(file=f, highlight=False, soft_wrap=True,
                   width=None if interactive else _piped_width(),
                   no_color=bool(os.environ.get("NO_COLOR")) or not interactive)


def _piped_width() -> int:
    """The width for output into a pipe or a file: that of the terminal the
    user still looks at (`| head`, `| less`, `> out.txt` typed in one: its
    stderr is the terminal), else 100 (CI logs, tests), so the plan is not
    wrapped at 80."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 100


def prose(console: Console) -> dict:
    """``console.print`` options for sentences: in a terminal, wrapped at word
    boundaries (the terminal would cut a word in two); piped, never wrapped
    (a line stays whole for grep). Not for commands a user may copy: those
    stay whole lines everywhere."""
    return {"soft_wrap": not console.is_terminal}


def elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s"


def indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip("\n").splitlines())



def shown_path(path) -> str:
    """A path as messages show it: relative to the working directory when
    inside it (what the user typed, or would), else as it is."""
    try:
        rel = os.path.relpath(path)
    except (ValueError, OSError):  # another drive (Windows), or the working directory is gone
        return str(path)
    return str(path) if rel == ".." or rel.startswith("../") else rel


def display(argv, env: dict | None = None) -> str:
    """The command as a user would type it (env assignments first)."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return (prefix + " " if prefix else "") + shlex.join(argv)
