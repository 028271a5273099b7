"""A deployed profile on a fake cluster, for the rollout's tests."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from cluster import yamlio
from cluster.live.record.history import History
from cluster.live.rollout.rollout import Rollout
from cluster.live.observe.settings import ProbeSettings
from cluster.live.record.policies import canonical_spec, is_ours
from cluster.live.record.identity import ClusterState, identify
from cluster.policy.profile import load_profile
from cluster.testing.fakecluster.clock import FakeClock
from cluster.testing.fakecluster.kube import FakeKube

NP = "networking.k8s.io/v1"
STEPS = ["default-deny", "allow-dns", "allow-from-ingress-controller"]


class RolloutWorld:
    """A deployed profile on a fake cluster, a fake clock and a state dir."""

    def __init__(self, tmp_path, profile="environments", measured: str | None = "drop", **kube_kw):
        self.clock = FakeClock()
        self.kube = FakeKube(clock=self.clock, **kube_kw)
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        for obj in self.profile.namespace_objects + self.profile.workload_objects:
            self.kube.apply(obj)
        self.kube.calls.clear()
        self.root = tmp_path / "state"
        self.buf = io.StringIO()
        if measured:
            # What inv prepare's canary keeps: the fake cluster drops denied packets.
            self.cluster().save_cni(name="fake", deny_behaviour=measured)

    def before_first_probe(self, action) -> None:
        """Run ``action`` once, before the first probe reaches a pod (an exec,
        or the opening of a probe shell kept open across rounds); probes run
        in parallel, so the others wait until it is done."""
        once, done = threading.Lock(), []

        def first():
            with once:
                if not done:
                    done.append(action())

        real_exec, real_open = self.kube.exec, self.kube.open_exec

        def exec_(*a, **kw):
            first()
            return real_exec(*a, **kw)

        def open_exec(*a, **kw):
            first()
            return real_open(*a, **kw)

        self.kube.exec, self.kube.open_exec = exec_, open_exec

    def rollout(self, profile=None, **kw) -> Rollout:
        self.buf = io.StringIO()
        return Rollout(self.kube, profile or self.profile, root=self.root,
                       out=Console(file=self.buf, width=200, color_system=None),
                       settings=ProbeSettings(clock=self.clock, sleep=self.clock.sleep), **kw)

    @property
    def out(self) -> str:
        return self.buf.getvalue()

    def cluster(self) -> ClusterState:
        """This machine's state of the fake cluster (found by its kube-system uid)."""
        return ClusterState(identify(self.kube), self.root)

    @property
    def pdir(self):
        return self.cluster().profile_dir(self.profile.name)

    def ours(self) -> dict:
        """Our live policies: (ns, name) -> (step annotation, canonical spec)."""
        return {(p["metadata"]["namespace"], p["metadata"]["name"]):
                (p["metadata"]["annotations"]["dashi.io/step"], canonical_spec(p["spec"]))
                for p in self.kube.objects("NetworkPolicy") if is_ours(p)}

    def through(self, k) -> dict:
        """What our live policies must be after the first k steps."""
        return {(o["metadata"]["namespace"], o["metadata"]["name"]): (step.name, canonical_spec(o["spec"]))
                for step in self.profile.steps[:k] for o in step.objects}

    def record(self) -> dict:
        return yamlio.load((self.pdir / "state.yaml").read_text())

    def history(self) -> list[tuple]:
        entries, _ = History.at(self.pdir).read()
        return [(e["event"], e["step"], e["ok"]) for e in entries]

    def snapshot_ids(self) -> list[str]:
        index = self.pdir / "snapshots" / "index.yaml"
        return [s["id"] for s in yamlio.load(index.read_text())["snapshots"]] if index.exists() else []

    def applied_names(self) -> list[str]:
        return [f"{c.namespace}/{c.name}" for c in self.kube.writes("NetworkPolicy") if c.verb != "delete"]


