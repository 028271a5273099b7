"""Verification: the live matrix probed, beside the engine's prediction for
the policies in place and the step's intended matrix."""

from __future__ import annotations

from functools import partial

from cluster.live.observe.discovery import Target, all_at_once, discover
from cluster.live.observe.report import EdgeRow, MatrixReport
from cluster.live.observe.settings import ProbeSettings
from cluster.live.record.drift import state_label
from cluster.live.record.policies import is_ours, live_policies
from cluster.policy.engine.model import Edge
from cluster.policy.engine.predictions import engine_for, predict
from cluster.policy.manifests import obj_ref
from cluster.policy.profile import IntendedEdge, Profile
from cluster.seams.kube import Kube


def _intent(ie: IntendedEdge | None) -> str:
    if ie is None:
        return "not in the intended matrix"
    return f"the matrix opens it at {ie.step}" + (f": {ie.reason}" if ie.reason else "")


def _changes(profile: Profile, k: int | None) -> dict[Edge, str]:
    """The edges the k-th step opens and closes by the intended matrix."""
    if not k:
        return {}
    before, after = profile.intended_after(k - 1), profile.intended_after(k)
    return {e: "opened" if now else "closed" for e, now in after.items() if now != before.get(e)}


def verify_live(kube: Kube, profile: Profile, k: int | None, settings: ProbeSettings, *,
                context: str | None = None, since: float | None = None) -> MatrixReport:
    """Probe the live matrix; compare with the engine (live policies and
    addresses) and, when k is known, with the step-intended matrix."""
    # The pods and addresses, and the policies in place: read at once.
    read = all_at_once({"live": partial(discover, kube, profile),
                        "policies": partial(live_policies, kube, profile.profile_namespaces)})
    live, policies = read["live"], read["policies"]
    verdicts = predict(profile, policies, live.endpoints)
    # An external endpoint is dialled at its live port (the API server's
    # EndpointSlice: 6443 on k3s, 443 on most managed clusters); the engine
    # must judge that same port, or predicted and observed speak of
    # different traffic.
    moved = {e: t.port for e, t in live.targets.items() if isinstance(t, Target) and t.port != e.port}
    if moved:
        engine, by_key = engine_for(profile, policies), {ep.key: ep for ep in live.endpoints}
        for e, port in moved.items():
            verdicts[e] = engine.evaluate(by_key[e.src], by_key[e.dst], port, e.protocol)
    intended = profile.intended_after(k) if k is not None else {}
    run = settings.prober(kube).run(live.targets, {e: v.allowed for e, v in verdicts.items()})
    intents = profile.intents()
    changes = _changes(profile, k)
    rows = [EdgeRow(edge=e, predicted=v.allowed, verdict=v, intended=intended.get(e),
                    intent=_intent(intents.get(e)), observation=run.observations.get(e), change=changes.get(e))
            for e, v in verdicts.items()]
    notes = list(live.notes)
    foreign = sorted(obj_ref(p, kind=False) for p in policies if not is_ours(p))
    if foreign:
        notes.append(f"policies that are not ours also apply here: {', '.join(foreign)}")
    return MatrixReport(profile.name, context, state_label(profile, k), rows, True, run.seconds,
                        run.first_pass_seconds, run.probes, run.workers, notes, execs=run.execs, mode=run.mode,
                        matched_seconds=_matched(run, since))


def _matched(run, since: float | None) -> float | None:
    """When the matrix first matched, in seconds after ``since`` (the
    apply, on the settings' clock) or else after the probing began."""
    if run.matched_seconds is None:
        return None
    return run.matched_seconds if since is None else max(0.0, run.started + run.matched_seconds - since)


def predicted(profile: Profile, k: int) -> MatrixReport:
    verdicts = predict(profile, profile.policies_through(k))
    intended = profile.intended_after(k)
    intents = profile.intents()
    changes = _changes(profile, k)
    rows = [EdgeRow(edge=e, predicted=v.allowed, verdict=v, intended=intended.get(e),
                    intent=_intent(intents.get(e)), change=changes.get(e)) for e, v in verdicts.items()]
    return MatrixReport(profile.name, None, state_label(profile, k), rows, False)
