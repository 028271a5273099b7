"""`dashi` with the fake cluster behind the Kubernetes seam, as a process:
the terminal tests run the live reporting tasks (smoke, status) in a real
terminal without a cluster.

    python tests/support/fake_cli.py PROFILE STEPS dashi-args...

deploys PROFILE's stand-ins on a fresh FakeKube, records the canary's deny
behaviour as `inv prepare` would, rolls out the first STEPS steps (quietly),
and then runs `dashi dashi-args...` with every kube factory of the CLI
answering with that fake (cluster.cli.common.real_kube, the seam the unit
tests replace too). $DASHI_STATE_DIR must name an empty directory.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `support`


def main(argv: list[str]) -> None:
    from rich.console import Console

    from cluster.cli import rollout, setup
    from cluster.cli.main import program
    from cluster.live.record.files import state_root
    from cluster.live.record.identity import ClusterState, identify
    from cluster.live.rollout.rollout import Rollout
    from cluster.policy.profile import load_profile
    from cluster.testing.fakecluster.kube import FakeKube

    profile_name, steps, args = argv[0], int(argv[1]), argv[2:]
    kube = FakeKube()
    profile = load_profile(profile_name)
    for obj in profile.namespace_objects + profile.workload_objects:
        kube.apply(obj)
    ClusterState(identify(kube), state_root()).save_cni(name="fake", deny_behaviour="drop")
    if steps:
        Rollout(kube, profile, out=Console(file=io.StringIO())).up(profile.steps[steps - 1].name)
    rollout.real_kube = setup.real_kube = lambda context: kube
    program.run(["dashi", *args])


if __name__ == "__main__":
    main(sys.argv[1:])
