"""Engine benchmark: synthetic clusters, full matrices, times and memory.

    python benchmarks/bench_engine.py            # the targets, then the scaling of both
    python benchmarks/bench_engine.py --check    # exit 1 if a target is missed

In-process targets: the dashi profile, all steps, under 0.1 s of engine
time; 200 pods with 60 policies, full matrix, under 0.3 s; 2,000 pods with
500 policies under 10 s and under 1 GiB of memory (peak Python allocations,
tracemalloc).

Whole-process targets (``dashi reachability -r DIR`` as a user runs it, on a
directory of generated manifests; wall time and peak RSS of the process,
schema validators and Python's bytecode cached as after a first run): one
pod in at most 0.1 s; 2,000 pods with 500 policies in at most 0.6 s;
10,000 pods with 2,000 policies in at most 1.5 s and 1 GiB, and in the
"broad" shape (egress rules whose peers are whole groups of namespaces)
in at most 2.5 s and 200 MiB. The first run on a machine also compiles the
schema validators (printed separately).

Against network-config-analyzer 2.1.0 (IBM's NCA, ``nca --connectivity``,
installed apart: ``pip install network-config-analyzer==2.1.0`` in a venv
of its own; ``--nca PATH``), on the same directories in the same run: at
least 5 times faster at 200 pods with 60 policies, 150 times at 2,000 with
500. Without NCA those two comparisons are reported as not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.policy.analysis import check  # noqa: E402
from cluster.policy.engine.evaluate import Engine  # noqa: E402
from cluster.policy.engine.model import Endpoint, Port  # noqa: E402
from cluster.policy.profile import load_profile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APPS = ["api", "db", "web", "worker", "cache", "queue", "auth", "search"]
TIERS = ["front", "back", "data"]
GROUPS = ["a", "b", "c"]


def synthetic(pods: int, policies: int, seed: int = 1):
    """Pods spread over namespaces of ~20 pods, realistic policy shapes:
    default-deny, same-namespace allows, cross-namespace allows by
    namespace AND pod selector, named and numeric ports, some ipBlocks."""
    rnd = random.Random(seed)
    n_ns = max(1, pods // 20)
    namespaces = {f"ns{i}": {"team": f"t{i % 7}", "env": rnd.choice(["dev", "prod"])} for i in range(n_ns)}
    eps = []
    for i in range(pods):
        ns = f"ns{i % n_ns}"
        app = rnd.choice(APPS)
        ports = (Port("http", 8080), Port("metrics", 9100)) if i % 3 else (Port("db", 5432),)
        eps.append(Endpoint(key=f"{ns}/p{i}", namespace=ns, name=f"p{i}",
                            labels={"app": app, "tier": rnd.choice(TIERS)}, ports=ports,
                            ip=f"10.{42 + i // 65536}.{i // 256 % 256}.{i % 256}"))
    pols = []
    for j in range(policies):
        ns = f"ns{j % n_ns}"
        kind = j % 5
        meta = {"name": f"pol{j}", "namespace": ns}
        if kind == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        elif kind == 1:
            spec = {"podSelector": {"matchLabels": {"app": rnd.choice(APPS)}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": rnd.choice(TIERS)}}}],
                                 "ports": [{"port": "http"}]}]}
        elif kind == 2:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In",
                                                          "values": rnd.sample(TIERS, 2)}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{rnd.randrange(7)}"}},
                                           "podSelector": {"matchLabels": {"app": rnd.choice(APPS)}}}],
                                 "ports": [{"port": 8080}, {"port": 5432}]}]}
        elif kind == 3:
            spec = {"podSelector": {"matchLabels": {"app": rnd.choice(APPS)}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "env", "operator": "NotIn", "values": ["prod"]}]}}],
                        "ports": [{"port": 8000, "endPort": 9200}]},
                        {"to": [{"ipBlock": {"cidr": "10.42.0.0/16", "except": ["10.42.1.0/24"]}}]}]}
        else:
            spec = {"podSelector": {"matchLabels": {"tier": rnd.choice(TIERS)}},
                    "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": "metrics"}]}]}
        pols.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec})
    return namespaces, eps, pols


def full_matrix(pods: int, policies: int) -> tuple[float, int, float]:
    """Seconds, allowed (src, dst, port) count, peak MiB for one full matrix."""
    namespaces, eps, pols = synthetic(pods, policies)
    t0 = time.perf_counter()
    matrix = Engine(namespaces, pols).allowed_matrix(eps)
    allowed = sum(bin(b).count("1") for b in matrix.values())
    elapsed = time.perf_counter() - t0
    # Memory in a second run: tracemalloc slows allocation-heavy code, so it
    # must not be on while timing.
    tracemalloc.start()
    Engine(namespaces, pols).allowed_matrix(eps)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return elapsed, allowed, peak


SHAPES = ("project", "broad")


def write_manifests(root: Path, pods: int, policies: int, seed: int = 1, verbose: bool = False,
                    shape: str = "project") -> None:
    """A directory as a platform repository holds it: one file per namespace
    (a Namespace, Deployments, StatefulSets and bare Pods, one pod each, with
    labels, an image and ports; ``verbose`` adds env, resources, a probe and
    a Service to each, as rendered Helm charts have), policies in their own files.

    ``shape`` "project": default deny in every namespace, DNS egress,
    same-namespace allows on named and numeric ports, cross-namespace allows
    by namespace AND pod selector, a monitoring namespace scraping every
    metrics port. "broad", as platform teams write them: namespaces in three
    groups, egress rules whose peers are a whole group of namespaces
    (``to: [{namespaceSelector: {matchLabels: {group: a}}}]``, a third of all
    pods per rule), ingress from a tier of whole groups, and UDP ports (DNS, a statsd
    port on a third of the pods) beside the TCP ones."""
    if shape not in SHAPES:
        raise ValueError(f"shape: one of {', '.join(SHAPES)}")
    broad = shape == "broad"
    rnd = random.Random(seed)
    n_ns = max(1, pods // 20)
    root.mkdir(parents=True, exist_ok=True)
    per_ns = [[] for _ in range(n_ns)]
    for i in range(pods):
        per_ns[i % n_ns].append(i)
    for n, members in enumerate(per_ns):
        ns = f"team-{n}"
        docs = [f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n"
                f"    team: t{n % 7}\n    env: {'prod' if n % 3 else 'dev'}\n"
                + (f"    group: {GROUPS[n % 3]}\n" if broad else "")]
        for i in members:
            app, tier = rnd.choice(APPS), rnd.choice(TIERS)
            kind = ("Deployment", "Deployment", "StatefulSet", "Pod")[i % 4]
            ports = ["{name: http, containerPort: 8080}", "{name: metrics, containerPort: 9100}"] if i % 3 \
                else ["{name: db, containerPort: 5432}"]
            if broad and i % 3 == 1:
                ports.append("{name: statsd, containerPort: 8125, protocol: UDP}")
            container = [f"- name: {app}", f"  image: registry.example/{app}:1.{i % 9}", "  ports:",
                         *(f"    - {p}" for p in ports)]
            if verbose:
                container += ["  env:", "    - {name: LOG_LEVEL, value: info}", "  resources:",
                              "    limits: {cpu: 500m, memory: 256Mi}", "  readinessProbe:",
                              f"    tcpSocket: {{port: {5432 if i % 3 == 0 else 8080}}}"]
            labels = [f"app.kubernetes.io/name: {app}", f"app.kubernetes.io/instance: {ns}-{app}-{i}",
                      f"app.kubernetes.io/part-of: {ns}", f"tier: {tier}"]
            block = lambda lines, indent: "".join(" " * indent + x + "\n" for x in lines)  # noqa: E731
            if kind == "Pod":
                docs.append(f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p{i}\n  namespace: {ns}\n  labels:\n"
                            f"{block(labels, 4)}spec:\n  containers:\n{block(container, 4)}")
                continue
            docs.append(f"apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: p{i}\n  namespace: {ns}\n"
                        f"spec:\n  replicas: 1\n  selector:\n    matchLabels:\n"
                        f"      app.kubernetes.io/instance: {ns}-{app}-{i}\n"
                        f"  template:\n    metadata:\n      labels:\n{block(labels, 8)}"
                        f"    spec:\n      containers:\n{block(container, 8)}")
            if verbose:
                docs.append(f"apiVersion: v1\nkind: Service\nmetadata:\n  name: p{i}\n  namespace: {ns}\nspec:\n"
                            f"  selector: {{app.kubernetes.io/instance: {ns}-{app}-{i}}}\n  ports:\n"
                            f"    - {{name: http, port: 80, targetPort: 8080}}\n")
        (root / f"{ns}.yaml").write_text("---\n".join(docs))
    if broad:
        _write_policies(root, _broad_policies(rnd, policies, n_ns))
        (root / "kube-system.yaml").write_text(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n---\n"
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: coredns, namespace: kube-system}\nspec:\n"
            "  replicas: 2\n  selector: {matchLabels: {k8s-app: kube-dns}}\n  template:\n"
            "    metadata: {labels: {k8s-app: kube-dns}}\n    spec:\n      containers:\n"
            "        - {name: coredns, image: coredns/coredns, ports: [{name: dns, containerPort: 53, protocol: UDP}, "
            "{name: dns-tcp, containerPort: 53}]}\n")
        return
    pols = []
    pairs = {}  # per namespace: the (server, client) apps of its allow rules
    for j in range(policies):
        n = j % n_ns
        ns = f"team-{n}"
        kind = (j // n_ns) % 5
        if kind == 0:
            spec = ("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  egress:\n"
                    "    - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]\n"
                    "      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n")
        elif kind == 1:
            spec = ("  podSelector: {}\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: "
                    "{kubernetes.io/metadata.name: monitoring}}}]\n      ports: [{port: metrics}]\n")
        elif kind == 2:
            a, b = pairs.setdefault(n, rnd.sample(APPS, 2))
            spec = (f"  podSelector: {{matchLabels: {{app.kubernetes.io/name: {a}}}}}\n"
                    f"  ingress:\n    - from: [{{podSelector: {{matchLabels: {{app.kubernetes.io/name: {b}}}}}}}]\n"
                    f"      ports: [{{port: http}}, {{port: 5432}}]\n")
        elif kind == 3:
            a, b = pairs.setdefault(n, rnd.sample(APPS, 2))
            spec = (f"  podSelector: {{matchLabels: {{app.kubernetes.io/name: {b}}}}}\n  policyTypes: [Egress]\n"
                    f"  egress:\n    - to: [{{podSelector: {{matchLabels: {{app.kubernetes.io/name: {a}}}}}}}]\n"
                    f"      ports: [{{port: 8000, endPort: 9000}}, {{port: 5432}}]\n")
        else:
            spec = (f"  podSelector: {{matchLabels: {{app.kubernetes.io/name: {rnd.choice(APPS)}}}}}\n"
                    f"  ingress:\n    - from: [{{namespaceSelector: {{matchLabels: {{team: t{rnd.randrange(7)}}}}}, "
                    f"podSelector: {{matchLabels: {{tier: front}}}}}}]\n      ports: [{{port: 8080}}]\n")
        pols.append(_netpol(j, ns, spec))
    _write_policies(root, pols)
    (root / "monitoring.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}\n---\n"
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: prometheus, namespace: monitoring}\nspec:\n"
        "  replicas: 2\n  selector: {matchLabels: {app: prometheus}}\n  template:\n"
        "    metadata: {labels: {app: prometheus}}\n    spec:\n      containers:\n"
        "        - {name: prometheus, image: prom/prometheus, ports: [{name: web, containerPort: 9090}]}\n")


def _netpol(j: int, ns: str, spec: str) -> str:
    return f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: pol-{j}, namespace: {ns}}}\nspec:\n{spec}"


def _write_policies(root: Path, pols: list[str]) -> None:
    (root / "policies").mkdir(exist_ok=True)
    for k in range(0, len(pols), 100):
        (root / "policies" / f"{k // 100:03d}.yaml").write_text("---\n".join(pols[k:k + 100]))


def _broad_policies(rnd: random.Random, policies: int, n_ns: int) -> list[str]:
    """The policies of the "broad" shape, four per namespace in turn: default
    deny with DNS egress (UDP and TCP); an app's egress to every namespace of
    a group on three TCP ports; an app's ingress from the front tier of every
    namespace of a group on http and statsd (UDP); statsd (UDP) within the
    namespace, to one app."""
    pols = []
    for j in range(policies):
        n = j % n_ns
        ns = f"team-{n}"
        kind = (j // n_ns) % 4
        group = GROUPS[rnd.randrange(3)]
        if kind == 0:
            spec = ("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  egress:\n"
                    "    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, "
                    "podSelector: {matchLabels: {k8s-app: kube-dns}}}]\n"
                    "      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n")
        elif kind == 1:
            spec = (f"  podSelector: {{matchLabels: {{app.kubernetes.io/name: {rnd.choice(APPS)}}}}}\n"
                    f"  policyTypes: [Egress]\n  egress:\n"
                    f"    - to: [{{namespaceSelector: {{matchLabels: {{group: {group}}}}}}}]\n"
                    f"      ports: [{{port: 8080}}, {{port: 5432}}, {{port: 9100}}]\n")
        elif kind == 2:
            spec = (f"  podSelector: {{matchLabels: {{app.kubernetes.io/name: {rnd.choice(APPS)}}}}}\n"
                    f"  ingress:\n    - from: [{{namespaceSelector: {{matchLabels: {{group: {group}}}}}, "
                    f"podSelector: {{matchLabels: {{tier: front}}}}}}]\n"
                    f"      ports: [{{port: http}}, {{port: statsd, protocol: UDP}}]\n")
        else:
            app = rnd.choice(APPS)
            spec = (f"  podSelector: {{}}\n  policyTypes: [Ingress, Egress]\n  ingress:\n"
                    f"    - from: [{{podSelector: {{}}}}]\n      ports: [{{port: 8125, protocol: UDP}}]\n"
                    f"  egress:\n    - to: [{{podSelector: {{matchLabels: {{app.kubernetes.io/name: {app}}}}}}}]\n"
                    f"      ports: [{{port: 8125, protocol: UDP}}]\n")
        pols.append(_netpol(j, ns, spec))
    return pols


# Runs one command and reports its wall time, CPU time and peak RSS. A child
# forked from this (large) benchmark process would start with its peak RSS
# and keep it as its own high-water mark; a small driver process does not.
_DRIVER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
n = len(p.stdout.read())
_, status, ru = os.wait4(p.pid, 0)
print(json.dumps([time.perf_counter() - t0, ru.ru_maxrss / 1024, n, ru.ru_utime + ru.ru_stime,
                  os.waitstatus_to_exitcode(status)]))
"""


