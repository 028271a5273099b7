"""Before changing a cluster: say which one, and make sure it is the one meant.

A local k3d cluster (k3d names its contexts ``k3d-<name>``) is this tool's
own playground and may be changed without ceremony. Any other context could
be someone's staging or production: changing it requires naming it with
``--context`` (so a stale current-context never decides) and a confirmation,
typed at a terminal or given as ``--yes``.
"""

from __future__ import annotations

import sys
from typing import Callable

from cluster.errors import GuardError

Confirm = Callable[[str], bool]


def is_local_k3d(context: str) -> bool:
    return context.startswith("k3d-") and len(context) > len("k3d-")


def banner(context: str, server: str, action: str) -> str:
    """The first line of output of every command that changes a cluster."""
    kind = "local k3d cluster" if is_local_k3d(context) else "NOT a local k3d cluster"
    return f"Cluster: {context} ({server}, {kind}) - {action}"


def check(context: str, explicit_context: str | None, *, yes: bool, confirm: Confirm | None,
          action: str) -> None:
    """Raise GuardError unless changing ``context`` is allowed.

    ``explicit_context`` is what the user passed as --context (None if they
    did not); ``confirm`` asks a yes/no question, or is None when nobody can
    answer (no terminal).
    """
    if is_local_k3d(context):
        return
    if explicit_context != context:
        raise GuardError(f"context {context!r} is not a local k3d cluster: to {action} there, "
                         f"name it explicitly with --context {context}")
    if yes:
        return
    if confirm is None:
        raise GuardError(f"{action} on {context!r} needs confirmation and there is no terminal to ask: "
                         "re-run with --yes")
    if not confirm(f"{action} on {context!r}, which is not a local k3d cluster. Continue? [y/N] "):
        raise GuardError("not confirmed; nothing was changed")


def terminal_confirm() -> Confirm | None:
    """A y/N prompt on the terminal, or None when stdin is not a terminal."""
    if not sys.stdin or not sys.stdin.isatty():
        return None

    def ask(question: str) -> bool:
        try:
            return input(question).strip().lower() in ("y", "yes")
        except EOFError:
            return False

    return ask
