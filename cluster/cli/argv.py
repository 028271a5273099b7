"""The one mistake invoke's parser cannot explain: a task's flag before the
task name (`dashi -p environments policies-check`). Invoke reads what comes
before the task name as its own flags, so `-p` there is its `--pty` and the
profile becomes a task name: "No idea what 'environments' is!". Here the
command line is read first, and such a flag is one line saying where it
goes.

Pure: argv and the tasks' flags in, a message or None out.
"""

from __future__ import annotations

import shlex

# Invoke's own flags that mean something to `dashi` before a task name. The
# others (--pty, --echo, --warn-only, --collection, --search-root, --config,
# ...) shape shell commands a task runs through invoke's context, which
# these tasks never do; where one is spelt like a task's flag (-p, -c, -r,
# -f, -e), the user meant the task's.
CORE_FLAGS = frozenset({"-h", "--help", "-V", "--version", "-l", "--list", "-D", "--list-depth", "-F",
                        "--list-format", "-d", "--debug", "--complete", "--print-completion-script"})


def may_be_misplaced(argv: list[str], task_names) -> bool:
    """Whether a flag other than dashi's own comes before the first task name
    (cheap: the common command line has none)."""
    for token in argv:
        if token in task_names or token == "--":
            return False
        if token.startswith("-") and token.split("=", 1)[0] not in CORE_FLAGS:
            return True
    return False


def misplaced_flags(argv: list[str], tasks: dict[str, dict[str, bool]], program: str = "dashi") -> str | None:
    """The message for task flags given before the task name, else None.

    ``tasks``: task name -> {flag as typed ("-p", "--profile"): whether it
    takes a value}."""
    flags: dict[str, bool] = {}
    for task_flags in tasks.values():
        flags.update(task_flags)
    misplaced: list[str] = []
    before: list[str] = []  # what stays before the task name
    i = 0
    task = None
    while i < len(argv):
        token = argv[i]
        if token == "--":
            break
        if token in tasks:
            task = token
            break
        name = token.split("=", 1)[0]
        if token.startswith("-") and name not in CORE_FLAGS and name in flags:
            misplaced.append(token)
            value = argv[i + 1] if i + 1 < len(argv) else None
            # A value it may take (smoke's --json takes one or none): never a task name or a flag.
            if flags[name] and "=" not in token and value is not None and value not in tasks \
                    and not value.startswith("-"):
                misplaced.append(argv[i + 1])
                i += 1
        else:
            before.append(token)
        i += 1
    if not misplaced:
        return None
    fixed = shlex.join([program, *before, task or "TASK", *misplaced, *argv[i + 1:]])
    return (f"{shlex.join(misplaced)}: a task's flags go after the task name: {fixed} "
            f"(before it, {program} reads only its own: --list, --help, --version, --debug)")