def _run(argv: list[str], env: dict | None = None) -> tuple[float, float, int, float, int]:
    """Wall seconds, peak RSS (MiB), output bytes, CPU seconds and exit code of one command."""
    out = subprocess.run([sys.executable, "-c", _DRIVER, *argv], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return tuple(json.loads(out))


def whole_process(directory: Path, cache: Path) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS (MiB), output bytes and CPU seconds of
    `dashi reachability -r DIR`. CPU time is printed beside wall time: on a
    shared machine the wall time also measures the neighbours."""
    # As a user's interpreter runs it: with Python's bytecode cache (the
    # first run writes it for this clone), even where the environment turns
    # it off; compiling the package's modules on every run costs ~30 ms.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["DASHI_CACHE_DIR"] = str(cache)
    # `python -m cluster.cli` is what the installed `dashi` script runs.
    elapsed, rss, size, cpu, code = _run([sys.executable, "-m", "cluster.cli", "reachability", "-r", str(directory)],
                                         env)
    if code != 0:
        raise SystemExit(f"reachability failed on {directory}")
    return elapsed, rss, size, cpu


def find_nca(given: str | None) -> str | None:
    """IBM's network-config-analyzer (``nca``), the analyzer users would
    otherwise run: --nca PATH, else $DASHI_BENCH_NCA, else on PATH."""
    return given or os.environ.get("DASHI_BENCH_NCA") or shutil.which("nca")


def nca_process(nca: str, directory: Path) -> tuple[float, float, int, float]:
    """The same figures for NCA's connectivity map of the same directory, as
    `nca --connectivity -r DIR` prints it by default (its connections
    grouped into firewall rules; -o txt_no_fw_rules, one line per
    connection, took 60% of the time at 2,000 pods when measured)."""
    elapsed, rss, size, cpu, code = _run([nca, "--connectivity", "-r", str(directory)])
    if code != 0:
        raise SystemExit(f"nca failed on {directory} (exit {code})")
    return elapsed, rss, size, cpu


ONE_POD = ("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: default, labels: {app: a}}\n"
           "spec:\n  containers: [{name: a, image: x, ports: [{containerPort: 80}]}]\n")
ONE_POD_TARGET = 0.1
# (pods, policies, shape) of the whole-process runs; "verbose" is the
# project shape as rendered Helm charts write it.
WHOLE_PROCESS = [(200, 60, "project"), (500, 125, "project"), (1000, 250, "project"), (2000, 500, "project"),
                 (5000, 1000, "project"), (10000, 2000, "project"), (2000, 500, "broad"), (10000, 2000, "broad"),
                 (2000, 500, "verbose")]
# Seconds and MiB (None: no memory target).
TARGETS = {(2000, 500, "project"): (0.6, None),
           (10000, 2000, "project"): (1.5, 1024), (10000, 2000, "broad"): (2.5, 200)}
# How many times faster than NCA, where it is measured.
NCA_TARGETS = {(200, 60, "project"): 5, (2000, 500, "project"): 150}
SHAPE_NOTES = {"verbose": "  (Helm-verbose: env, resources, probe and a Service per workload)",
               "broad": "  (broad egress peers: whole groups of namespaces)"}


def _reference() -> float:
    t0 = time.process_time()
    sum(range(10**7))
    return time.process_time() - t0


def dashi_all_steps() -> float:
    profile = load_profile("dashi")
    t0 = time.perf_counter()
    check(profile)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--no-grid", action="store_true", help="skip the scaling grids")
    ap.add_argument("--nca", help="network-config-analyzer's nca command, to compare with (default: "
                                  "$DASHI_BENCH_NCA, else nca on PATH; skipped when absent)")
    args = ap.parse_args()
    failures = []

    # A fixed pure-Python workload: on a shared machine every figure below
    # scales with it, so runs on different days can be compared.
    ref = min(_reference() for _ in range(3))
    print(f"reference: sum(range(10**7)) takes {ref:.3f} s of CPU on this machine now")
    t = min(dashi_all_steps() for _ in range(3))
    print(f"dashi profile, all {len(load_profile('dashi').steps)} steps (check): {t:.3f} s  (target < 0.1 s)")
    if t >= 0.1:
        failures.append("dashi")
    for pods, pols, limit_s, limit_mib in ((200, 60, 0.3, None), (2000, 500, 10.0, 1024)):
        secs, allowed, peak = full_matrix(pods, pols)
        print(f"{pods} pods, {pols} policies, full matrix: {secs:.3f} s, {allowed} allowed edges, "
              f"peak {peak:.0f} MiB  (target < {limit_s} s" + (f", < {limit_mib} MiB)" if limit_mib else ")"))
        if secs >= limit_s or (limit_mib and peak >= limit_mib):
            failures.append(f"{pods}/{pols}")

    nca = find_nca(args.nca)
    work = Path(tempfile.mkdtemp(prefix="dashi-bench-"))
    try:
        cache = work / "cache"
        print("\nwhole process: dashi reachability -r DIR (generated manifests, one pod per workload; "
              "3 runs, the fastest)")
        one = work / "one-pod"
        one.mkdir()
        (one / "pod.yaml").write_text(ONE_POD)
        cold = whole_process(one, cache)[0]
        print(f"  first run on a machine (compiles and caches the schema validators and the bytecode): {cold:.2f} s")
        runs = [whole_process(one, cache) for _ in range(5)]
        secs, cpu = min(r[0] for r in runs), min(r[3] for r in runs)
        print(f"  one pod: {secs:.3f} s wall, {cpu:.3f} s CPU  (target <= {ONE_POD_TARGET} s)")
        if secs > ONE_POD_TARGET:
            failures.append("whole process, one pod")
        rows = [(p, q, shape) for p, q, shape in WHOLE_PROCESS if not args.no_grid or (p, q, shape) in TARGETS]
        for pods, pols, shape in rows:
            d = work / f"{pods}x{pols}-{shape}"
            write_manifests(d, pods, pols, shape="broad" if shape == "broad" else "project",
                            verbose=shape == "verbose")
            runs = [whole_process(d, cache) for _ in range(3)]
            secs = min(r[0] for r in runs)
            cpu = min(r[3] for r in runs)
            rss = max(r[1] for r in runs)
            mib = sum(f.stat().st_size for f in d.rglob("*.yaml")) / 2**20
            target = TARGETS.get((pods, pols, shape))
            note = ""
            if target:
                note = f"  (target <= {target[0]} s" + (f", <= {target[1]} MiB)" if target[1] else ")")
                if secs > target[0] or (target[1] and rss > target[1]):
                    failures.append(f"whole process {pods}/{pols} {shape}")
            note += SHAPE_NOTES.get(shape, "")
            print(f"  {pods:>6} pods x {pols:>5} policies {shape:>8} ({mib:5.1f} MiB of YAML, "
                  f"{runs[0][2] / 2**20:5.1f} MiB of JSON out): {secs:6.2f} s wall, {cpu:6.2f} s CPU, "
                  f"peak RSS {rss:5.0f} MiB{note}")
            if (pods, pols, shape) in NCA_TARGETS:
                factor = NCA_TARGETS[(pods, pols, shape)]
                if nca is None:
                    print(f"         NCA: not found (network-config-analyzer 2.1.0's `nca`: --nca PATH or "
                          f"$DASHI_BENCH_NCA); target >= {factor}x faster not measured")
                    continue
                n_runs = [nca_process(nca, d) for _ in range(3 if pods <= 500 else 1)]
                n_secs, n_cpu = min(r[0] for r in n_runs), min(r[3] for r in n_runs)
                print(f"         NCA {nca}: {n_secs:6.2f} s wall, {n_cpu:6.2f} s CPU, peak RSS "
                      f"{max(r[1] for r in n_runs):5.0f} MiB: dashi {n_secs / secs:.0f}x faster "
                      f"({n_cpu / cpu:.0f}x in CPU)  (target >= {factor}x)")
                if n_secs / secs < factor:
                    failures.append(f"{factor}x NCA at {pods}/{pols}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if not args.no_grid:
        print("\nengine only, scaling (seconds): rows pods, columns policies")
        cols = (50, 200, 800)
        print("pods   " + "".join(f"{c:>10}" for c in cols))
        for pods in (250, 500, 1000, 2000):
            print(f"{pods:<7}" + "".join(f"{full_matrix(pods, c)[0]:>10.3f}" for c in cols))
    if failures:
        print(f"missed targets: {', '.join(failures)}")
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
