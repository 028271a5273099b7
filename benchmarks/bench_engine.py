"""Engine benchmark: synthetic clusters, full matrices, times and memory.

    python benchmarks/bench_engine.py            # the targets, then a scaling grid
    python benchmarks/bench_engine.py --check    # exit 1 if a target is missed

Targets: the dashi profile, all steps, under 0.1 s of engine time; 200 pods
with 60 policies, full matrix, under 0.3 s; 2,000 pods with 500 policies
under 10 s and under 1 GiB of memory (peak Python allocations, tracemalloc).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.policy.engine import Endpoint, Engine, Port  # noqa: E402
from cluster.policy.profile import load_profile  # noqa: E402
from cluster.policy.analysis import check  # noqa: E402

APPS = ["api", "db", "web", "worker", "cache", "queue", "auth", "search"]
TIERS = ["front", "back", "data"]


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


def dashi_all_steps() -> float:
    profile = load_profile("dashi")
    t0 = time.perf_counter()
    check(profile)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--no-grid", action="store_true", help="skip the scaling grid")
    args = ap.parse_args()
    failures = []

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
    if not args.no_grid:
        print("\nscaling (seconds): rows pods, columns policies")
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
