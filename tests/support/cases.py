"""How many generated cases a randomized test runs.

The unit run (``python -m pytest``) takes the first ``quick`` seeds of each
generator, enough to catch a regression while someone works; a run with
``DASHI_TEST_CASES=all`` (``.ci/run`` sets it) takes every one. The seeds are
fixed, so a failure names a seed that fails again on every run.
"""

from __future__ import annotations

import os


# Whether this run takes every case.
ALL = os.environ.get("DASHI_TEST_CASES") == "all"


def seeds(every: int, quick: int) -> range:
    """Seeds 0..every-1 where the run asks for all cases, else 0..quick-1."""
    if quick > every:
        raise ValueError(f"quick ({quick}) is more than every ({every})")
    return range(every if ALL else quick)
