"""Which clusters may be changed, and with what ceremony."""

from __future__ import annotations

from cluster.errors import GuardError
from cluster.live import guard


def outcome(context, explicit, yes, answer):
    """'ok', or the GuardError message's key phrase. answer: None = no terminal."""
    asked = []
    confirm = None if answer is None else (lambda q: asked.append(q) or answer)
    try:
        guard.check(context, explicit, yes=yes, confirm=confirm, action="apply policies")
    except GuardError as e:
        msg = str(e)
        for key in ("name it explicitly", "re-run with --yes", "not confirmed"):
            if key in msg:
                return key
        return msg
    return "ok" + (" (asked)" if asked else "")


def test_guard_truth_table():
    # Default: a non-k3d context must be named and confirmed; exceptions below.
    cases = {
        # local k3d: no ceremony at all
        ("k3d-dashi", None, False, None): "ok",
        ("k3d-dashi", "k3d-dashi", False, False): "ok",
        # anything else, not named explicitly: refused whatever else is said
        ("prod", None, True, True): "name it explicitly",
        ("prod", "staging", True, True): "name it explicitly",
        ("k3d-", None, True, None): "name it explicitly",  # "k3d-" alone is not a k3d cluster name
        # named: --yes, or a "y" at the terminal
        ("prod", "prod", True, None): "ok",
        ("prod", "prod", False, True): "ok (asked)",
        ("prod", "prod", False, False): "not confirmed",
        ("prod", "prod", False, None): "re-run with --yes",
    }
    assert {k: outcome(*k) for k in cases} == cases


def test_banner_names_the_cluster():
    assert guard.banner("k3d-dashi", "https://0.0.0.0:6550", "apply") == \
        "Cluster: k3d-dashi (https://0.0.0.0:6550, local k3d cluster) - apply"
    assert "NOT a local k3d cluster" in guard.banner("gke_x", "https://1.2.3.4", "apply")


def test_no_terminal_means_no_prompt(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert guard.terminal_confirm() is None
