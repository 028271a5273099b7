"""Every reporting task as a person sees it: run in a real terminal (a tmux
pane 80 or 160 columns wide, read back with capture-pane) and piped, and
compared with golden text in tests/cli/golden/, which a person has read.

The goldens hold what the screen shows, wrapped lines and all, with the
exit code as the last line. Colours are not in them (capture-pane without
-e); what colour cannot carry alone, the marks (✓ · ✗ !), is.

When a change to the output is meant, regenerate the files and read every
changed one before committing it:

    DASHI_GOLDEN_UPDATE=1 python -m pytest -p no:xdist tests/cli/test_terminal.py
    git diff tests/cli/golden/
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from support import ROOT, terminal
from support.availability import unavailable

pytestmark = pytest.mark.integration  # every view drawn in a real tmux pane

GOLDEN = Path(__file__).parent / "golden"
BIN = Path(sys.executable).parent
UPDATE = os.environ.get("DASHI_GOLDEN_UPDATE") == "1"
ALL = (80, 160, "piped")


@dataclass
class View:
    name: str
    argv: list[str]
    views: tuple = ALL
    in_tmp: bool = False  # run in a scratch directory that ``setup`` fills, else in the clone
    setup: Callable[[Path], None] | None = None
    # What changes from run to run, and what the golden holds instead.
    varies: list[tuple[str, str]] = field(default_factory=list)


def _inv(*args: str) -> list[str]:
    return [str(BIN / "inv"), *args]


def _dashi(*args: str) -> list[str]:
    return [str(BIN / "dashi"), *args]


def _fake(profile: str, steps: int, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "tests/support/fake_cli.py"), profile, str(steps), *args]


def _diff_trees(tmp: Path) -> None:
    """A pull request that drops the pod selector from develop's rule: the
    debug pod in ingress-nginx gets in (the training chapter's incident)."""
    shutil.copytree(ROOT / "manifests/environments", tmp / "old")
    shutil.copytree(ROOT / "manifests/environments", tmp / "new")
    step = tmp / "new/policies/03-allow-from-ingress-controller.yaml"
    text = step.read_text()
    selector = ("          podSelector:\n            matchLabels: {app.kubernetes.io/name: ingress-nginx, "
                "app.kubernetes.io/component: controller}\n")
    assert selector in text
    step.write_text(text.replace(selector, "", 1))


def _typo(tmp: Path) -> None:
    """A port typo in step 3: the dry run fails before any cluster sees it."""
    shutil.copytree(ROOT / "manifests/environments", tmp / "environments")
    step = tmp / "environments/policies/03-allow-from-ingress-controller.yaml"
    step.write_text(step.read_text().replace("port: http}", "port: 8081}", 1))


# Each as wide as what it stands for, so the terminal wraps the golden
# text where it wraps the real one.
UID = (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<the kube-system uid, 36 characters>")
WHEN = (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "YYYY-MM-DDThh:mm:ssZ")
SECONDS = (r"\b\d\.\d s\)", "s.s s)")  # the fake answers in well under 10 s

VIEWS = [
    View("policies-check.dashi", _inv("policies-check")),
    View("policies-check.environments", _inv("policies-check", "-p", "environments")),
    View("policies-check.without-catalog-internal", _inv("policies-check", "--skip", "allow-catalog-internal")),
    View("policies-check.strict", _inv("policies-check", "--strict", "-q"), views=(80,)),
    View("policies-check.port-typo", _dashi("policies-check", "-p", "environments"), in_tmp=True, setup=_typo),
    # Piped on into a pager in the same terminal: the output takes the terminal's width.
    View("policies-check.through-head", ["sh", "-c", f"{shlex.join(_inv('policies-check'))} | head -40"],
         views=(80,)),
    View("explain.blocked", _inv("explain", "dashi-serving/titiler", "dashi-catalog/stac-fastapi", "8080"),
         views=(80, "piped")),
    View("explain.allowed", _inv("explain", "dashi-data/prefect-worker", "dashi-platform/rustfs", "s3"),
         views=(80,)),
    View("reachability.helm-shop", _inv("reachability", "-r", "tests/fixtures/helm-shop", "-N", "shop", "-f",
                                        "table")),
    View("reachability.environments", _inv("reachability", "-r", "manifests/environments", "-f", "table"),
         views=(80, 160)),
    View("policies-diff.debug-pod-gets-in", _dashi("policies-diff", "old", "new", "-p", "environments"),
         in_tmp=True, setup=_diff_trees),
    View("network-policies-up.dry-run.environments", _inv("network-policies-up", "--dry-run", "-p", "environments")),
    View("network-policies-up.dry-run.dashi", _inv("network-policies-up", "--dry-run"), views=(160,)),
    View("network-policies-up.dry-run.port-typo", _dashi("network-policies-up", "--dry-run", "-p", "environments"),
         views=(80,), in_tmp=True, setup=_typo),
    View("flows-check.hubble-sample", _inv("flows-check", "--flows", "tests/fixtures/flows/hubble-observe.jsonl"),
         views=(80, "piped")),
    View("matrix-from-flows.calico-sample", _inv("matrix-from-flows", "--flows", "tests/fixtures/flows/calico-flows.log"),
         views=(80,)),
    View("smoke.environments", _fake("environments", 2, "smoke", "-p", "environments"), varies=[SECONDS]),
    View("status.environments", _fake("environments", 3, "status", "-c", "k3d-dashi", "-p", "environments"),
         views=(80, "piped"), varies=[UID, WHEN]),
]


def _render(view: View, how, tmp: Path) -> str:
    cwd = tmp / "work" if view.in_tmp else ROOT
    env = terminal.user_env(DASHI_STATE_DIR=str(tmp / f"state-{how}"))
    os.makedirs(env["DASHI_STATE_DIR"])
    text = terminal.piped(view.argv, cwd=cwd, env=env) if how == "piped" else \
        terminal.screen(view.argv, how, cwd=cwd, env=env)
    for pattern, instead in view.varies:
        text = re.sub(pattern, instead, text)
    return text


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    why = terminal.available()
    if why:
        unavailable("terminal", why)
    jobs = []
    for view in VIEWS:
        tmp = tmp_path_factory.mktemp(view.name)
        if view.setup:
            (tmp / "work").mkdir()
            view.setup(tmp / "work")
        jobs += [(view, how, tmp) for how in view.views]
    # Each render is a process (and a tmux server): a few at a time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = list(pool.map(lambda job: _render(*job), jobs))
    return {(view.name, how): text for (view, how, _), text in zip(jobs, texts)}


def _golden(name: str, how) -> Path:
    return GOLDEN / f"{name}.{how}.txt"


@pytest.mark.parametrize("view, how", [(v, h) for v in VIEWS for h in v.views],
                         ids=[f"{v.name}.{h}" for v in VIEWS for h in v.views])
def test_the_screen_matches_its_golden_text(rendered, view, how):
    text = rendered[(view.name, how)]
    path = _golden(view.name, how)
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden text {path}: DASHI_GOLDEN_UPDATE=1 writes it (then read it)"
    want = path.read_text()
    assert text == want, "\n" + "".join(difflib.unified_diff(
        want.splitlines(True), text.splitlines(True), f"{path.name} (golden)", "the screen now"))


def test_every_golden_file_belongs_to_a_view():
    wanted = {_golden(v.name, h).name for v in VIEWS for h in v.views}
    assert {p.name for p in GOLDEN.glob("*.txt")} == wanted


def test_no_line_is_wider_than_its_terminal(rendered):
    for (name, how), text in rendered.items():
        if how != "piped":
            assert max(len(line) for line in text.splitlines()) <= how, (name, how)


def test_the_matrices_show_their_marks(rendered):
    """The defect this file was written for: markup handed to the matrix
    showed as '[dim…' in every cell."""
    for (name, how), text in rendered.items():
        assert "[dim" not in text and "[green" not in text and "[bold" not in text, (name, how)
    for how in ALL:
        # The ingress controller's row after step 3 with the port typo: its
        # intended edges to develop's frontend and backend (columns 1 and 2)
        # are blocked, staging's and production's (3-6) open.
        typo = rendered[("policies-check.port-typo", how)]
        row = [line for line in typo.splitlines() if line.startswith("ingress-nginx/ingress-nginx")][-1]
        assert row.split()[1:7] == ["!", "!", "✓", "✓", "✓", "✓"], (how, row)
        assert "✓" in rendered[("policies-check.dashi", how)] and "·" in rendered[("policies-check.dashi", how)]
