"""Invoke tasks: `inv --list` shows them, `inv --help TASK` documents each flag.

Each task is a few lines that call into the ``cluster`` package. Expected
failures (bad input, missing tools, a red verification) surface as a
one-line message and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools

from invoke import task
from invoke.exceptions import Exit

from cluster.errors import DashiError


def _friendly(fn):
    """Turn the package's expected errors into `Exit` (one line, its exit code)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DashiError as err:
            raise Exit(f"error: {err}", code=err.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


# --- offline policy engine -------------------------------------------------


@task(
    help={
        "profile": "profile name (manifests/<name>) or directory; default dashi",
        "skip": "leave a step out, to see what it was for (repeatable)",
        "json": "print the result as JSON instead of tables",
        "quiet": "no per-step matrices, only the findings",
        "strict": "also fail when the least-privilege audit finds over-permissive rules",
    },
    iterable=["skip"],
)
@_friendly
def policies_check(c, profile="dashi", skip=None, json=False, quiet=False, strict=False):
    """Offline: predict each step's matrix and compare the result with the intended matrix."""
    from cluster import offline

    raise_exit = offline.policies_check(profile, skip or [], as_json=json, quiet=quiet, strict=strict)
    if raise_exit:
        raise Exit(code=1)


@task(
    help={
        "src": "source: namespace/name of a workload or pod, or 'host'",
        "dst": "destination: namespace/name (or external/<name>)",
        "port": "port number or name, optionally /UDP or /SCTP (default TCP)",
        "profile": "profile name or directory; default dashi",
        "step": "evaluate after this step instead of after all steps",
    },
)
@_friendly
def explain(c, src, dst, port, profile="dashi", step=None):
    """Why is SRC -> DST PORT allowed or blocked? Names the policies on each side."""
    from cluster import offline

    offline.explain(profile, src, dst, port, step)


@task(
    help={
        "resources": "directory of YAML files (Namespaces, Pods, workloads, NetworkPolicies)",
        "format": "json (default) or table",
    },
)
@_friendly
def reachability(c, resources, format="json"):
    """Offline: every allowed (src, dst, port) among the resources in a directory."""
    from cluster import offline

    offline.reachability(resources, format)

# --- cluster lifecycle -----------------------------------------------------

# --- policy rollout --------------------------------------------------------
