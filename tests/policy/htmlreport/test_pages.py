"""The HTML pages, read as text: built from the JSON dicts, one section per
step, a cell per edge with the mark the JSON implies, tooltips naming the
deciding policies, names escaped, nothing fetched. What a person sees in a
browser is tested in tests/cli/test_html_reports.py."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

from cluster.policy import analysis, render
from cluster.policy.diff import diff, load_side, to_dict, to_markdown
from cluster.policy.htmlreport import grid, pages
from cluster.policy.htmlreport.cells import CellView
from cluster.policy.htmlreport.render import render as render_page
from cluster.policy.profile import load_profile


class _Cells(HTMLParser):
    """Each section's cells as their data- attributes, and every <title> text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[dict]] = {}
        self.current = None
        self.titles: list[str] = []
        self._in_title = False
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.current = a["data-heading"]
            self.sections[self.current] = []
        elif tag == "g" and a.get("class") == "cell":
            self.sections[self.current].append(a)
        elif tag == "title":
            self._in_title = True
            self.titles.append("")
        for k in ("src", "href"):
            if k in a and not a[k].startswith("#"):
                self.urls.append(a[k])

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.titles[-1] += data


def parse(text: str) -> _Cells:
    p = _Cells()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def dashi_check() -> dict:
    return render.check_to_dict(analysis.check(load_profile("dashi")))


def test_the_check_page_has_every_step_and_a_cell_per_edge_marked_as_the_json_says(dashi_check):
    page = render_page(pages.check_page(dashi_check))
    cells = parse(page)
    steps = dashi_check["steps"]
    assert list(cells.sections) == [f"Step {s['index']}: {s['step']}" for s in steps] + [
        "The final matrix against the intended matrix"]
    for s in steps:
        got = {(c["data-src"], c["data-dst"], int(c["data-port"]), c["data-protocol"]): c
               for c in cells.sections[f"Step {s['index']}: {s['step']}"]}
        assert len(got) == len(s["edges"]) == 240
        opened = {(e["src"], e["dst"], e["port"], e["protocol"]) for e in s["opened"]}
        for e in s["edges"]:
            c = got[(e["src"], e["dst"], e["port"], e["protocol"])]
            want = {(True, True): "allowed", (False, False): "blocked",
                    (True, False): "unintended", (False, True): "missing"}[(e["predicted"], e["intended"])]
            assert c["data-mark"] == want
            assert (c["data-change"] == "opened") == ((e["src"], e["dst"], e["port"], e["protocol"]) in opened)
    # dashi's steps all do what they should: no problem anywhere
    assert 'data-problem="yes"' not in page
    assert cells.urls == []  # nothing to fetch: no script, stylesheet, font or image


def test_a_cell_s_tooltip_names_the_policies_that_decide_it(dashi_check):
    cells = parse(render_page(pages.check_page(dashi_check)))
    worker_s3 = [t for t in cells.titles if t.startswith("dashi-data/prefect-worker \u2192 dashi-platform/rustfs 9000/TCP")]
    assert len(worker_s3) == 9  # one per step
    assert worker_s3[0].splitlines()[1] == "blocked, as intended"
    last = worker_s3[-1].splitlines()
    assert last[1] == "allowed, as intended"
    assert any(line.startswith("egress of dashi-data/prefect-worker: allowed by dashi-data/") for line in last)
    assert any(line.startswith("ingress of dashi-platform/rustfs: allowed by dashi-platform/") for line in last)
    step3 = worker_s3[2].splitlines()
    assert step3[2] == "opened by this step"


def test_a_step_that_misses_its_edge_is_marked_and_explained(copy_dashi):
    step5 = copy_dashi / "policies" / "05-allow-catalog-internal.yaml"
    step5.write_text(step5.read_text().replace("port: postgres}", "port: 5433}"))
    data = render.check_to_dict(analysis.check(load_profile(copy_dashi)))
    page = render_page(pages.check_page(data))
    assert '<p class="verdict verdict-fail" data-ok="no">' in page
    problems = re.findall(r'<g class="cell" data-src="([^"]+)" data-dst="([^"]+)" data-port="(\d+)"[^>]*'
                          r'data-mark="(\w+)"[^>]*data-problem="yes"', page)
    # steps 5..9 each miss stac-fastapi -> pgstac:5432
    assert problems == [("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", "5432", "missing")] * 5
    assert "Differences from the step&#39;s intent" in page
    assert "BLOCKED: dashi-catalog/stac-fastapi -&gt; dashi-catalog/pgstac 5432/TCP" in page


