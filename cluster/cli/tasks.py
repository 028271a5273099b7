"""Invoke tasks: `inv --list` (or `dashi --list`) shows them, `inv --help TASK`
documents each flag.

Each task is a line or two that calls its entry point in ``cluster.cli``,
which returns the exit code. The offline tasks' bodies live in
``cluster.cli.offline``, without invoke, so the `dashi` command can run
them without importing it. Expected failures (bad input, missing tools, a
red verification) surface as a one-line message and a non-zero exit, never a
traceback; with ``--json`` the message is a JSON object on stdout.

The definitions live in the package so the installed ``dashi`` command
(``cluster.cli.main``) has them; ``tasks.py`` at the repository root
re-exports them for ``inv`` in a clone.
"""

from __future__ import annotations

import functools

from invoke import Task, task
from invoke.exceptions import Exit, ParseError
from invoke.parser import Argument

from cluster.cli import offline
from cluster.cli.offline import SHORT_FLAGS
from cluster.errors import DashiError

_KINDS = {int: "an integer", float: "a number"}


class _Argument(Argument):
    """Invoke's Argument with two of its parse gaps closed: a value that does
    not convert (``--agents abc``) is a ParseError, not a ValueError traceback,
    and a list flag given without a value (``--skip`` at the end) is an error
    instead of being silently dropped."""

    @classmethod
    def like(cls, arg: Argument) -> "_Argument":
        new = cls(names=arg.names, kind=arg.kind, default=arg.default, help=arg.help,
                  positional=arg.positional, optional=arg.optional, incrementable=arg.incrementable,
                  attr_name=arg.attr_name)
        if new.kind is list:
            # Invoke starts list flags at [] where others start at None, so
            # its "needed value and was not given one" check never fires.
            new.raw_value = None
        return new

    @property
    def flag(self) -> str:
        return "--" + self.names[0]

    def set_value(self, value, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except (TypeError, ValueError):
            raise ParseError(f"{self.flag}: {value!r} is not {_KINDS.get(self.kind, self.kind.__name__)}") \
                from None

    def __repr__(self) -> str:
        # Invoke names the flag with repr() in its own parse errors
        # ("Flag '--profile' needed value and was not given one!").
        return repr(self.flag)


class DashiTask(Task):
    """A Task with the short flags of SHORT_FLAGS and the parse fixes of _Argument."""

    def __init__(self, *args, **kwargs):
        kwargs["auto_shortflags"] = False
        super().__init__(*args, **kwargs)

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short:
            opts["names"] = [*opts["names"], short]
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        return [_Argument.like(a) for a in super().get_arguments(ignore_unknown_help)]


def dashi_task(*args, **kwargs):
    return task(*args, klass=DashiTask, **kwargs)


def _friendly(fn):
    """Run a task body that returns an exit code; its outcome
    (``offline.outcome``: the package's expected errors as one line, or with
    ``--json`` as a JSON object on stdout) becomes invoke's `Exit`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        out = offline.outcome(fn, *args, **kwargs)
        if out.stdout is not None:
            print(out.stdout)
        if out.code or out.message:
            raise Exit(out.message, code=out.code)

    return wrapper


def _int(value, flag: str) -> int:
    """A flag value as an integer, for callers that pass strings (tests, the API)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DashiError(f"{flag}: {value!r} is not an integer") from None


# --- offline policy engine -------------------------------------------------

_PROFILE_HELP = "profile name (a directory under manifests/) or a profile directory; default dashi"
_JSON_HELP = "print the result as one JSON document on stdout (errors too: {\"error\": ..., \"exit_code\": ...})"


_HTML_HELP = ("also write the report as one self-contained HTML page to this file: per step the matrix as a grid, "
              "every cell with the policies that decide it")


_CNI_HELP = ("read each step in the form a live rollout uses on this CNI (calico, cilium, k3s): a step's "
             "variant for it, where the profile has one; default: the plain form")


policies_check = dashi_task(
    help={
        "profile": _PROFILE_HELP,
        "skip": "leave a step out, to see what it was for (repeatable)",
        "json": _JSON_HELP,
        "quiet": "no per-step matrices, only the findings",
        "strict": "also fail when the least-privilege audit finds over-permissive rules",
        "cni": _CNI_HELP,
        "html": _HTML_HELP,
    },
    iterable=list(offline.ITERABLE["policies-check"]),
)(_friendly(offline.policies_check))


explain = dashi_task(
    help={
        "src": "source: namespace/name of a workload or pod, or 'host'",
        "dst": "destination: namespace/name (or external/<name>)",
        "port": "port number or name, optionally /UDP or /SCTP (default TCP)",
        "profile": _PROFILE_HELP,
        "step": "evaluate after this step instead of after all steps",
        "json": _JSON_HELP,
        "cni": _CNI_HELP,
    },
)(_friendly(offline.explain))


reachability = dashi_task(
    help={
        "resources": "a directory or file of manifests (.yaml, .yml, .json; a profile directory works too)",
        "format": "json (default) or table",
        "endpoints": "workloads (default: one endpoint per workload) or pods (one per replica)",
        "namespace": "namespace of objects that name none (as kubectl's --namespace); default 'default'",
        "expect": "compare with this file (the JSON reachability printed before, committed; hidden or outside "
                  "the tree, e.g. DIR/.reachability.json): exit 3 naming every change, 0 when the same",
    },
)(_friendly(offline.reachability))

# --- cluster lifecycle -----------------------------------------------------

_NAME_HELP = "k3d cluster name (context k3d-<name>); default dashi"
_TRAFFIC_HELP = ("stand-ins that carry traffic: each client dials its intended servers and the profile's "
                 "traffic.unlisted edges on a steady beat, for inv observe")


@dashi_task(
    help={
        "name": _NAME_HELP,
        "cni": "calico (default, tigera operator), cilium (Helm chart) or k3s (flannel + k3s' policy controller)",
        "agents": "number of agent nodes besides the one server (0-5); default 0",
        "k3s_version": "rancher/k3s image tag, e.g. v1.33.4-k3s1 (default: the pin in cluster/versions.py)",
        "profile": "stand-ins to deploy: dashi (default), dashi-cnp or environments",
        "api_port": "host port on 127.0.0.1 for the Kubernetes API; default 6550",
        "dry_run": "print every command and manifest without running anything (works without Docker/k3d)",
        "cleanup_on_failure": "delete the cluster this run created when a step fails (default: keep it for inspection)",
        "traffic": _TRAFFIC_HELP,
    },
)
@_friendly
def cluster_up(c, name="dashi", cni="calico", agents=0, k3s_version=None, profile="dashi", api_port=6550,
               dry_run=False, cleanup_on_failure=False, traffic=False):
    """Create a k3d cluster with a policy-enforcing CNI, the stand-ins, and prove enforcement."""
    from cluster import versions
    from cluster.cli import setup as cluster

    return cluster.up(name=name, cni=cni, agents=_int(agents, "--agents"),
                      k3s_version=k3s_version or versions.K3S_VERSION,
                      profile=profile, api_port=_int(api_port, "--api-port"), dry_run=dry_run,
                      cleanup_on_failure=cleanup_on_failure, traffic=traffic)


@dashi_task(help={"name": _NAME_HELP, "force": "delete even a k3d cluster dashi-cluster did not create"})
@_friendly
def cluster_down(c, name="dashi", force=False):
    """Delete the k3d cluster (nodes, volumes, kubeconfig entry)."""
    from cluster.cli import setup as cluster

    return cluster.down(name, force=force)


@dashi_task(
    help={
        "name": _NAME_HELP,
        "profile": "whose stand-ins and rollout state to report: dashi (default), dashi-cnp or environments",
        "context": "report on this kubeconfig context instead of the k3d cluster (e.g. one made ready with prepare)",
        "json": _JSON_HELP,
    },
)
@_friendly
def status(c, name="dashi", profile="dashi", context=None, json=False):
    """Cluster, CNI health, stand-ins, and which policy step the rollout has applied."""
    from cluster.cli import setup as cluster

    return cluster.status(name, profile=profile, context=context, as_json=json)


@dashi_task(
    help={
        "only": "install only this tool (k3d, helm or kubectl; repeatable); default all three",
        "base_url": "download mirror laid out as <url>/<tool>/<upstream path> (also $DASHI_TOOLS_BASE_URL)",
    },
    iterable=["only"],
)
@_friendly
def tools(c, only=None, base_url=None):
    """Install pinned k3d, helm and kubectl into ./.dashi/bin, checksums verified."""
    from cluster.cli import setup as cluster

    return cluster.install_tools(only=only or None, base_url=base_url)


@dashi_task(
    help={
        "context": "kubeconfig context of the cluster to prepare (required: nothing happens to a cluster you do not name)",
        "profile": "stand-ins to deploy: dashi (default), dashi-cnp or environments",
        "adopt": "deploy into profile namespaces that exist but were not created by dashi-cluster",
        "dry_run": "print the manifests and steps without touching the cluster",
        "yes": "confirm changing a cluster that is not a local k3d one without asking",
        "traffic": _TRAFFIC_HELP,
    },
)
@_friendly
def prepare(c, context=None, profile="dashi", adopt=False, dry_run=False, yes=False, traffic=False):
    """Existing cluster: deploy the stand-ins and run the enforcement canary (no k3d, no CNI install)."""
    from cluster.cli import setup as cluster

    return cluster.prepare(context, profile=profile, adopt=adopt, dry_run=dry_run, yes=yes, traffic=traffic)


# --- policy rollout --------------------------------------------------------

_HUBBLE_HELP = ("Hubble's Observer API as HOST:PORT (a relay, or an agent's --hubble-listen-address); default: a "
                "port-forward to the cluster's hubble-relay")

_CONTEXT_HELP = ("kubeconfig context (KUBECONFIG is read as kubectl does); required for a cluster "
                 "that is not a local k3d one (a k3d-* context whose API server is on this machine)")


@dashi_task(
    help={
        "profile": _PROFILE_HELP,
        "until": "stop after this step (default: apply every step)",
        "context": _CONTEXT_HELP,
        "dry_run": "no cluster: print the steps, the objects each applies and the predicted matrix after each; "
                   "exit 1 when a step's predicted matrix differs from its intended one",
        "yes": "confirm changing a cluster that is not a local k3d one without asking",
        "json": _JSON_HELP + "; progress goes to stderr",
        "observe": "before each step, record Hubble's flows for this long (30s) and refuse a step that would cut "
                   "observed traffic outside the intent; keep the CNI's drop verdicts with each step's evidence",
        "hubble": "with --observe: " + _HUBBLE_HELP,
        "accept_blocking": "with --observe: an edge \"SRC DST PORT[/PROTO]\" a step may cut (repeatable)",
        "html": _HTML_HELP + " (every verification of this run, a failed one too; with --dry-run the predicted steps)",
    },
    iterable=["accept_blocking"],
)
@_friendly
def network_policies_up(c, profile="dashi", until=None, context=None, dry_run=False, yes=False, json=False,
                        observe=None, hubble=None, accept_blocking=None, html=None):
    """Apply the policy steps one at a time: snapshot, apply, verify live, roll back on a mismatch."""
    from cluster.cli import rollout

    return rollout.up(profile, until=until, context=context, dry_run=dry_run, yes=yes, as_json=json,
                      observe=observe, hubble=hubble, accept_blocking=accept_blocking or [], html_path=html)


@dashi_task(
    help={
        "to": "a step name (the state right after it) or 'baseline' (no policies of ours); default: one step back",
        "profile": _PROFILE_HELP,
        "context": _CONTEXT_HELP,
        "yes": "confirm changing a cluster that is not a local k3d one without asking",
    },
)
@_friendly
def rollback(c, to=None, profile="dashi", context=None, yes=False):
    """Restore an earlier snapshot of our NetworkPolicies exactly, then verify the matrix live."""
    from cluster.cli import rollout

    return rollout.rollback(profile, to=to, context=context, yes=yes)


@dashi_task(
    help={
        "profile": _PROFILE_HELP,
        "context": "kubeconfig context (default: the current one); smoke only reads, so any cluster is fine",
        "json": "--json alone: the evidence as JSON on stdout (progress to stderr); --json FILE: also write it to FILE",
        "markdown": "also write the evidence as a Markdown report to this file",
        "html": _HTML_HELP + " (predicted and observed)",
    },
    optional=["json"],
)
@_friendly
def smoke(c, profile="dashi", context=None, json=None, markdown=None, html=None):
    """Probe the whole matrix now; exit 0 only when every edge is as expected."""
    from cluster.cli import rollout

    to_stdout = json is True
    return rollout.smoke(profile, context=context, json_path=None if to_stdout else json,
                         markdown_path=markdown, as_json=to_stdout, html_path=html)


@dashi_task(
    help={
        "profile": "profile name; default dashi",
        "context": "kubeconfig context (default: the current one)",
        "json": _JSON_HELP,
    },
)
@_friendly
def history(c, profile="dashi", context=None, json=False):
    """The policy steps applied and rolled back on a cluster: when, by whom, snapshots, verification."""
    from cluster.cli import rollout

    return rollout.history(profile, context=context, as_json=json)


# --- GitOps: from verified steps to the Flux repository ---------------------


@dashi_task(
    help={
        "profile": "profile name (manifests/<name>) or directory; default dashi",
        "out": "repository root to write flux/ into; default ./.dashi/export/<profile>",
        "until": "stop every overlay after STEP, or one overlay with OVERLAY=STEP (repeatable); default: all steps",
        "context": "export only the steps the rollout recorded as verified on this kubeconfig context",
        "source": "name of the Flux GitRepository the Kustomizations read (default flux-system, as flux bootstrap makes it)",
        "interval": "Flux reconcile interval of the Kustomizations (default 10m)",
        "force": "overwrite files that were not written by export",
    },
    iterable=["until"],
)
@_friendly
def export(c, profile="dashi", out=None, until=None, context=None, source="flux-system", interval="10m",
           force=False):
    """Write the verified policy steps as the chapter's Flux layout (base, overlays, Kustomizations)."""
    from cluster.cli import gitops

    return gitops.export(profile, out=out, until=until or [], context=context, source=source,
                         interval=interval, force=force)


policies_diff = dashi_task(
    help={
        "old": "the policies before: a directory (profile, Flux tree, kustomization or manifests), or with --git REV[:PATH]",
        "new": "the policies after, in the same form",
        "profile": "workloads and intended matrix for trees that hold only policies; default dashi",
        "git": "OLD and NEW are revisions REV or REV:PATH of the repository --repo",
        "repo": "the git repository for --git; default the current directory",
        "format": "what to print: table (default), json or markdown",
        "json": "also write the diff as JSON to this file",
        "markdown": "also write the diff as Markdown (a pull-request comment) to this file",
        "html": "also write the diff as one self-contained HTML page to this file: the matrix as a grid, opened "
                "and closed edges marked, the policies added, removed and changed",
        "html_link": "where the Markdown links the HTML page (e.g. the CI run's artefacts); default: the --html "
                     "file's path; empty: no link",
    },
    positional=["old", "new"],
)(_friendly(offline.policies_diff))


# --- observed traffic: what really flows, replayed against the steps -------

_FLOWS_HELP = ("a flow recording (inv observe) or a flow file: `hubble observe -o json` output, Calico flow logs; "
               "default: the profile's latest recording")


@dashi_task(
    help={
        "profile": _PROFILE_HELP,
        "duration": "record from Hubble for this long (30s, 2m)",
        "flows": "record the flows of a file instead: `hubble observe -o json` output or Calico flow logs",
        "hubble": _HUBBLE_HELP,
        "context": "kubeconfig context of the cluster whose hubble-relay to ask (default: the current one)",
        "max_flows": "keep at most this many flows (default 1,000,000); the cap is reported when reached",
        "max_mib": "keep at most this many MiB of flows (default 64)",
    },
)
@_friendly
def observe(c, profile="dashi", duration=None, flows=None, hubble=None, context=None, max_flows=None, max_mib=None):
    """Record the traffic that really flows (Hubble, or a flow file) into the state directory."""
    from cluster.cli import flows as cli_flows

    return cli_flows.observe(profile, duration=duration, flows=flows, hubble=hubble, context=context,
                             max_flows=None if max_flows is None else _int(max_flows, "--max-flows"),
                             max_mib=None if max_mib is None else _int(max_mib, "--max-mib"))


@dashi_task(
    help={
        "profile": _PROFILE_HELP,
        "flows": _FLOWS_HELP,
        "accept_blocking": "an edge \"SRC DST PORT[/PROTO]\" whose observed traffic a step may cut (repeatable)",
        "cni": _CNI_HELP,
        "json": _JSON_HELP,
    },
    iterable=["accept_blocking"],
)
@_friendly
def flows_check(c, profile="dashi", flows=None, accept_blocking=None, cni=None, json=False):
    """Replay observed flows against every step: what each would cut. Exit 3 when one cuts traffic outside the intent."""
    from cluster.cli import flows as cli_flows

    return cli_flows.flows_check(profile, flows=flows, accept=accept_blocking or [], cni=cni, as_json=json)


@dashi_task(help={"profile": _PROFILE_HELP, "flows": _FLOWS_HELP, "out": "write the draft to this file (default: stdout)"})
@_friendly
def matrix_from_flows(c, profile="dashi", flows=None, out=None):
    """Draft matrix.yaml entries for the observed edges the matrix does not list, for a person to review."""
    from cluster.cli import flows as cli_flows

    return cli_flows.matrix_from_flows(profile, flows=flows, out_path=out)
