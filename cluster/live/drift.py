"""How the live policies of ours compare with a profile's steps: which step
prefix they amount to, and how they differ from one."""

from __future__ import annotations

from cluster.live.snapshots import canonical_spec, policy_key, steps_held
from cluster.policy.profile import Profile


def infer_applied(profile: Profile, ours: list[dict]) -> int | None:
    """How many leading steps the live policies of ours amount to, or None
    (the same reading a snapshot's label gets)."""
    return steps_held(profile, ours)


def drift(profile: Profile, k: int, ours: list[dict]) -> list[str]:
    """How the live policies of ours differ from the first k steps."""
    live = {policy_key(p): p for p in ours}
    want = {policy_key(p): p for p in profile.policies_through(k)}
    out = [f"{ns}/{n} missing" for (ns, n) in want if (ns, n) not in live]
    out += [f"{ns}/{n} changed" for (ns, n), p in want.items()
            if (ns, n) in live and canonical_spec(live[(ns, n)].get("spec") or {}) != canonical_spec(p.get("spec") or {})]
    out += [f"{ns}/{n} not part of these steps" for (ns, n) in live if (ns, n) not in want]
    return sorted(out)


def state_label(profile: Profile, k: int | None) -> str:
    if k is None:
        return "(live policies match no step prefix)"
    if k == 0:
        return "at baseline (no step applied)"
    return f"after {profile.steps[k - 1].name} ({k}/{len(profile.steps)})"
