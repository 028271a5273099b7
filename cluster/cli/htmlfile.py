"""``--html FILE``: a report's page written where the user asked."""

from __future__ import annotations

import os
from pathlib import Path

from cluster.errors import DashiError


def write_text(path: str, text: str) -> None:
    """An HTML page into ``path``; a file that cannot be written is one line, not a traceback."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise DashiError(f"--html: cannot write {path}: {e.strerror or e}") from None


def write_html(path: str, page) -> None:
    """Render ``page`` (``cluster.policy.htmlreport.pages.Page``) into ``path``."""
    from cluster.policy.htmlreport.render import render

    write_text(path, render(page))


def link_from(markdown_path: str | None, html_path: str) -> str:
    """How a Markdown file links the HTML page beside it: relative to the
    Markdown's directory (or the path as given, for Markdown on stdout)."""
    if not markdown_path:
        return html_path
    return os.path.relpath(os.path.abspath(html_path), os.path.dirname(os.path.abspath(markdown_path)))
