"""The offline tasks (policies-check, explain, reachability, policies-diff)
without invoke: their bodies, which ``tasks.py`` makes invoke tasks of,
and the `dashi` command's fast path to them.

Importing invoke costs a process more than all the rest of a small
``dashi reachability`` (its CLI machinery, ``importlib.metadata``,
``unittest.mock``, ``asyncio``, its vendored YAML). ``run`` reads the
command lines of these four tasks that invoke would read one way only: the
task name first, then the task's own flags (long, ``--flag=value``, or
the short ones of ``SHORT_FLAGS``) and positional arguments, each flag at
most once (a list flag any number of times). Anything else (help, core
flags before or after the task, another task, an unknown or incomplete
flag, a value that starts with ``-``, invoke's configuration files or
``INVOKE_*`` variables, which could change how a command line reads) is
handed to invoke, which answers it as always. What the fast path runs, it
runs as invoke would: the same body, the same arguments, and the same
outcome (``outcome``: exit code, the one-line error, ``--json`` errors on
stdout). tests/cli/test_fast_path.py runs each task both ways on good and
bad command lines and compares stdout, stderr and the exit code.
"""

from __future__ import annotations

import json as _json
import os
import sys
from collections import namedtuple

from cluster import invoked
from cluster.errors import DashiError

# One meaning per short flag in every task. Invoke would otherwise pick the
# first free letter of each flag per task (-p was --profile in most tasks and
# --port in explain; -c was --cni or --context). Flags not listed here have no
# short form.
SHORT_FLAGS = {
    "profile": "p",
    "context": "c",
    "json": "j",
    "quiet": "q",
    "name": "n",
    "dry_run": "d",
    "yes": "y",
    "until": "u",
    "to": "t",
    "resources": "r",
    "format": "f",
    "endpoints": "e",
    "namespace": "N",
}


# --------------------------------------------------------------------------
# The bodies (the first docstring line is what `dashi --list` shows)


def policies_check(c, profile="dashi", skip=None, json=False, quiet=False, strict=False, cni=None, html=None):
    """Offline: predict each step's matrix and compare the result with the intended matrix."""
    from cluster.cli import policy

    return policy.policies_check(profile, skip or [], as_json=json, quiet=quiet, strict=strict, cni=cni,
                                 html_path=html)


def explain(c, src, dst, port, profile="dashi", step=None, json=False, cni=None):
    """Why is SRC -> DST PORT allowed or blocked? Exit 0 allowed, 3 blocked, 1 bad input."""
    from cluster.cli import policy

    return policy.explain(profile, src, dst, port, step, as_json=json, cni=cni)


def reachability(c, resources, format="json", endpoints="workloads", namespace="default", expect=None):
    """Offline: every allowed (src, dst, port range) among the resources in a directory."""
    from cluster.cli import policy

    return policy.reachability(resources, format, endpoints=endpoints, namespace=namespace, expect=expect)


def policies_diff(c, old, new, profile=None, git=False, repo=".", format="table", json=None, markdown=None,
                  html=None, html_link=None):
    """Connectivity diff of two policy sets: edges opened and closed; exit 3 if one is not intended."""
    from cluster.cli import gitops

    return gitops.policies_diff(old, new, profile=profile, use_git=git, repo=repo, fmt=format,
                                json_path=json, markdown_path=markdown, html_path=html, html_link=html_link)


# The task name of each body, and its flags that may be given more than once.
TASKS = {"policies-check": policies_check, "explain": explain, "reachability": reachability,
         "policies-diff": policies_diff}
ITERABLE = {"policies-check": ("skip",)}


# --------------------------------------------------------------------------
# What a body's return or error means for the process


# How a task ends: its exit code, the line for stderr (invoke prints an
# ``Exit``'s message there) and, with ``--json``, the error as a JSON document
# for stdout. (Named tuples: dataclasses cost a small run its import.)
Outcome = namedtuple("Outcome", "code message stdout", defaults=(None, None))


def outcome(fn, *args, **kwargs) -> Outcome:
    """Run a task body that returns an exit code; the package's expected
    errors are one line and their exit code, never a traceback (with
    ``--json``: a JSON object on stdout); Ctrl-C is "interrupted", 130."""
    try:
        code = fn(*args, **kwargs)
    except DashiError as err:
        if kwargs.get("json") is True:
            return Outcome(err.exit_code, stdout=_json.dumps({"error": str(err), "exit_code": err.exit_code}))
        return Outcome(err.exit_code, message=f"error: {err}")
    except KeyboardInterrupt:
        return Outcome(130, message="interrupted")
    return Outcome(code or 0)


