"""Bad input through the CLI, as a user meets it: every case runs `inv ...`
from the repository root (or the `dashi` entry point) in its own process and
must end in exactly one line that names the file, the object and the field,
a non-zero exit, no traceback, and nothing changed on disk.

A fresh interpreter costs a fifth of a second of imports, times a hundred
cases: so each case runs in a process forked from this one once the modules
are imported (tests/support/cli_process.py), with its own stdout, stderr, environment,
working directory and exit status, through the same Program.run(argv) as the
`inv` and `dashi` binaries. A sample of the cases (``EXEC``, and every case that needs
dropped capabilities) also runs as a real `inv`/`dashi` subprocess, and must
give the same result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from support import cli_process
from cluster.policy import schema
from support import ROOT

pytestmark = pytest.mark.integration  # every bad input given to `inv` and `dashi` as processes

INV = [sys.executable, "-m", "invoke"]
DASHI = [sys.executable, "-m", "cluster.cli.main"]
# As root, permission bits do not stop reads: drop the capabilities that
# bypass them for the "unreadable" cases.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
          "--inh-caps=-dac_override,-dac_read_search"]


@dataclass
class Case:
    id: str
    argv: list[str]  # "{d}" is the case's directory
    expect: str  # a substring of the one error line
    files: dict[str, str | bytes] = field(default_factory=dict)  # written below {d}
    profile: dict[str, str | bytes | Callable[[str], str]] | None = None  # edits of a copy at {d}/p
    code: int = 1
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    json: bool = False  # the error is a JSON object on stdout
    unreadable: bool = False  # needs permission bits to bite: a real subprocess with dropped capabilities
    cli: list[str] = field(default_factory=lambda: list(INV))


def deploy(name="web", *, labels="{app: web}", template_labels=None, ports="[{name: http, containerPort: 8080}]",
           extra_spec="", extra_container="", replicas="2", meta_extra="") -> str:
    tl = template_labels or labels
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, labels: {labels}{meta_extra}}}\n"
            f"spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {labels}}}\n{extra_spec}"
            f"  template:\n    metadata: {{labels: {tl}}}\n    spec:\n      containers:\n"
            f"        - name: c\n          image: x\n          ports: {ports}\n{extra_container}")


def netpol(spec: str, name="p") -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def pod(extra="", name="db", ports="[{containerPort: 5432}]") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: db}}}}\n"
            f"spec:\n  containers: [{{name: c, image: x, ports: {ports}}}]\n{extra}")


def reach(body: str, expect: str, id: str, file="a.yaml", **kw) -> Case:
    """A reachability case: one manifest file next to a valid Deployment."""
    return Case(id, ["reachability", "-r", "{d}"], expect, files={"ok.yaml": deploy(), file: body}, **kw)


def policy_step(text: str) -> Callable[[str], str]:
    return lambda _old: text


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\xff\xfe"
LATIN1 = "apiVersion: v1\nkind: Pod\nmetadata: {name: caf\xe9}\n".encode("latin-1")
PROFILE = ROOT / "manifests" / "environments"
GARBAGE_KUBECONFIG = {"kubeconfig": PNG}


def _key(key: str, value: str) -> Callable[[str], str]:
    """profile.yaml with its top-level ``key`` (and what is indented under it) set to ``value``."""
    def edit(text: str) -> str:
        out, skipping = [], False
        for line in text.splitlines(True):
            if line.startswith(f"{key}:"):
                skipping = True
                continue
            if skipping and line.startswith((" ", "-")):
                continue
            skipping = False
            out.append(line)
        return "".join(out) + f"\n{key}: {value}\n"
    return edit


def _sub(path: str, old: str, new: str) -> tuple[str, Callable[[str], str]]:
    def edit(text: str) -> str:
        assert old in text, (path, old)
        return text.replace(old, new, 1)
    return path, edit


CASES = [
    # -- non-UTF-8 and binary files ------------------------------------------------------------
    reach(PNG, "a.yaml: not UTF-8 text (byte 0", "binary-manifest"),
    reach(LATIN1, "a.yml: not UTF-8 text", "latin1-manifest", file="a.yml"),
    Case("binary-profile-yaml", ["policies-check", "-p", "{d}/p"], "p/profile.yaml: not UTF-8 text",
         profile={"profile.yaml": PNG}),
    Case("binary-matrix", ["policies-check", "-p", "{d}/p"], "p/matrix.yaml: not UTF-8 text",
         profile={"matrix.yaml": PNG}),
    Case("binary-workloads", ["explain", "-p", "{d}/p", "develop/debug", "develop/backend", "8080"],
         "p/workloads/apps.yaml: not UTF-8 text", profile={"workloads/apps.yaml": PNG}),
    Case("binary-step-dry-run", ["network-policies-up", "-d", "-p", "{d}/p"],
         "p/policies/02-allow-dns.yaml: not UTF-8 text", profile={"policies/02-allow-dns.yaml": PNG}),
    Case("binary-json", ["reachability", "-r", "{d}/x.json"], "x.json: not UTF-8 text", files={"x.json": PNG}),
    # -- syntax ------------------------------------------------------------------------------------
    reach("kind: Pod\nmetadata: {name: a\n", "a.yaml: invalid YAML: line 3:", "yaml-syntax"),
    reach('{"kind": "Pod", "metadata": {"name": "a"}', "a.json: invalid JSON: line 1 column", "json-syntax",
          file="a.json"),
    reach(BILLION_LAUGHS, "a.yaml: invalid YAML: aliases expand to more than 10000 nodes", "alias-bomb"),
    reach("a: &a [1, *a]\n", "a.yaml: invalid YAML: line 1: alias *a refers to a node that contains it",
          "recursive-alias"),
    Case("alias-bomb-profile", ["policies-check", "-p", "{d}/p"], "p/profile.yaml: invalid YAML: aliases expand",
         profile={"profile.yaml": BILLION_LAUGHS}),
    reach("!!python/object:os.system {}\n", "a.yaml: invalid YAML: line 1: could not determine a constructor",
          "python-tag"),
    # -- wrong types in manifests --------------------------------------------------------------------
    reach("- just\n- a list\n", "a.yaml: document 1: expected a mapping (a Kubernetes object), got list",
          "document-is-a-list"),
    reach("apiVersion: v1\nkind: 5\nmetadata: {name: x}\n", "a.yaml: document 1: kind must be a non-empty string",
          "kind-a-number"),
    reach("apiVersion: v1\nkind: Pod\nmetadata: {name: 3}\n", "a.yaml: Pod 3: document 1: metadata.name is required",
          "name-a-number"),
    reach("apiVersion: v1\nkind: List\nitems: {a: 1}\n", "a.yaml: document 1: List.items: expected a list, got map",
          "list-items-a-map"),
    reach(deploy("w2", labels="[app, w2]"), "a.yaml: Deployment default/w2: metadata.labels: expected a map, got list",
          "labels-a-list"),
    reach(pod().replace("{app: db}", "{app: db, version: 1.0}"),
          "a.yaml: Pod default/db: metadata.labels['version']: value 1.0 must be a string (quote it in YAML)",
          "label-a-float"),
    reach(deploy("w2", labels="{app: w2, version: 1.0}"),
          "a.yaml: Deployment default/w2: spec.selector.matchLabels.version: expected a string, got number",
          "selector-label-a-float"),
    reach(pod().replace("{app: db}", "{app: db}, annotations: {note: [a]}"),
          "a.yaml: Pod default/db: metadata.annotations['note']: value ['a'] must be a string", "annotation-a-list"),
    reach(pod("", ports='[{containerPort: "5432"}]'),
          "a.yaml: Pod default/db: spec.containers[0].ports[0].containerPort: expected an integer, got string",
          "container-port-a-string"),
    reach(deploy("w2", replicas='"3"', labels="{app: w2}"),
          "a.yaml: Deployment default/w2: spec.replicas: expected an integer, got string", "replicas-a-string"),
    reach("apiVersion: v1\nkind: Pod\nmetadata: {name: db}\nspec:\n  containers: {name: c}\n",
          "a.yaml: Pod default/db: spec.containers: expected a list, got map", "containers-a-map"),
    reach("apiVersion: v1\nkind: Pod\nmetadata: {name: db}\nspec:\n  conatiners: []\n  containers: []\n",
          "a.yaml: Pod default/db: spec: unknown field 'conatiners'", "misspelt-field"),
    reach(netpol("  podSelector: {}\n  ingress: {from: []}\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress: expected a list, got map", "policy-ingress-a-map"),
    reach(netpol("  podSelector: {matchLabels: [a]}\n"),
          "a.yaml: NetworkPolicy default/p: spec.podSelector.matchLabels: expected a map, got list",
          "selector-labels-a-list"),
    reach(netpol("  podSelector: {}\n  ingress: [{ports: [{port: [80]}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress[0].ports[0].port: expected a string or an integer, got list",
          "policy-port-a-list"),
    reach('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"}, "spec": {"containers": "c"}}',
          "a.json: Pod default/j: spec.containers: expected a list, got string", "json-wrong-type", file="a.json"),
    reach("apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: old}\n",
          "a.yaml: Deployment default/old: apiVersion 'apps/v1beta1' does not serve Deployment in Kubernetes 1.33",
          "removed-api-version"),
    # -- wrong types in a profile and its matrix -----------------------------------------------------
    Case("profile-name-a-number", ["policies-check", "-p", "{d}/p"], "p/profile.yaml: name: expected a string, got number",
         profile=dict([_sub("profile.yaml", "name: environments", "name: 5")])),
    Case("profile-workloads-a-map", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: workloads: expected a list, got map",
         profile={"profile.yaml": _key("workloads", "{a: b}")}),
    Case("profile-steps-numbers", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: steps[0]: expected a map, got number",
         profile={"profile.yaml": _key("steps", "[1, 2]")}),
    Case("profile-step-file-a-number", ["network-policies-up", "-d", "-p", "{d}/p"],
         "p/profile.yaml: steps[0].file: expected a string, got number",
         profile={"profile.yaml": _key("steps", "[{name: a, file: 7}]")}),
    Case("profile-unknown-key", ["policies-check", "-p", "{d}/p"], "p/profile.yaml: (the object): unknown field 'stepz'",
         profile={"profile.yaml": lambda t: t + "\nstepz: []\n"}),
    Case("profile-cluster-port-a-string", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: cluster_endpoints[0].ports[0].port: expected an integer, got string",
         profile=dict([_sub("profile.yaml", "port: 53,", 'port: "53",')])),
    Case("profile-step-name-a-path", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: steps[0].name: '../x' does not match",
         profile=dict([_sub("profile.yaml", "name: default-deny", "name: ../x")])),
    Case("matrix-allowed-a-map", ["policies-check", "-p", "{d}/p"], "p/matrix.yaml: allowed: expected a list, got map",
         profile={"matrix.yaml": "allowed: {from: a}\n"}),
    Case("matrix-from-a-number", ["explain", "-p", "{d}/p", "develop/debug", "develop/backend", "8080"],
         "p/matrix.yaml: allowed[0].from: expected a string or a list, got number",
         profile={"matrix.yaml": "allowed:\n  - {from: 5, to: a/b, port: 80, step: allow-dns}\n"}),
    Case("matrix-port-a-list", ["policies-check", "-p", "{d}/p"],
         "p/matrix.yaml: allowed[0].port: expected an integer or a string, got list",
         profile={"matrix.yaml": "allowed:\n  - {from: a/b, to: a/b, port: [80], step: allow-dns}\n"}),
    Case("matrix-protocol-lowercase", ["policies-check", "-p", "{d}/p"],
         "p/matrix.yaml: allowed[0].protocol: must be TCP or UDP or SCTP, got 'tcp'",
         profile={"matrix.yaml": "allowed:\n  - {from: a/b, to: a/b, port: 80, protocol: tcp, step: allow-dns}\n"}),
    Case("matrix-host-a-map", ["policies-check", "-p", "{d}/p"], "p/matrix.yaml: host[0].to: expected a string or a list",
         profile={"matrix.yaml": "host:\n  - {to: {a: b}}\n"}),
    # -- values the API server rejects ---------------------------------------------------------------
    reach(deploy("w2", labels="{'bad key!': x}"),
          "a.yaml: Deployment default/w2: metadata.labels['bad key!']: key 'bad key!': name part must be",
          "label-key-syntax"),
    reach(deploy("w2", labels="{app: " + "v" * 64 + "}"),
          "a.yaml: Deployment default/w2: metadata.labels['app']: value 'vvvv", "label-value-too-long"),
    reach(deploy("w2", labels="{Example.COM/app: w2}"),
          "a.yaml: Deployment default/w2: metadata.labels['Example.COM/app']: key 'Example.COM/app': prefix",
          "label-key-prefix"),
    reach("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: -ops-}}\n",
          "a.yaml: Namespace shop: metadata.labels['team']: value '-ops-'", "namespace-label"),
    reach(netpol("  podSelector: {matchLabels: {app: 'a b'}}\n"),
          "a.yaml: NetworkPolicy default/p: spec.podSelector.matchLabels['app']: value 'a b'", "selector-value"),
    reach(netpol("  podSelector: {matchExpressions: [{key: app, operator: In, values: ['no/slash']}]}\n"),
          "a.yaml: NetworkPolicy default/p: spec.podSelector.matchExpressions[0]: value 'no/slash'",
          "selector-expression-value"),
    reach(netpol("  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.egress[0].to[0].ipBlock: cidr '10.0.0.0/33' is not a CIDR",
          "cidr-prefix"),
    reach(netpol("  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [nope]}}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress[0].from[0].ipBlock: except 'nope' is not a CIDR",
          "cidr-except"),
    reach(pod("status: {podIP: 999.1.1.1}\n"), "a.yaml: Pod default/db: status.podIP '999.1.1.1' is not an IP address",
          "pod-ip"),
    reach(pod(ports="[{containerPort: 0}]"),
          "a.yaml: Pod default/db: spec.containers[0].ports[0]: containerPort 0 must be a number from 1 to 65535",
          "container-port-0"),
    reach(deploy("w2", labels="{app: w2}", ports="[{containerPort: 70000}]"),
          "a.yaml: Deployment default/w2: spec.template.spec.containers[0].ports[0]: containerPort 70000",
          "container-port-70000"),
    reach(pod(ports="[{containerPort: 80, hostPort: 65536}]"),
          "a.yaml: Pod default/db: spec.containers[0].ports[0]: hostPort 65536", "host-port"),
    reach(pod(ports="[{containerPort: 80, name: a-very-long-port-name}]"),
          "a.yaml: Pod default/db: spec.containers[0].ports[0]: port name 'a-very-long-port-name'", "port-name"),
    reach(netpol("  podSelector: {}\n  ingress: [{ports: [{port: 65536}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress[0].ports[0]: port 65536 out of range 1-65535",
          "policy-port-range"),
    reach(netpol("  podSelector: {}\n  ingress: [{ports: [{port: 80, endPort: 70000}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress[0].ports[0]: endPort 70000 must be a number", "end-port"),
    reach(netpol("  podSelector: {}\n  ingress: [{ports: [{port: http, endPort: 90}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress[0].ports[0]: endPort needs a numeric port",
          "end-port-named"),
    reach(deploy("Web_App", labels="{app: w2}"),
          "a.yaml: Deployment default/Web_App: metadata.name 'Web_App' must be a DNS subdomain", "name-syntax"),
    reach(deploy("w2", labels="{app: w2}", template_labels="{app: other}"),
          "a.yaml: Deployment default/w2: spec.selector does not match spec.template.metadata.labels",
          "selector-vs-template"),
    reach(deploy("w2", labels="{app: w2}", replicas="-1"),
          "a.yaml: Deployment default/w2: spec.replicas must not be negative", "negative-replicas"),
    Case("external-ip", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: external_endpoints[0].ip: ip '300.1.2.3' is not an IP address",
         profile={"profile.yaml": _key("external_endpoints", "[{name: api, ip: 300.1.2.3}]")}),
    Case("external-port-0", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: external_endpoints[0].ports[0].port: 0 is out of range 1-65535",
         profile={"profile.yaml": _key("external_endpoints", "[{name: api, ports: [{port: 0}]}]")}),
    Case("cluster-endpoint-port", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: cluster_endpoints[0].ports[0].port: 70000 is out of range 1-65535",
         profile=dict([_sub("profile.yaml", "port: 53,", "port: 70000,")])),
    Case("cluster-endpoint-label", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: cluster_endpoints[0].labels['k8s-app']: value 'kube dns'",
         profile=dict([_sub("profile.yaml", "{k8s-app: kube-dns}", "{k8s-app: kube dns}")])),
    Case("matrix-port-0", ["policies-check", "-p", "{d}/p"], "p/matrix.yaml: allowed[0].port: 0 is out of range 1-65535",
         profile={"matrix.yaml": "allowed:\n  - {from: a/b, to: a/b, port: 0, step: allow-dns}\n"}),
    Case("step-policy-port", ["network-policies-up", "-d", "-p", "{d}/p"],
         "p/policies/02-allow-dns.yaml: NetworkPolicy develop/allow-dns: spec.egress[0].ports[0]: port 0 out of range",
         profile=dict([_sub("policies/02-allow-dns.yaml", "port: 53", "port: 0")])),
    Case("explain-port-range", ["explain", "develop/debug", "develop/backend", "70000", "-p", "{d}/p"],
         "error: PORT '70000': port 70000 out of range 1-65535", profile={}),
    # -- unreadable files and directories, paths that are not what they should be -----------------------
    Case("unreadable-file", ["reachability", "-r", "{d}"], "a.yaml: cannot read (Permission denied)",
         files={"a.yaml": deploy()}, setup=lambda d: (d / "a.yaml").chmod(0), unreadable=True),
    Case("unreadable-dir", ["reachability", "-r", "{d}"], "sub: cannot read directory (Permission denied)",
         files={"ok.yaml": deploy(), "sub/b.yaml": deploy("b")}, setup=lambda d: (d / "sub").chmod(0),
         unreadable=True),
    Case("unreadable-matrix", ["policies-check", "-p", "{d}/p"], "p/matrix.yaml: cannot read (Permission denied)",
         profile={}, setup=lambda d: (d / "p" / "matrix.yaml").chmod(0), unreadable=True),
    Case("dangling-symlink", ["reachability", "-r", "{d}"], "gone.yaml: cannot read (No such file or directory)",
         files={"ok.yaml": deploy()}, setup=lambda d: (d / "gone.yaml").symlink_to(d / "nowhere.yaml")),
    Case("missing-resources", ["reachability", "-r", "{d}/nowhere"], "nowhere: cannot read (No such file or directory)"),
    Case("profile-yaml-a-directory", ["policies-check", "-p", "{d}/p"], "p/matrix.yaml: cannot read (Is a directory)",
         profile={}, setup=lambda d: ((d / "p" / "matrix.yaml").unlink(), (d / "p" / "matrix.yaml").mkdir())),
    Case("empty-directory", ["reachability", "-r", "{d}"], ": no manifests here (no .yaml, .yml or .json files)",
         files={"README.md": "nothing"}),
    # -- symlink loops ----------------------------------------------------------------------------------------
    Case("symlink-loop-file", ["reachability", "-r", "{d}"], "loop.yaml: cannot read (Too many levels of symbolic links)",
         files={"ok.yaml": deploy()}, setup=lambda d: (d / "loop.yaml").symlink_to(d / "loop.yaml")),
    Case("symlink-loop-dir", ["reachability", "-r", "{d}"], "up: symlink loop: this directory leads back",
         files={"ok.yaml": deploy()}, setup=lambda d: (d / "sub").mkdir() or (d / "sub" / "up").symlink_to(d)),
    # -- the state directory ----------------------------------------------------------------------------------
    Case("state-dir-a-file", ["history", "-c", "k3d-dashi"], "state directory {d}/state ($DASHI_STATE_DIR) is not a directory",
         files={"state": "not a directory"}, env={"DASHI_STATE_DIR": "{d}/state"}),
    Case("state-dir-below-a-file", ["history", "-c", "k3d-dashi", "--json"],
         "state directory {d}/state/sub ($DASHI_STATE_DIR) is not a directory", json=True,
         files={"state": "not a directory"}, env={"DASHI_STATE_DIR": "{d}/state/sub"}),
    # -- flag values ---------------------------------------------------------------------------------------------
    Case("agents-abc", ["cluster-up", "--agents", "abc", "--dry-run"], "--agents: 'abc' is not an integer"),
    Case("api-port-abc", ["cluster-up", "--api-port", "65x", "--dry-run"], "--api-port: '65x' is not an integer"),
    Case("skip-without-value", ["policies-check", "--skip"], "Flag '--skip' needed value and was not given one!"),
    Case("skip-then-flag", ["policies-check", "--skip", "--quiet"], "Flag '--skip' needed value and was not given one!"),
    Case("profile-without-value", ["explain", "a/b", "c/d", "80", "--profile"],
         "Flag '--profile' needed value and was not given one!"),
    Case("resources-without-value", ["reachability", "--resources"], "Flag '--resources' needed value"),
    Case("explain-missing-port", ["explain", "a/b", "c/d"], "'explain' did not receive required positional arguments"),
    Case("unknown-flag", ["reachability", "-r", "{d}", "--bogus"], "No idea what '--bogus' is!"),
    Case("format-xml", ["reachability", "-r", "{d}", "-f", "xml"], "--format: unknown value 'xml' (json, table)",
         files={"ok.yaml": deploy()}),
    Case("endpoints-nodes", ["reachability", "-r", "{d}", "-e", "nodes"], "--endpoints: unknown value 'nodes'",
         files={"ok.yaml": deploy()}),
    Case("namespace-syntax", ["reachability", "-r", "{d}", "-N", "Bad_NS"], "--namespace: namespace 'Bad_NS' must be",
         files={"ok.yaml": deploy()}),
    Case("skip-unknown-step", ["policies-check", "--skip", "nope"], "error: no step 'nope' in profile dashi"),
    Case("explain-unknown-named-port", ["explain", "kube-system/kube-dns", "dashi-platform/rustfs", "dns"],
         "error: dashi-platform/rustfs has no port named 'dns' on TCP (its ports:"),
    Case("dashi-agents-abc", ["cluster-up", "--agents", "abc"], "--agents: 'abc' is not an integer", cli=list(DASHI)),
    # -- malformed URLs ------------------------------------------------------------------------------------------
    Case("base-url-no-scheme", ["tools", "--base-url", "mirror.example"], "--base-url: 'mirror.example' is not a mirror URL"),
    Case("base-url-bad-host", ["tools", "--base-url", "http://[::1"], "--base-url: 'http://[::1' is not a mirror URL"),
    Case("base-url-env", ["tools", "--only", "k3d"], "$DASHI_TOOLS_BASE_URL: 'ht!tp://x' is not a mirror URL",
         env={"DASHI_TOOLS_BASE_URL": "ht!tp://x"}),
    # -- garbage KUBECONFIG ------------------------------------------------------------------------------------
    Case("kubeconfig-binary", ["history"], "cannot load the current context from kubeconfig {d}/kubeconfig: not UTF-8 text",
         files=GARBAGE_KUBECONFIG, env={"KUBECONFIG": "{d}/kubeconfig"}),
    Case("kubeconfig-yaml", ["smoke", "-p", "environments"], "from kubeconfig {d}/kubeconfig: invalid YAML",
         files={"kubeconfig": "clusters: [\n"}, env={"KUBECONFIG": "{d}/kubeconfig"}),
    Case("kubeconfig-a-list", ["network-policies-up", "-p", "environments", "-c", "k3d-x"],
         "cannot load context 'k3d-x' from kubeconfig {d}/kubeconfig: not a kubeconfig",
         files={"kubeconfig": "[1, 2]\n"}, env={"KUBECONFIG": "{d}/kubeconfig"}),
    Case("kubeconfig-a-directory", ["rollback", "-c", "k3d-x"], "from kubeconfig {d}: ",
         env={"KUBECONFIG": "{d}"}),
    Case("kubeconfig-json-error", ["status", "-c", "k3d-x", "--json"], "from kubeconfig {d}/kubeconfig: not UTF-8 text",
         files=GARBAGE_KUBECONFIG, env={"KUBECONFIG": "{d}/kubeconfig"}, json=True),
    Case("explain-json-error", ["explain", "x/y", "dashi-platform/rustfs", "9000", "--json"],
         "no endpoint 'x/y' in profile dashi", json=True),
    # cluster-down and prepare: their flags and the cluster they name.
    Case("cluster-down-name-invalid", ["cluster-down", "--name", "Bad_Name"],
         "error: invalid cluster name 'Bad_Name': use lowercase letters, digits and '-', at most 32 characters"),
    Case("cluster-down-name-empty", ["cluster-down", "--name", ""], "error: invalid cluster name ''"),
    Case("cluster-down-name-too-long", ["cluster-down", "--name", "a" * 40],
         f"error: invalid cluster name '{'a' * 40}': use lowercase letters, digits and '-', at most 32 characters"),
    Case("cluster-down-name-without-value", ["cluster-down", "--name"], "Flag '--name' needed value and was not given one!"),
    Case("prepare-without-context", ["prepare"],
         "error: prepare needs --context: name the kubeconfig context of the cluster to prepare"),
    Case("prepare-unknown-profile", ["prepare", "-c", "k3d-x", "-p", "nosuch"],
         "error: unknown profile 'nosuch': choose one of dashi, dashi-cnp, environments"),
    Case("prepare-context-not-in-kubeconfig", ["prepare", "-c", "k3d-x", "-p", "environments"],
         "error: cannot load context 'k3d-x' from kubeconfig {d}/kubeconfig: it has no such context "
         "(its contexts: none)",
         files={"kubeconfig": "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"},
         env={"KUBECONFIG": "{d}/kubeconfig"}),
    Case("prepare-garbage-kubeconfig", ["prepare", "-c", "k3d-x"], "from kubeconfig {d}/kubeconfig: invalid YAML",
         files={"kubeconfig": "clusters: [\n"}, env={"KUBECONFIG": "{d}/kubeconfig"}),
    # a proxy the client cannot speak: SOCKS needs PySocks, which is not a dependency
    Case("kubeconfig-socks-proxy", ["history", "-c", "k3d-x"],
         "error: cannot use context 'k3d-x' of kubeconfig {d}/kubeconfig: its proxy-url socks5://127.0.0.1:1080 "
         "is a SOCKS proxy, which needs PySocks (pip install pysocks)",
         files={"kubeconfig": "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "
                              "'https://0.0.0.0:6550', proxy-url: 'socks5://127.0.0.1:1080'}\ncontexts:\n- name: k3d-x"
                              "\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n"},
         env={"KUBECONFIG": "{d}/kubeconfig"}),
    # -- probe settings: numbers, finite, within bounds ---------------------------------------------------------------
    Case("probe-timeout-nan", ["smoke", "-p", "environments", "-c", "k3d-x"],
         "error: DASHI_PROBE_TIMEOUT='nan': must be from 0.1 to 60 seconds", env={"DASHI_PROBE_TIMEOUT": "nan"}),
    Case("poll-timeout-inf", ["network-policies-up", "-p", "environments", "-c", "k3d-x"],
         "error: DASHI_POLL_TIMEOUT='inf': must be from 0 to 600 seconds", env={"DASHI_POLL_TIMEOUT": "inf"}),
    Case("probe-workers-zero", ["rollback", "-p", "environments", "-c", "k3d-x"],
         "error: DASHI_PROBE_WORKERS='0': must be from 1 to 256", env={"DASHI_PROBE_WORKERS": "0"}),
    # -- what the API server refuses that a schema lets through ----------------------------------------------
    reach(netpol("  podSelector: {}\n  ingress:\n  - ports: [{port: 80}]\n    ports: [{port: 443}]\n"),
          "a.yaml: NetworkPolicy p: spec.ingress[0]: duplicate key 'ports' (line 8); a field may appear once",
          "duplicate-key-in-a-rule"),
    reach('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"}, "metadata": {"name": "k"}}',
          "a.json: Pod k: duplicate key 'metadata'", "json-duplicate-key", file="a.json"),
    Case("duplicate-matrix-key", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: duplicate key 'matrix' (line", profile={"profile.yaml": lambda t: t + "matrix: m2.yaml\n"}),
    Case("variant-of-an-unknown-cni", ["policies-check", "-p", "{d}/p"],
         "p/profile.yaml: steps[1].variants: unknown key 'flannel' (known: calico, cilium, k3s)",
         profile=dict([_sub("profile.yaml", "file: policies/02-allow-dns.yaml",
                            "file: policies/02-allow-dns.yaml, variants: {flannel: policies/02-allow-dns.yaml}")])),
    Case("step-of-comments-only", ["network-policies-up", "-d", "-p", "{d}/p"],
         'p/policies/02-allow-dns.yaml: holds no NetworkPolicy or ClusterNetworkPolicy (empty, or comments only); kubectl would say '
         '"no objects passed to apply"', profile={"policies/02-allow-dns.yaml": "# to do\n---\n# later\n"}),
    reach(deploy("w2", labels="{app: w2}", replicas="3000000000"),
          "a.yaml: Deployment default/w2: spec.replicas: 3000000000 does not fit the API's int32", "replicas-int32"),
    reach(deploy("w2", labels="{app: w2}").replace("selector: {matchLabels: {app: w2}}", "selector: {}"),
          "a.yaml: Deployment default/w2: spec.selector: an empty selector is invalid", "deployment-selector-empty"),
    reach("apiVersion: v1\nkind: Pod\nmetadata: {name: db}\nspec: {containers: []}\n",
          "a.yaml: Pod default/db: spec.containers: at least one container is required", "pod-without-containers"),
    reach(netpol("  podSelector: {}\n  policyTypes: [Ingress, Egress, Ingress]\n"),
          "a.yaml: NetworkPolicy default/p: spec.policyTypes: 3 entries; it may not specify more than two",
          "policy-types-three"),
    reach(netpol("  podSelector: {}\n  ingress: [{ports: [{port: 80, protocol: ''}]}]\n"),
          "a.yaml: NetworkPolicy default/p: spec.ingress[0].ports[0]: invalid protocol ''", "policy-protocol-empty"),
    reach(pod(ports="[{containerPort: 80}]").replace("name: c,", "name: Bad_C,"),
          "a.yaml: Pod default/db: spec.containers[0]: name 'Bad_C' must be a DNS label", "container-name"),
    # -- --out that cannot take the export -------------------------------------------------------------------------
    Case("export-out-a-file", ["export", "--out", "{d}/out"], "error: --out {d}/out: it is a file, not a directory; "
         "nothing was written", files={"out": "x"}),
    Case("export-out-a-file-where-a-directory-goes", ["export", "--out", "{d}/out"],
         "error: --out {d}/out: {d}/out/flux is a file where the export needs a directory; nothing was written",
         files={"out/flux": "x"}),
    Case("export-out-proc", ["export", "--out", "/proc/dashi-export"],
         "error: --out /proc/dashi-export: cannot write /proc/dashi-export (No such file or directory); "
         "nothing was written"),
    Case("export-out-read-only", ["export", "--out", "{d}/ro/out"],
         "error: --out {d}/ro/out: cannot write {d}/ro/out (Permission denied); nothing was written",
         setup=lambda d: (d / "ro").mkdir(mode=0o555), unreadable=True),
    # -- flags in the wrong place -------------------------------------------------------------------------------------
    Case("dashi-short-flag-before-the-task", ["-p", "environments", "policies-check"],
         "error: -p environments: a task's flags go after the task name: dashi policies-check -p environments",
         cli=list(DASHI)),
]


def _tree(d: Path) -> str:
    """A digest of every name, mode and content below ``d``: "nothing changed"."""
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(d)} {st.st_mode:o}".encode())
        if p.is_file() and not p.is_symlink() and st.st_mode & 0o444:
            h.update(p.read_bytes())
    return h.hexdigest()


def _prepare(case: Case, d: Path) -> None:
    for rel, content in case.files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    if case.profile is not None:
        shutil.copytree(PROFILE, d / "p")
        for rel, edit in case.profile.items():
            p = d / "p" / rel
            if callable(edit):
                p.write_text(edit(p.read_text()))
            else:
                (p.write_bytes if isinstance(edit, bytes) else p.write_text)(edit)
    if case.setup:
        case.setup(d)


def _env(case: Case, d: Path, cache: Path) -> dict:
    fmt = lambda s: s.replace("{d}", str(d))  # noqa: E731
    env = {**os.environ, "DASHI_CACHE_DIR": str(cache), "DASHI_STATE_DIR": str(d / ".state"),
           "KUBECONFIG": str(d / "no-kubeconfig"), "NO_COLOR": "1", "DASHI_TOOLS_BASE_URL": ""}
    env.pop("DASHI_E2E_KUBECONFIG", None)
    env.update({k: fmt(v) for k, v in case.env.items()})
    return env


def _argv(case: Case, d: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in case.argv]


def _exec(case: Case, d: Path, cache: Path) -> tuple[int, str, str]:
    prefix = NO_DAC if case.unreadable and os.geteuid() == 0 else []
    proc = subprocess.run(prefix + case.cli + _argv(case, d), cwd=ROOT, env=_env(case, d, cache),
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def _fork(case: Case, d: Path, cache: Path, out: Path, err: Path) -> int:
    """Start the case in a forked child; returns its pid."""
    return cli_process.start(_argv(case, d), out, err, cli="dashi" if case.cli == DASHI else "inv",
                             env=_env(case, d, cache))


def _result(case: Case, d: Path, code: int, out: str, err: str, before: str) -> dict:
    if case.unreadable:
        for p in d.rglob("*"):  # let the tree digest and the cleanup read everything again
            if not p.is_symlink():
                p.chmod(0o755)
    return {"code": code, "stdout": out, "stderr": err, "expect": case.expect.replace("{d}", str(d)),
            "changed": not case.unreadable and _tree(d) != before}


# Also run as real `inv` / `dashi` subprocesses (as are the cases that need
# dropped capabilities): one or two of each class.
EXEC = {"binary-manifest", "alias-bomb", "label-a-float", "external-ip", "symlink-loop-dir", "state-dir-a-file",
        "agents-abc", "skip-without-value", "dashi-agents-abc", "base-url-no-scheme", "kubeconfig-binary",
        "explain-json-error", "profile-unknown-key"}


def _run_forked(base: Path, cache: Path) -> dict:
    # Import what the tasks import, once, so the forked children share it.
    import kubernetes.config  # noqa: F401

    import cluster.cli.policy  # noqa: F401
    import cluster.cli.rollout  # noqa: F401
    import cluster.cli.setup  # noqa: F401

    dirs, before, results, running = {}, {}, {}, {}
    for case in CASES:
        if not case.unreadable:
            d = dirs[case.id] = base / case.id
            d.mkdir()
            _prepare(case, d)
            before[case.id] = _tree(d)
    limit = max(2, (os.cpu_count() or 2) * 2)

    def reap() -> None:
        pid, status = os.waitpid(-1, 0)
        case = running.pop(pid)
        d = dirs[case.id]
        results[case.id] = _result(case, d, os.waitstatus_to_exitcode(status),
                                   (base / f"{case.id}.out").read_text(), (base / f"{case.id}.err").read_text(),
                                   before[case.id])

    for case in CASES:
        if case.unreadable:
            continue
        while len(running) >= limit:
            reap()
        running[_fork(case, dirs[case.id], cache, base / f"{case.id}.out", base / f"{case.id}.err")] = case
    while running:
        reap()
    return results


def _run_exec(base: Path, cache: Path) -> dict:
    def one(case: Case) -> tuple[str, dict]:
        d = base / case.id
        d.mkdir(parents=True)
        _prepare(case, d)
        start = _tree(d)
        code, out, err = _exec(case, d, cache)
        return case.id, _result(case, d, code, out, err, start)

    sample = [c for c in CASES if c.id in EXEC or c.unreadable]
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) * 2)) as pool:
        return dict(pool.map(one, sample))


def _warm(cache: Path) -> None:
    """Compile the schema validators once, so every process loads them."""
    prev = os.environ.get("DASHI_CACHE_DIR")
    os.environ["DASHI_CACHE_DIR"] = str(cache)
    try:
        for kind, api in (("Deployment", "apps/v1"), ("Pod", "v1"), ("NetworkPolicy", "networking.k8s.io/v1"),
                          ("Namespace", "v1"), ("Service", "v1"), ("StatefulSet", "apps/v1")):
            schema._validator(api, kind)
        schema._own("profile")
        schema._own("matrix")
    finally:
        if prev is None:
            os.environ.pop("DASHI_CACHE_DIR")
        else:
            os.environ["DASHI_CACHE_DIR"] = prev


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    _warm(cache)
    return (_run_forked(tmp_path_factory.mktemp("forked"), cache),
            _run_exec(tmp_path_factory.mktemp("exec"), cache))


def test_there_are_at_least_60_cases_with_unique_ids():
    ids = [c.id for c in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    assert EXEC <= set(ids)


def _check(case: Case, r: dict) -> None:
    out = r["stdout"] + r["stderr"]
    assert "Traceback" not in out, out
    assert r["code"] == case.code, out
    if case.json:
        assert r["stderr"] == "", r["stderr"]
        error = json.loads(r["stdout"])
        assert error["exit_code"] == case.code and r["expect"] in error["error"], error
    else:
        lines = r["stderr"].splitlines()
        assert len(lines) == 1, r["stderr"]
        assert r["expect"] in lines[0], lines[0]
        assert r["stdout"] == "", r["stdout"]
    assert not r["changed"], "the run changed files"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_and_a_non_zero_exit(case, results):
    forked, execd = results
    if case.unreadable:
        if os.geteuid() == 0 and not shutil.which("setpriv"):
            pytest.skip("as root without setpriv, permission bits do not stop reads")
        _check(case, execd[case.id])
        return
    _check(case, forked[case.id])
    if case.id in execd:  # the real binary says the same, save for the case's directory
        a, b = forked[case.id], execd[case.id]
        assert (b["code"], b["stderr"].count("\n"), b["stdout"] == "") == (a["code"], a["stderr"].count("\n"),
                                                                           a["stdout"] == "")
        _check(case, b)


def test_an_export_that_fails_half_way_leaves_nothing_written(tmp_path):
    """flux/infrastructure can be written (and is, first), flux/bootstrap
    cannot: the files staged in the first are taken back, and the
    directories made for them."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("as root without setpriv, permission bits do not stop writes")
    out = tmp_path / "out"
    (out / "flux" / "infrastructure").mkdir(parents=True)
    (out / "flux" / "bootstrap").mkdir(mode=0o555)
    before = _tree(out)
    prefix = NO_DAC if os.geteuid() == 0 else []
    proc = subprocess.run(prefix + INV + ["export", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DASHI_STATE_DIR": str(tmp_path / "state")}, timeout=120)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: --out {out}: cannot write {out}/flux/bootstrap/") and \
        proc.stderr.endswith(" (Permission denied); nothing was written\n"), proc.stderr
    assert _tree(out) == before
