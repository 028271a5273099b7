"""Skip a test whose infrastructure is missing, unless the run requires it.

A developer without Docker or a test cluster gets skips with the reason.
CI builds and starts both and installs Chromium, and says so with
``DASHI_REQUIRE=e2e,docker,browser``:
there a missing engine or a cluster that does not answer fails the test,
so a skip can never be the green outcome of a run that could have tested.
"""

from __future__ import annotations

import os

import pytest


def required(kind: str) -> bool:
    return kind in {k.strip() for k in os.environ.get("DASHI_REQUIRE", "").split(",")}


def unavailable(kind: str, reason: str) -> None:
    """Skip with ``reason``; fail instead where the run requires ``kind``."""
    if required(kind):
        pytest.fail(f"{reason} (this run requires {kind}: DASHI_REQUIRE={os.environ['DASHI_REQUIRE']})",
                    pytrace=False)
    pytest.skip(reason)
