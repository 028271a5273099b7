"""How the live policies of ours compare with a profile's steps: which step
prefix they amount to, and how they differ from one."""

from __future__ import annotations

from cluster.live.record.policies import canonical, key_ref, policy_key
from cluster.live.record.snapshots import steps_held
from cluster.policy.profile import Profile


def infer_applied(profile: Profile, ours: list[dict]) -> int | None:
    """How many leading steps the live policies of ours amount to, or None
    (the same reading a snapshot's label gets)."""
    return steps_held(profile, ours)


def drift(profile: Profile, k: int, ours: list[dict]) -> list[str]:
    """How the live policies of ours differ from the first k steps."""
    live = {policy_key(p): p for p in ours}
    want = {policy_key(p): p for p in profile.policies_through(k)}
    out = [f"{key_ref(k)} missing" for k in want if k not in live]
    out += [f"{key_ref(k)} changed" for k, p in want.items() if k in live and canonical(live[k]) != canonical(p)]
    out += [f"{key_ref(k)} not part of these steps" for k in live if k not in want]
    return sorted(out)


def state_label(profile: Profile, k: int | None) -> str:
    if k is None:
        return "(live policies match no step prefix)"
    if k == 0:
        return "at baseline (no step applied)"
    return f"after {profile.steps[k - 1].name} ({k}/{len(profile.steps)})"