# --------------------------------------------------------------------------
# The fast path


# A command line the fast path runs: the task and the body's arguments.
Call = namedtuple("Call", "task kwargs")


# Invoke reads its configuration from these files and from INVOKE_*
# variables (invoke/config.py: system prefix /etc/, user prefix ~/., file
# and variable prefix "invoke"); any of them could change how a command line
# reads (tasks.auto_dash_names, ...), so where one exists invoke decides.
_INVOKE_CONFIG = tuple(f"{prefix}invoke.{ext}" for prefix in ("/etc/", "~/.") for ext in ("yaml", "yml", "json", "py"))


def _invoke_configured() -> bool:
    if any(k.startswith("INVOKE_") for k in os.environ):
        return True
    return any(os.path.exists(os.path.expanduser(p)) for p in _INVOKE_CONFIG)


def _grammar(task: str):
    """The task's parameters as invoke reads them from the body's signature:
    those without a default are positional; a bool default is a flag
    without a value; ``ITERABLE`` ones are lists; the rest take a string."""
    fn = TASKS[task]
    code = fn.__code__
    names = code.co_varnames[1:code.co_argcount]  # after the context
    defaults = dict(zip(names[len(names) - len(fn.__defaults__ or ()):], fn.__defaults__ or ()))
    positional = [n for n in names if n not in defaults]
    flags = {}
    for n in names:
        kind = bool if isinstance(defaults.get(n), bool) else list if n in ITERABLE.get(task, ()) else str
        flags["--" + n.replace("_", "-")] = (n, kind)
        if n in SHORT_FLAGS:
            flags["-" + SHORT_FLAGS[n]] = (n, kind)
    return positional, defaults, flags


def parse(argv: list[str]) -> Call | None:
    """The call a command line (without the program name) makes, when the
    fast path reads it exactly as invoke would; else None. Invoke takes a
    token as a flag's value, or as a missing positional argument, before
    it looks for a task of that name, and so does this."""
    if not argv or argv[0] not in TASKS or _invoke_configured():
        return None
    task = argv[0]
    positional, defaults, flags = _grammar(task)
    values: dict = {}
    tokens = argv[1:]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-"):
            missing = [n for n in positional if n not in values]
            if not missing:
                return None  # invoke: another task, or "No idea what ... is!"
            values[missing[0]] = token
            continue
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in flags:
            return None
        param, kind = flags[name]
        if kind is bool:
            if eq or param in values:
                return None
            values[param] = True
            continue
        if eq:
            value = inline
        else:
            if i == len(tokens) or tokens[i].startswith("-"):
                return None
            value = tokens[i]
            i += 1
        if kind is list:
            values.setdefault(param, []).append(value)
        elif param in values:
            return None
        else:
            values[param] = value
    if any(n not in values for n in positional):
        return None  # invoke says which positional arguments are missing
    kwargs = {n: values.get(n, [] if flags["--" + n.replace("_", "-")][1] is list else defaults.get(n))
              for n in positional + [n for n in defaults]}
    return Call(task, kwargs)


def run(argv: list[str]) -> int | None:
    """Run a command line the fast path reads (see ``parse``): print what
    invoke would print and return the exit code; None when invoke must
    read it."""
    call = parse(argv)
    if call is None:
        return None
    invoked.set_program("dashi")  # as the program does: messages name `dashi X`
    out = outcome(TASKS[call.task], None, **call.kwargs)
    if out.stdout is not None:
        print(out.stdout)
    if out.message:
        print(out.message, file=sys.stderr)
    return out.code


def main() -> None:
    """The `dashi` command: the fast path where it reads the command line,
    invoke's program (``cluster.cli.main``) for everything else."""
    try:
        code = run(sys.argv[1:])
    except BrokenPipeError:
        stdout_gone()
    if code is None:
        from cluster.cli.main import main as invoke_main

        invoke_main()
        return
    sys.exit(code)


def stdout_gone() -> None:
    """`dashi ... | head`: the reader left early. Point stdout at /dev/null so
    the interpreter's final flush does not fail again, and exit 1."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