def test_the_diff_page_marks_opened_and_closed_on_one_grid_with_the_policies(copy_dashi):
    old = load_side(load_profile("dashi").root)
    # The step's two policies replaced by one that selects no pod (an empty
    # step file is refused, as kubectl refuses to apply one).
    (copy_dashi / "policies" / "05-allow-catalog-internal.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: placeholder, namespace: dashi-catalog}\n"
        "spec: {podSelector: {matchLabels: {app: nothing}}, policyTypes: [Ingress]}\n")
    new = load_side(copy_dashi)
    d = to_dict(diff(old, new))
    page = render_page(pages.diff_page(d))
    cells = parse(page)
    [grid_cells] = cells.sections.values()
    marks = {(c["data-src"], c["data-dst"], int(c["data-port"]), c["data-protocol"]): c["data-mark"]
             for c in grid_cells}
    assert len(marks) == d["edges"] == 240
    assert marks[("dashi-catalog/stac-fastapi", "dashi-catalog/pgstac", 5432, "TCP")] == "closed"
    assert sorted(marks.values()).count("closed") == 1 and "opened" not in marks.values()
    assert sum(m == "allowed" for m in marks.values()) == d["unchanged"]["allowed"]
    assert len(d["policies"]["removed"]) == 2 and len(d["policies"]["added"]) == 1
    for name in d["policies"]["removed"] + d["policies"]["added"]:
        assert f"<li><pre>{name}</pre></li>" in page
    closed = [t for t in cells.titles if t.startswith("dashi-catalog/stac-fastapi \u2192 dashi-catalog/pgstac 5432")]
    assert closed[0].splitlines()[1] == "CLOSED: allowed before, blocked after (breaks intended traffic)"
    assert closed[0].splitlines()[2].startswith("before: egress of dashi-catalog/stac-fastapi: allowed by ")


def test_the_markdown_links_the_html_page(copy_dashi):
    old = load_side(load_profile("dashi").root)
    new = load_side(copy_dashi)
    md = to_markdown(diff(old, new), "https://ci.example/run/7#artifacts")
    assert "[HTML report](<https://ci.example/run/7#artifacts>)" in md
    assert "HTML report" not in to_markdown(diff(old, new))


def test_names_are_text_never_markup():
    cell = CellView("ns/<script>x</script>", "ns/b", 80, "TCP", mark="allowed", title="a <b> & \"c\"")
    page = render_page(pages.Page("<img src=x onerror=alert(1)>", "policies-check", True, "ok", [("k", "<i>")],
                                  [pages.with_grid(pages.Section("s", "<h>", True, "ok"), [cell])]))
    assert "<script>" not in page and "<img" not in page and "<i>" not in page and "<b>" not in page
    assert html.escape("<img src=x onerror=alert(1)>") in page
    assert "a &lt;b&gt; &amp; &#34;c&#34;" in page


def test_cells_sit_at_their_source_s_row_and_their_port_s_column():
    views = [CellView(s, d, p, "TCP", mark="blocked") for s in ("a/x", "b/y", "a/z") for d, p in
             (("c/q", 80), ("a/x", 9000), ("c/q", 443)) if s != d]
    g = grid.layout(views)
    rows = {r.key: r for r in g.rows}
    cols = {c.key: c for c in g.columns}
    assert [r.key for r in g.rows] == ["a/x", "a/z", "b/y"]  # grouped by namespace, first seen first
    assert [c.key for c in g.columns] == ["c/q 80/TCP", "c/q 443/TCP", "a/x 9000/TCP"]
    assert [x.text for x in g.row_groups] == ["a", "b"] and [x.text for x in g.column_groups] == ["c", "a"]
    for p in g.cells:
        assert p.x == cols[grid.col_key(p.view.dst, p.view.port, p.view.protocol)].x
        assert rows[p.view.src].y - grid.CELL_H < p.y < rows[p.view.src].y
    assert g.width > g.columns[-1].x + grid.CELL_W and g.height > max(p.y for p in g.cells) + grid.CELL_H


def test_a_matrix_too_large_to_draw_is_said_instead():
    n = int(grid.MAX_CELLS ** 0.5) + 1
    views = [CellView(f"a/s{i}", f"b/d{j}", 80, "TCP", mark="blocked") for i in range(n) for j in range(n)]
    section = pages.with_grid(pages.Section("s", "big", True, "ok"), views)
    assert section.grid is None and f"The matrix has {n * n} edges" in section.grid_note
