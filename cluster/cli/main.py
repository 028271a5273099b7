"""The `dashi` command: invoke's CLI over the package's tasks, so the tool
works outside a clone after `pip install` (`dashi --list`, `dashi --version`,
`dashi --print-completion-script bash`). The installed command starts in
``cluster.cli.offline.main``, which runs the offline tasks' plain command
lines without importing invoke and hands everything else to ``main``."""

from __future__ import annotations

import sys

from invoke import Collection, Program

from cluster import invoked
from cluster.cli import tasks
from cluster.cli.argv import may_be_misplaced, misplaced_flags
from cluster.cli.offline import stdout_gone


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dashi-cluster")
    except metadata.PackageNotFoundError:  # run from a clone without installing
        return "unknown"


def _task_flags(namespace: Collection) -> dict[str, dict[str, bool]]:
    """Each task's flags as typed (-p, --profile) and whether each takes a value."""
    out: dict[str, dict[str, bool]] = {}
    for name, task in namespace.tasks.items():
        flags = out[name] = {}
        for arg in task.get_arguments():
            if arg.positional:
                continue
            for n in arg.names:
                flags[("-" if len(n) == 1 else "--") + n] = arg.takes_value
    return out


class _Program(Program):
    def run(self, argv=None, exit: bool = True) -> None:
        # Messages that name a command name it as `dashi X` from here on.
        invoked.set_program(self.binary)
        args = list(sys.argv if argv is None else argv)[1:]
        problem = None
        if may_be_misplaced(args, self.namespace.task_names):  # reading every task's flags costs a millisecond
            problem = misplaced_flags(args, _task_flags(self.namespace), self.binary)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(1)
        super().run(argv, exit)

    def print_version(self) -> None:
        # importlib.metadata costs a tenth of a second to import: only for --version.
        self.version = _version()
        super().print_version()


program = _Program(namespace=Collection.from_module(tasks), name="dashi", binary="dashi")


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:
        stdout_gone()  # `dashi --list | head`


if __name__ == "__main__":
    main()
