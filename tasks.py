"""Invoke tasks: `inv --list` shows them, `inv --help TASK` documents each flag.

Each task is a line or two that calls its entry point in ``cluster.cli``,
which returns the exit code. Expected failures (bad input, missing tools, a
red verification) surface as a one-line message and a non-zero exit, never a
traceback.
"""

from __future__ import annotations

import functools

from invoke import task
from invoke.exceptions import Exit

from cluster.errors import DashiError


def _friendly(fn):
    """Run a task body that returns an exit code; turn a non-zero code and the
    package's expected errors into `Exit` (one line, its exit code)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            code = fn(*args, **kwargs)
        except DashiError as err:
            raise Exit(f"error: {err}", code=err.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        if code:
            raise Exit(code=code)

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
    from cluster.cli import policy

    return policy.policies_check(profile, skip or [], as_json=json, quiet=quiet, strict=strict)


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
    from cluster.cli import policy

    return policy.explain(profile, src, dst, port, step)


@task(
    help={
        "resources": "directory of YAML files (Namespaces, Pods, workloads, NetworkPolicies)",
        "format": "json (default) or table",
    },
)
@_friendly
def reachability(c, resources, format="json"):
    """Offline: every allowed (src, dst, port) among the resources in a directory."""
    from cluster.cli import policy

    return policy.reachability(resources, format)

# --- cluster lifecycle -----------------------------------------------------

_NAME_HELP = "k3d cluster name (context k3d-<name>); default dashi"


@task(
    help={
        "name": _NAME_HELP,
        "cni": "calico (default, tigera operator), cilium (Helm chart) or k3s (flannel + k3s' policy controller)",
        "agents": "number of agent nodes besides the one server (0-5); default 0",
        "k3s_version": "rancher/k3s image tag, e.g. v1.33.4-k3s1 (default: the pin in cluster/versions.py)",
        "profile": "stand-ins to deploy: dashi (default) or environments",
        "api_port": "host port on 127.0.0.1 for the Kubernetes API; default 6550",
        "dry_run": "print every command and manifest without running anything (works without Docker/k3d)",
        "cleanup_on_failure": "delete the cluster this run created when a step fails (default: keep it for inspection)",
    },
)
@_friendly
def cluster_up(c, name="dashi", cni="calico", agents=0, k3s_version=None, profile="dashi", api_port=6550,
               dry_run=False, cleanup_on_failure=False):
    """Create a k3d cluster with a policy-enforcing CNI, the stand-ins, and prove enforcement."""
    from cluster import versions
    from cluster.cli import cluster

    return cluster.up(name=name, cni=cni, agents=int(agents), k3s_version=k3s_version or versions.K3S_VERSION,
                      profile=profile, api_port=int(api_port), dry_run=dry_run,
                      cleanup_on_failure=cleanup_on_failure)


@task(help={"name": _NAME_HELP, "force": "delete even a k3d cluster dashi-cluster did not create"})
@_friendly
def cluster_down(c, name="dashi", force=False):
    """Delete the k3d cluster (nodes, volumes, kubeconfig entry)."""
    from cluster.cli import cluster

    return cluster.down(name, force=force)


@task(
    help={
        "name": _NAME_HELP,
        "profile": "whose stand-ins and rollout state to report: dashi (default) or environments",
        "context": "report on this kubeconfig context instead of the k3d cluster (e.g. one made ready with prepare)",
    },
)
@_friendly
def status(c, name="dashi", profile="dashi", context=None):
    """Cluster, CNI health, stand-ins, and which policy step the rollout has applied."""
    from cluster.cli import cluster

    return cluster.status(name, profile=profile, context=context)


@task(
    help={
        "only": "install only this tool (k3d, helm or kubectl; repeatable); default all three",
        "base_url": "download mirror laid out as <url>/<tool>/<upstream path> (also $DASHI_TOOLS_BASE_URL)",
    },
    iterable=["only"],
)
@_friendly
def tools(c, only=None, base_url=None):
    """Install pinned k3d, helm and kubectl into ./.dashi/bin, checksums verified."""
    from cluster.cli import cluster

    return cluster.install_tools(only=only or None, base_url=base_url)


@task(
    help={
        "context": "kubeconfig context of the cluster to prepare (required: nothing happens to a cluster you do not name)",
        "profile": "stand-ins to deploy: dashi (default) or environments",
        "adopt": "deploy into profile namespaces that exist but were not created by dashi-cluster",
        "dry_run": "print the manifests and steps without touching the cluster",
        "yes": "confirm changing a cluster that is not a local k3d one without asking",
    },
)
@_friendly
def prepare(c, context=None, profile="dashi", adopt=False, dry_run=False, yes=False):
    """Existing cluster: deploy the stand-ins and run the enforcement canary (no k3d, no CNI install)."""
    from cluster.cli import cluster

    return cluster.prepare(context, profile=profile, adopt=adopt, dry_run=dry_run, yes=yes)


# --- policy rollout --------------------------------------------------------

_CONTEXT_HELP = ("kubeconfig context (KUBECONFIG is read as kubectl does); required for a cluster "
                 "that is not a local k3d one (a k3d-* context whose API server is on this machine)")


@task(
    help={
        "profile": "profile name (manifests/<name>) or directory; default dashi",
        "until": "stop after this step (default: apply every step)",
        "context": _CONTEXT_HELP,
        "dry_run": "no cluster: print the steps, the objects each applies and the predicted matrix after each",
        "yes": "confirm changing a cluster that is not a local k3d one without asking",
    },
)
@_friendly
def network_policies_up(c, profile="dashi", until=None, context=None, dry_run=False, yes=False):
    """Apply the policy steps one at a time: snapshot, apply, verify live, roll back on a mismatch."""
    from cluster.cli import rollout

    return rollout.up(profile, until=until, context=context, dry_run=dry_run, yes=yes)


@task(
    help={
        "to": "a step name (the state right after it) or 'baseline' (no policies of ours); default: one step back",
        "profile": "profile name or directory; default dashi",
        "context": _CONTEXT_HELP,
        "yes": "confirm changing a cluster that is not a local k3d one without asking",
    },
)
@_friendly
def rollback(c, to=None, profile="dashi", context=None, yes=False):
    """Restore an earlier snapshot of our NetworkPolicies exactly, then verify the matrix live."""
    from cluster.cli import rollout

    return rollout.rollback(profile, to=to, context=context, yes=yes)


@task(
    help={
        "profile": "profile name or directory; default dashi",
        "context": "kubeconfig context (default: the current one); smoke only reads, so any cluster is fine",
        "json": "also write the evidence as JSON to this file",
        "markdown": "also write the evidence as a Markdown report to this file",
    },
)
@_friendly
def smoke(c, profile="dashi", context=None, json=None, markdown=None):
    """Probe the whole matrix now; exit 0 only when every edge is as expected."""
    from cluster.cli import rollout

    return rollout.smoke(profile, context=context, json_path=json, markdown_path=markdown)


@task(
    help={
        "profile": "profile name; default dashi",
        "context": "kubeconfig context (default: the current one)",
    },
)
@_friendly
def history(c, profile="dashi", context=None):
    """The policy steps applied and rolled back on a cluster: when, by whom, snapshots, verification."""
    from cluster.cli import rollout

    return rollout.history(profile, context=context)
