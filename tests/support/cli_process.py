"""The CLI as a user runs it, at the cost of a fork.

A fresh interpreter for `inv ...` costs 0.15-0.4 s of imports and start-up;
a process forked from the test process once the package is imported costs a
few milliseconds. The child has its own stdout, stderr, environment, working
directory and exit status, and runs the command through the same
``Program.run(argv)`` as the `inv` binary (invoke's, loading tasks.py from
the working directory) or the `dashi` one (``cluster.cli.main``). What only
a real interpreter shows (the console scripts, permission bits under
dropped capabilities) is tested with real subprocesses: tests/cli/test_cli.py and
the sample in tests/cli/test_bad_input.py.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start(argv: list[str], out: Path, err: Path, *, cli: str = "inv", env: dict | None = None,
          cwd: Path = ROOT) -> int:
    """Start ``cli argv`` in a forked child writing to ``out`` and ``err``;
    returns its pid (reap it with ``os.waitpid``)."""
    from invoke.main import program as inv_program

    from cluster.cli.main import program as dashi_program

    # "dashi-entry": the installed `dashi` script's entry point, which runs
    # the offline tasks' plain command lines itself and hands the rest to
    # the same program as "dashi".
    program = {"inv": inv_program, "dashi": dashi_program, "dashi-entry": dashi_program}[cli]
    env = dict(os.environ if env is None else env)
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    # Objects the child inherits are left out of its garbage collections:
    # a collection that visits them writes to every page they are on, and
    # each such page is then copied for the child.
    gc.freeze()
    try:
        pid = os.fork()
    finally:
        if os.getpid() == parent:
            gc.unfreeze()
    if pid:
        return pid
    code = 99
    try:
        for fd, path in ((1, out), (2, err)):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["dashi" if cli == "dashi-entry" else cli, *argv]
        if cli == "dashi-entry":
            from cluster.cli.offline import main

            main()
        else:
            program.run(sys.argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # a traceback is what the tests look for
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run(*argv: str, cli: str = "inv", env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``cli argv`` to its end, as ``subprocess.run(..., capture_output=True, text=True)`` gives it."""
    with tempfile.TemporaryDirectory(prefix="dashi-cli-") as d:
        out, err = Path(d) / "out", Path(d) / "err"
        pid = start(list(argv), out, err, cli=cli, env=env, cwd=cwd)
        _, status = os.waitpid(pid, 0)
        return subprocess.CompletedProcess([cli, *argv], os.waitstatus_to_exitcode(status),
                                           out.read_text(), err.read_text())
