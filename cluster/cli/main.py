"""The `dashi` command: invoke's CLI over the package's tasks, so the tool
works outside a clone after `pip install` (`dashi --list`, `dashi --version`,
`dashi --print-completion-script bash`). The installed command starts in
``cluster.cli.offline.main``, which runs the offline tasks' plain command
lines without importing invoke and hands everything else to ``main``."""

from __future__ import annotations

from invoke import Collection, Program

from cluster.cli import tasks
from cluster.cli.offline import stdout_gone


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dashi-cluster")
    except metadata.PackageNotFoundError:  # run from a clone without installing
        return "unknown"


class _Program(Program):
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
