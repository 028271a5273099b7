"""`network-policies-up --html` on a real cluster: the page a real rollout
writes, read back against the JSON of the same run and, where Chromium is
installed, looked at in it. Kept short (the environments profile up to
allow-dns, then back to its baseline): about half a minute."""

from __future__ import annotations

import json
import os
import time
from html.parser import HTMLParser

import pytest

from support.availability import required
from support.browser import CHROMIUM, Browser

pytestmark = pytest.mark.e2e


class _Page(HTMLParser):
    """Each section's heading and its cells' data- attributes."""

    def __init__(self):
        super().__init__()
        self.sections: list[tuple[str, list[dict]]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append((a["data-heading"], []))
        elif tag == "g" and a.get("class") == "cell":
            self.sections[-1][1].append(a)


def test_a_real_rollout_writes_its_page(e2e_cluster, tmp_path):
    ctx = e2e_cluster.context
    t0 = time.monotonic()
    prep = e2e_cluster.inv("prepare", "--context", ctx, "--profile", "environments", "--yes")
    assert prep.returncode == 0, prep.stdout + prep.stderr
    base = e2e_cluster.inv("rollback", "--profile", "environments", "--to", "baseline", "--context", ctx, "--yes")
    assert base.returncode == 0, base.stdout + base.stderr
    t1 = time.monotonic()
    page = tmp_path / "report.html"
    up = e2e_cluster.inv("network-policies-up", "--profile", "environments", "--until", "allow-dns", "--context",
                         ctx, "--yes", "--json", "--html", str(page))
    assert up.returncode == 0, up.stdout + up.stderr
    data = json.loads(up.stdout)
    assert f"HTML report: {page}" in up.stderr

    parsed = _Page()
    parsed.feed(page.read_text(encoding="utf-8"))
    parsed.close()
    assert [h for h, _ in parsed.sections] == ["step 1/3 default-deny", "step 2/3 allow-dns"] == [
        v["purpose"] for v in data["verifications"]]
    for (_, cells), v in zip(parsed.sections, data["verifications"]):
        edges = {(e["src"], e["dst"], str(e["port"]), e["protocol"]): e for e in v["report"]["edges"]}
        assert len(cells) == len(edges) == 113
        for c in cells:
            e = edges[(c["data-src"], c["data-dst"], c["data-port"], c["data-protocol"])]
            # what the live probe saw, and that it agreed: as the JSON says
            assert c["data-probe"] == e["kind"] and c["data-problem"] == ("yes" if e["problems"] else "no")
        assert all(c["data-problem"] == "no" for c in cells)
    print(f"{e2e_cluster.lane}: prepare + baseline {t1 - t0:.1f} s, two steps with --html {time.monotonic() - t1:.1f} s")

    if required("browser") or os.access(CHROMIUM, os.X_OK):
        with Browser() as b:
            b.open(page)
            assert b.requests == [page.resolve().as_uri()]
            assert b.evaluate("document.documentElement.scrollWidth") <= 1280
            b.screenshot(tmp_path / "report.png", full_page=True)

    down = e2e_cluster.inv("rollback", "--profile", "environments", "--to", "baseline", "--context", ctx, "--yes")
    assert down.returncode == 0, down.stdout + down.stderr
