"""How the user runs the tool, so a message that names a command to run
names it as they would type it: `dashi X` for the installed command, `inv X`
in a clone (where `dashi` works too, but README says `inv`).

The entry point that runs the tasks says which (``cluster.cli.main`` for
`dashi`); anything else that runs them (invoke's own `inv`, tests calling a
task) gets `inv`.
"""

from __future__ import annotations

PROGRAM = "inv"


def set_program(name: str) -> None:
    global PROGRAM
    PROGRAM = name


def command(rest: str) -> str:
    """``command("tools")`` -> "dashi tools" or "inv tools"."""
    return f"{PROGRAM} {rest}"
