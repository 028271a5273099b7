"""How long does a full matrix probe take, by worker count?

Runs the dashi profile's matrix (240 edges from 14 source pods) against the
in-memory cluster with simulated probe costs: every exec costs EXEC_LATENCY
(an API server -> kubelet -> runtime round trip) and a dropped connection
waits agnhost's timeout on top. Time is scaled down by SCALE so the
sequential run stays short; the table reports both the measured seconds and
the same figure in units of one probe timeout, which is what carries over to
a real cluster (timeout 1 s there).

    python benchmarks/bench_probe.py [--scale 0.1] [--workers 1,8,32,64,256]

Two states are measured: right after default-deny (every TCP probe is
dropped: the worst case, 226 timeouts) and after the final step (45 edges
open, the rest dropped).
"""

from __future__ import annotations

import argparse
import math
import time

from cluster.live.observe.discovery import discover
from cluster.live.observe.prober import MatrixProber
from cluster.live.record.policies import mark_ours
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.kube import FakeKube

EXEC_LATENCY_S = 0.05  # a kubectl exec round trip on a local k3d cluster, order of magnitude


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of real time simulated (default 0.1)")
    ap.add_argument("--workers", default="1,8,32,64,256")
    args = ap.parse_args()
    profile = load_profile("dashi")
    timeout_s = 1.0
    unit = (timeout_s + EXEC_LATENCY_S) * args.scale  # one dropped probe, simulated
    print(f"dashi matrix, probe timeout {timeout_s:.0f} s, exec latency {EXEC_LATENCY_S * 1000:.0f} ms, "
          f"simulated at x{args.scale} (one dropped probe = {unit * 1000:.0f} ms here)")
    print(f"{'state':<14}{'workers':>8}{'probes':>8}{'waited':>9}{'seconds':>10}{'timeouts':>10}"
          f"{'ideal':>7}")
    for k, label in ((1, "default-deny"), (len(profile.steps), "final")):
        kube = FakeKube(exec_latency=EXEC_LATENCY_S * args.scale, time_scale=args.scale)
        for obj in profile.namespace_objects + profile.workload_objects:
            kube.apply(obj)
        for i, step in enumerate(profile.steps[:k]):
            for obj in step.objects:
                kube.apply(mark_ours(obj, step.name))
        live = discover(kube, profile)
        for workers in (int(w) for w in args.workers.split(",")):
            prober = MatrixProber(kube, workers=workers, timeout_s=timeout_s, poll_timeout=0)
            start = time.perf_counter()
            run = prober.run(live.targets)
            took = time.perf_counter() - start
            waited = sum(1 for o in run.observations.values() if o.result.kind in ("timeout", "unprobed"))
            # The floor with this many workers: rounds of probes that wait out the
            # timeout (dropped TCP, and UDP to DNS, which never answers agnhost).
            ideal = math.ceil(waited / workers)
            print(f"{label:<14}{workers:>8}{run.probes:>8}{waited:>9}{took:>10.2f}{took / unit:>10.1f}"
                  f"{ideal:>7}")


if __name__ == "__main__":
    main()
