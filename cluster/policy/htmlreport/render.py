"""A page through the Jinja2 templates in ``templates/`` (package data, in
the wheel), autoescaped: a policy, pod or file name is text on the page,
never markup."""

from __future__ import annotations

from functools import lru_cache

from cluster.policy.htmlreport.pages import Page


@lru_cache(maxsize=1)
def _environment():
    # Imported here: only a run that writes a page pays for Jinja2.
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("cluster.policy.htmlreport", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def render(page: Page) -> str:
    """The page as one self-contained HTML document."""
    return _environment().get_template("report.html.j2").render(page=page)
