"""Replay benchmark: a million recorded flows against the dashi profile's
nine steps.

    python benchmarks/bench_flows.py            # the figures
    python benchmarks/bench_flows.py --check    # exit 1 if the target is missed

Target: replaying 1,000,000 recorded flows (a recording as `inv observe`
writes it: read back, every flow placed on the profile's endpoints, every
distinct edge replayed against each of the nine steps) in under 5 s.

The recording is made once, outside the timing, from Hubble-like peers:
every pod of the profile (each replica a pod of its own, with its labels as
Hubble gives them) dialling every declared port of every other, plus an
edge on an undeclared port, traffic from the node, from the world and from
a namespace outside the profile, flows spread over an hour.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.policy.flows.model import Flow, Peer, labels_of  # noqa: E402
from cluster.policy.flows.recording import read_recording, write_recording  # noqa: E402
from cluster.policy.flows.replay import check_lines, observe, replay  # noqa: E402
from cluster.policy.profile import load_profile  # noqa: E402

TARGET_S = 5.0


def peers(profile) -> list[tuple[Peer, object]]:
    out = []
    for ep in profile.endpoints:
        if not ep.is_pod:
            continue
        for i in range(ep.replicas):
            name = ep.name if ep.kind == "debug" else f"{ep.name}-7c9d{i}-x{i}"
            out.append((Peer("pod", ep.namespace, name, labels_of(dict(ep.labels)), f"10.42.0.{len(out) + 10}"), ep))
    return out


def flows(profile, n: int, seed: int = 1):
    rnd = random.Random(seed)
    pods = peers(profile)
    pairs = [(s, d, p.port, p.protocol) for s, se in pods for d, de in pods if s != d and se.probe_source
             for p in de.ports]
    extra = [(pods[0][0], pods[1][0], 4317, "TCP"), (Peer("host"), pods[2][0], 8080, "TCP"),
             (pods[3][0], Peer("world", ip="203.0.113.7"), 443, "TCP"),
             (Peer("pod", "shop", "api-1", labels_of({"app": "api"})), pods[4][0], 8080, "TCP")]
    pairs += extra
    t0 = 1_765_137_600.0
    for i in range(n):
        s, d, port, proto = pairs[rnd.randrange(len(pairs))]
        yield Flow(s, d, port, proto, time=t0 + i * 3600.0 / n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = ap.parse_args(argv)
    profile = load_profile("dashi")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path, meta = write_recording(Path(tmp) / "rec", flows(profile, args.flows), {"source": "bench"},
                                     max_flows=args.flows)
        made = time.perf_counter() - t
        size = (path / "flows.tsv").stat().st_size
        t = time.perf_counter()
        gathered = read_recording(path)
        t_read = time.perf_counter() - t
        obs = observe(profile, gathered)
        t_place = time.perf_counter() - t - t_read
        check = replay(profile, obs)
        total = time.perf_counter() - t
        t_replay = total - t_read - t_place
    print(f"recording: {meta['kept']} flows, {size / 1e6:.1f} MB, written in {made:.1f} s "
          f"({meta['kept'] / made:,.0f} flows/s)")
    print(f"replay of {obs.total:,} flows ({len(gathered.by_key)} distinct keys, {len(obs.edges)} edges) against "
          f"{len(check.steps)} steps: {total:.2f} s (read {t_read:.2f} s, place {t_place:.3f} s, "
          f"replay {t_replay:.3f} s); target {TARGET_S:.0f} s")
    print("  " + check_lines(check)[-1])
    missed = total >= TARGET_S
    if missed:
        print(f"MISSED: {total:.2f} s >= {TARGET_S} s")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
