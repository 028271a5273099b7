"""Before changing a cluster: say which one, show what will change, and make
sure it is the one meant.

A local k3d cluster is this tool's own playground and may be changed without
ceremony. "Local" means both: a k3d context (k3d names them ``k3d-<name>``)
AND an API server on this machine (a loopback address, which is where k3d
publishes it), reached directly. A context merely named ``k3d-...`` that
points elsewhere (a renamed context, a colleague's cluster behind a tunnel
name) is not local, and neither is one whose kubeconfig names a
``proxy-url``: a loopback address behind a proxy is the loopback of the
machine the proxy runs on (k3d on a remote VM, reached through a bastion). Any other cluster could be someone's staging or production: changing
it requires naming it with ``--context`` (so a stale current-context never
decides) and a confirmation, typed at a terminal or given as ``--yes``,
after the plan of what will change has been printed.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Callable
from urllib.parse import urlsplit

from cluster.errors import GuardError

Confirm = Callable[[str], bool]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    # 0.0.0.0 and :: as a destination mean "this host" (Linux connects them
    # to loopback); k3d writes https://0.0.0.0:<port> into kubeconfigs when
    # the API is published on every interface.
    return ip.is_loopback or ip.is_unspecified


def is_local(context: str, server: str, proxy: str | None = None) -> bool:
    """A k3d context whose API server is on this machine, reached without a proxy."""
    if not (context.startswith("k3d-") and len(context) > len("k3d-")) or proxy:
        return False
    try:
        host = urlsplit(server).hostname or ""
    except ValueError:
        return False
    return _loopback(host)


def banner(context: str, server: str, action: str, proxy: str | None = None) -> str:
    """The first line of output of every command that changes a cluster."""
    kind = "local k3d cluster" if is_local(context, server, proxy) else "NOT a local k3d cluster"
    via = f" through proxy {proxy}" if proxy else ""
    return f"Cluster: {context} ({server}{via}, {kind}) - {action}"


def needs_confirmation(context: str, server: str, proxy: str | None = None) -> bool:
    return not is_local(context, server, proxy)


def check(context: str, server: str, explicit_context: str | None, *, yes: bool, confirm: Confirm | None,
          action: str, proxy: str | None = None) -> None:
    """Raise GuardError unless changing ``context`` is allowed.

    ``explicit_context`` is what the user passed as --context (None if they
    did not); ``confirm`` asks a yes/no question, or is None when nobody can
    answer (no terminal). Call it after the plan is printed.
    """
    if is_local(context, server, proxy):
        return
    if not context.startswith("k3d-"):
        why = "is not a local k3d cluster"
    elif proxy:
        why = f"is named like a k3d cluster but is reached through the proxy {proxy}"
    else:
        why = f"is named like a k3d cluster but its API server {server} is not on this machine"
    if explicit_context != context:
        raise GuardError(f"context {context!r} {why}: to {action} there, "
                         f"name it explicitly with --context {context}")
    if yes:
        return
    if confirm is None:
        raise GuardError(f"{action} on {context!r} needs confirmation and there is no terminal to ask: "
                         "re-run with --yes")
    if not confirm(f"{action} on {context!r}, which {why}, as planned above. Continue? [y/N] "):
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
