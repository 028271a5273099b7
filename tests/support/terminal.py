"""Output as a person sees it.

``screen`` runs a command in a real terminal: a tmux pane of a given
width, of its own tmux server (a socket in a temporary directory), and
reads back what the pane shows, its scrollback included (`capture-pane`):
the lines the terminal wrapped, the width rich measured from the pane, the
marks, without the colours. ``piped`` runs it with stdout and stderr into
one pipe, as `| less` or a CI log sees it.

Both end with a line "[exit N]", so a golden file holds the exit code too.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

# Lines a pane keeps above what it shows: more than any output here.
HISTORY = 100_000
HEIGHT = 50


def available() -> str | None:
    """None when tmux is here, else why not."""
    return None if shutil.which("tmux") else "tmux is not installed (apt-get install tmux)"


def _env(env: dict) -> dict:
    # The terminal says how wide it is; a COLUMNS inherited from the test
    # run would override the pane's size.
    return {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "TMUX", "TMUX_PANE")}


def screen(argv: list[str], width: int, *, cwd: Path, env: dict, timeout: float = 120) -> str:
    """What a ``width``-column terminal shows after ``argv`` ran in it (trailing blanks removed)."""
    with tempfile.TemporaryDirectory(prefix="dashi-tmux-") as d:
        sock, conf = Path(d) / "sock", Path(d) / "tmux.conf"
        conf.write_text(f"set -g history-limit {HISTORY}\nset -g status off\n")
        # -u: UTF-8 whatever the locale says (the marks are ✓ · ✗).
        tmux = ["tmux", "-u", "-S", str(sock), "-f", str(conf)]
        # The pane's command: the task, its exit code, then a signal that it
        # is done; the pane stays open until its screen has been read.
        script = (f"cd {shlex.quote(str(cwd))} && {shlex.join(argv)}; echo \"[exit $?]\"; "
                  f"{shlex.join(tmux)} wait-for -S done; sleep {int(timeout)}")
        try:
            subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(HEIGHT), script],
                           env=_env(env), check=True, timeout=30)
            subprocess.run([*tmux, "wait-for", "done"], check=True, timeout=timeout)
            shown = subprocess.run([*tmux, "capture-pane", "-p", "-S", "-", "-E", "-", "-t", "t"],
                                   capture_output=True, text=True, check=True, timeout=30).stdout
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=30)
    return tidy(shown)


def piped(argv: list[str], *, cwd: Path, env: dict, timeout: float = 120) -> str:
    """What ``argv`` writes into a pipe (stdout and stderr together)."""
    proc = subprocess.run(argv, cwd=cwd, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    return tidy(proc.stdout + f"[exit {proc.returncode}]\n")


def tidy(text: str) -> str:
    """Trailing blanks off every line, blank lines off the end: what neither a
    person nor a golden file can see."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines()) + "\n"


def user_env(**extra: str) -> dict:
    """The environment of the test run, minus what would change the tool's look."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "PYTHONWARNINGS")}
    env.update(extra)
    return env
