"""Invoke tasks for `inv` in a clone: the definitions live in the package
(``cluster/cli/tasks.py``) so the installed `dashi` command has them too."""

from cluster.cli.tasks import *  # noqa: F401,F403
