"""The HTML reports as a person sees them: written by the commands, loaded in
headless Chromium (Debian's package) at 1280 px wide, screenshotted, and
read back from the rendered page: every step is there, every cell sits in
its source's row and its port's column with the mark the JSON of the same
run implies, nothing runs past the window or out of its drawing, and the
page asks the network for nothing.

``DASHI_SCREENSHOTS=DIR`` also writes the top of each page there, as README
shows them (docs/images/).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from cluster.cli.rollout import up as cli_up
from cluster.errors import VerificationFailed
from cluster.policy.profile import MANIFESTS_DIR, load_profile
from support.browser import Browser, chromium_or_skip
from support.cli_process import run
from support.manifest_trees import SERVING_INTO_CATALOG
from support.rollout_world import RolloutWorld
from support.scratch_repo import commit, new_repo

pytestmark = pytest.mark.integration  # the pages opened in headless Chromium

WIDTH = 1280

# Each section of the page, its cells with their data and where they sit,
# and whatever is cut off or runs past the window.
READ_PAGE = r"""(() => {
  const inside = (r, box) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5 &&
                             r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
  const out = {width: innerWidth, scrollWidth: document.documentElement.scrollWidth, sections: [],
               verdict: document.querySelector('.verdict').dataset.ok,
               tiles: [...document.querySelectorAll('nav.tiles .tile-name')].map(e => e.textContent)};
  for (const s of document.querySelectorAll('main section')) {
    const sec = {heading: s.dataset.heading, status: s.className, cells: [], clipped: [], scaled: false};
    const svg = s.querySelector('svg.grid');
    if (svg) {
      const box = svg.getBoundingClientRect();
      sec.scaled = Math.abs(box.width - svg.width.baseVal.value) > 0.5;
      const cols = {}, rows = {};
      for (const t of svg.querySelectorAll('rect.coltick')) { const r = t.getBoundingClientRect(); cols[t.dataset.col] = [r.left, r.right]; }
      for (const t of svg.querySelectorAll('text.rowlabel')) { const r = t.getBoundingClientRect(); rows[t.dataset.row] = [r.top, r.bottom]; }
      for (const t of svg.querySelectorAll('text')) { if (!inside(t.getBoundingClientRect(), box)) sec.clipped.push(t.textContent); }
      for (const g of svg.querySelectorAll('g.cell')) {
        const r = g.querySelector('rect.bg').getBoundingClientRect(), d = g.dataset;
        const cx = (r.left + r.right) / 2, cy = (r.top + r.bottom) / 2;
        const col = cols[`${d.dst} ${d.port}/${d.protocol}`], row = rows[d.src];
        sec.cells.push({key: [d.src, d.dst, +d.port, d.protocol], mark: d.mark, change: d.change, probe: d.probe,
                        problem: d.problem === 'yes', title: g.querySelector('title').textContent,
                        placed: !!col && !!row && col[0] <= cx && cx <= col[1] && row[0] <= cy && cy <= row[1],
                        shown: r.width >= 20 && r.height >= 16 && inside(r, box)});
      }
    }
    out.sections.push(sec);
  }
  out.overflowing = [...document.body.querySelectorAll('*')]
    .filter(e => !e.closest('svg.defs') && e.getBoundingClientRect().right > innerWidth + 0.5)
    .map(e => e.tagName + ' ' + e.getAttribute('class'));
  return out;
})()"""


@pytest.fixture(scope="module")
def browser():
    chromium_or_skip()
    with Browser(width=WIDTH, height=900) as b:
        yield b


def look(browser: Browser, page: Path, tmp_path: Path, name: str, readme: str | None = None) -> dict:
    """Load the page, screenshot it at 1280 px, and read what it shows.
    ``readme``: the part README shows, the element a selector selects, or
    with "to:" before it, the page from its top to that element's end."""
    browser.open(page)
    assert browser.requests == [page.resolve().as_uri()], "the page fetched something besides itself"
    shot = browser.screenshot(tmp_path / f"{name}.png", full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("DASHI_SCREENSHOTS") and readme:
        # Laid out at 1280 px, pictured at 3/4 of that: GitHub shows README
        # images at most about 900 px wide.
        to = readme.removeprefix("to:") if readme.startswith("to:") else None
        top = browser.evaluate(f"document.querySelector({json.dumps(to)}).getBoundingClientRect().bottom"
                               " + scrollY + 8") if to else None
        browser.screenshot(Path(os.environ["DASHI_SCREENSHOTS"]) / f"{name}.png", selector=None if to else readme,
                           top=top, scale=0.75)
    seen = browser.evaluate(READ_PAGE)
    # Nothing cut off at 1280 px: no sideways scrolling, no element past the
    # window's edge, every label inside its drawing, every grid at full size.
    assert seen["width"] == WIDTH and seen["scrollWidth"] <= WIDTH
    assert seen["overflowing"] == []
    for sec in seen["sections"]:
        assert sec["clipped"] == [], sec["heading"]
        assert not sec["scaled"], f"{sec['heading']}: the grid was shrunk to fit"
        assert all(c["placed"] and c["shown"] for c in sec["cells"]), sec["heading"]
    return seen


def key(e: dict) -> tuple:
    return (e["src"], e["dst"], e["port"], e["protocol"])


def intent_mark(predicted: bool, intended: bool | None) -> str:
    if intended is None or predicted == intended:
        return "allowed" if predicted else "blocked"
    return "unintended" if predicted else "missing"


def cells_of(section: dict) -> dict[tuple, dict]:
    return {tuple(c["key"]): c for c in section["cells"]}


# -- policies-check ------------------------------------------------------------


def test_the_dashi_check_report_in_a_browser(browser, tmp_path):
    page = tmp_path / "policies-check.html"
    proc = run("policies-check", "--html", str(page), "--json", cli="dashi")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert proc.stderr.strip() == f"HTML report: {page}"
    seen = look(browser, page, tmp_path, "policies-check", readme="#step-3")

    assert seen["verdict"] == "yes"
    steps = data["steps"]
    assert [s["heading"] for s in seen["sections"]] == [f"Step {s['index']}: {s['step']}" for s in steps] + [
        "The final matrix against the intended matrix"]
    assert seen["tiles"] == [s["heading"] for s in seen["sections"]]
    for step, sec in zip(steps, seen["sections"]):
        cells = cells_of(sec)
        assert set(cells) == {key(e) for e in step["edges"]}
        opened, closed = {key(e) for e in step["opened"]}, {key(e) for e in step["closed"]}
        for e in step["edges"]:
            c = cells[key(e)]
            assert c["mark"] == intent_mark(e["predicted"], e["intended"])
            assert c["change"] == ("opened" if key(e) in opened else "closed" if key(e) in closed else "")
            assert [line.strip() for line in e["explanation"][1:]] == c["title"].splitlines()[-2:]
    # allow-platform opens exactly the S3 edges the matrix gives it, highlighted on its grid
    platform = cells_of(seen["sections"][2])
    assert sorted(k for k, c in platform.items() if c["change"] == "opened") == sorted(
        key(e) for e in steps[2]["opened"])
    assert ("dashi-data/prefect-worker", "dashi-platform/rustfs", 9000, "TCP") in {key(e) for e in steps[2]["opened"]}


# -- policies-diff ----------------------------------------------------------------


def test_a_diff_in_a_browser(browser, tmp_path):
    """A pull request that moves the catalog's database rule to a port nothing
    listens on (closing the STAC API's edge to it) and lets serving into the
    catalog API, between its two commits."""
    repo = new_repo(tmp_path / "repo")
    shutil.copytree(MANIFESTS_DIR / "dashi", repo / "dashi")
    commit(repo, "the dashi profile")
    internal = repo / "dashi" / "policies" / "05-allow-catalog-internal.yaml"
    internal.write_text(internal.read_text().replace("port: 5432", "port: 5433"))
    platform = repo / "dashi" / "policies" / "03-allow-platform.yaml"
    platform.write_text(platform.read_text() + SERVING_INTO_CATALOG)
    commit(repo, "serving reads the catalog")
    page, md = tmp_path / "policies-diff.html", tmp_path / "policies-diff.md"
    proc = run("policies-diff", "--git", "HEAD~1:dashi", "HEAD:dashi", "--repo", str(repo), "--format", "json",
               "--html", str(page), "--markdown", str(md), cli="dashi")
    assert proc.returncode == 3, proc.stderr  # it opens edges the intended matrix does not allow
    data = json.loads(proc.stdout)
    assert "[HTML report](<policies-diff.html>)" in md.read_text()
    seen = look(browser, page, tmp_path, "policies-diff", readme="to:figure")

    assert seen["verdict"] == "no"
    [sec] = seen["sections"]
    cells = cells_of(sec)
    assert set(cells) == {key(e) for e in data["matrix"]}
    for e in data["matrix"]:
        c = cells[key(e)]
        want = {(False, True): "opened", (True, False): "closed", (True, True): "allowed",
                (False, False): "blocked"}[(e["before"], e["after"])]
        assert c["mark"] == want
        assert c["problem"] == ((want == "opened" and e["intended"] is False) or (want == "closed" and e["intended"]))
    assert {k for k, c in cells.items() if c["mark"] == "opened"} == {key(e) for e in data["opened"]} == {
        ("dashi-serving/titiler", "dashi-catalog/stac-fastapi", 8080, "TCP"),
        ("dashi-serving/titiler", "dashi-catalog/stac-fastapi", 9100, "TCP")}
    assert {k for k, c in cells.items() if c["mark"] == "closed"} == {
        ("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP")}
    assert browser.evaluate("[...document.querySelectorAll('.finding h3')].map(e => e.textContent)") == [
        "Policies added", "Policies removed", "Policies changed", "Opened (2)", "Closed (1)"]
    listed = browser.evaluate("[...document.querySelectorAll('.finding')].slice(0, 3)"
                              ".map(f => [...f.querySelectorAll('pre')].map(e => e.textContent))")
    assert listed == [data["policies"]["added"], ["none"], data["policies"]["changed"]]
    assert data["policies"]["removed"] == [] and len(data["policies"]["changed"]) == 1


# -- a failed rollout -------------------------------------------------------------


def test_a_failed_rollout_s_evidence_in_a_browser(browser, tmp_path, monkeypatch):
    """A port typo in allow-catalog-internal, rolled out on the fake cluster:
    steps 1-4 verify, step 5 fails and is rolled back; the evidence page
    shows the run up to the failure, the --html page the restore too."""
    broken = tmp_path / "dashi"
    shutil.copytree(MANIFESTS_DIR / "dashi", broken)
    step5 = broken / "policies" / "05-allow-catalog-internal.yaml"
    step5.write_text(step5.read_text().replace("port: postgres}", "port: 5433}"))
    world = RolloutWorld(tmp_path, profile=load_profile(broken))
    monkeypatch.setenv("DASHI_STATE_DIR", str(world.root))
    run_page = tmp_path / "network-policies-up.html"
    with pytest.raises(VerificationFailed):
        cli_up(str(broken), kube_factory=lambda context: world.kube, html_path=str(run_page),
               out=Console(file=open(os.devnull, "w"), width=200))
    [evidence] = (world.pdir / "evidence").glob("*.html")
    failed = json.loads(evidence.with_suffix(".json").read_text())
    check = run("policies-check", "-p", str(broken), "--json", cli="dashi")
    predicted = json.loads(check.stdout)["steps"]

    seen = look(browser, evidence, tmp_path, "rollout-evidence", readme="#verification-5")
    assert seen["verdict"] == "no"
    headings = [f"step {k}/9 {s.name}" for k, s in enumerate(world.profile.steps[:5], 1)]
    assert [s["heading"] for s in seen["sections"]] == headings
    assert [s["status"] for s in seen["sections"]] == ["step step-pass"] * 4 + ["step step-fail"]
    # the failed step, cell by cell, as its evidence .json says
    cells = cells_of(seen["sections"][-1])
    assert set(cells) == {key(e) for e in failed["edges"]}
    for e in failed["edges"]:
        c = cells[key(e)]
        assert c["mark"] == intent_mark(e["predicted"], e["intended"])
        assert (c["probe"], c["problem"], c["change"]) == (e["kind"], bool(e["problems"]), e["change"] or "")
    assert [k for k, c in cells.items() if c["problem"]] == [
        ("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP")]
    assert cells[("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP")]["mark"] == "missing"
    # the verified steps: the live marks are the offline check's predictions
    for sec, step in zip(seen["sections"][:4], predicted[:4]):
        cells = cells_of(sec)
        assert {k for k, c in cells.items() if c["mark"] == "allowed"} == {key(e) for e in step["allowed"]}

    seen = look(browser, run_page, tmp_path, "network-policies-up")
    assert [s["heading"] for s in seen["sections"]] == headings + ["restored: after allow-catalog (4/9)"]
    assert [s["status"] for s in seen["sections"]][-2:] == ["step step-fail", "step step-pass"]
