"""A matrix laid out for the page: sources as rows, destination ports as
columns, both grouped by namespace in the order they first appear, every
cell placed in pixels for the inline SVG the template draws.

Column labels are set at 45 degrees, so a column stays one cell wide
whatever its name; each namespace of destinations opens with a slot whose
label is the namespace, each namespace of sources with a row of its own.
Text widths are estimated (the page names no font, so the reader's
sans-serif draws it): generously, since a label that runs past its room
is cut off by the drawing's edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.policy.htmlreport.cells import CellView

CELL_W = 34
CELL_H = 26
SLOT_W = 22  # the namespace slot before each group of columns
CHAR_W = 7.8  # an upper estimate of one character of the 13 px labels
LABEL_MAX = 34  # characters of a row label; longer ones end in "…"
PAD = 8
SIN45 = 0.7072
# A grid larger than this is not drawn: it would be thousands of pixels
# wide and tall, and tell nobody anything; the page lists what differs.
MAX_CELLS = 40_000


@dataclass(frozen=True)
class Label:
    text: str
    x: float
    y: float
    key: str = ""  # the endpoint (rows) or "dst port/protocol" (columns) it labels
    title: str = ""


@dataclass(frozen=True)
class PlacedCell:
    view: CellView
    x: float
    y: float


@dataclass(frozen=True)
class Grid:
    width: float
    height: float
    left: float  # where the first column starts
    top: float  # where the first row starts
    rows: list[Label]  # one per source, at the row's text baseline
    row_groups: list[Label]  # one per namespace of sources
    columns: list[Label]  # one per destination port, x at the column's left edge
    column_groups: list[Label]  # one per namespace of destinations, at its slot
    cells: list[PlacedCell]

    @property
    def cell_w(self) -> int:
        return CELL_W

    @property
    def cell_h(self) -> int:
        return CELL_H


def _namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else ""


def _name(key: str) -> str:
    return key.split("/", 1)[1] if "/" in key else key


def _grouped(keys) -> dict[str, list]:
    """Keys by namespace, namespaces and keys in first-seen order."""
    out: dict[str, list] = {}
    for k in dict.fromkeys(keys):
        out.setdefault(_namespace(k[0] if isinstance(k, tuple) else k), []).append(k)
    return out


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "\u2026"


def col_key(dst: str, port: int, protocol: str) -> str:
    return f"{dst} {port}/{protocol}"


def layout(cells: list[CellView]) -> Grid | None:
    """The grid of ``cells`` (None: too large to draw, or empty)."""
    if not cells or len(cells) > MAX_CELLS:
        return None
    sources = _grouped(c.src for c in cells)
    targets = _grouped((c.dst, c.port, c.protocol) for c in cells)
    row_texts = [ns for ns in sources] + ["  " + _name(s) for group in sources.values() for s in group]
    left = PAD + CHAR_W * min(LABEL_MAX, max(len(t) for t in row_texts)) + PAD
    col_texts = [f"{_name(d)} {p}/{proto}" for group in targets.values() for d, p, proto in group] + list(targets)
    top = PAD + SIN45 * CHAR_W * max(len(t) for t in col_texts) + CELL_H / 2

    columns, column_groups, x_of = [], [], {}
    x = left
    for ns, group in targets.items():
        column_groups.append(Label(ns or "(no namespace)", x + SLOT_W / 2, top - 6, ns))
        x += SLOT_W
        for d, p, proto in group:
            key = col_key(d, p, proto)
            columns.append(Label(f"{_name(d)} {p}/{proto}", x, top - 6, key, key))
            x_of[(d, p, proto)] = x
            x += CELL_W
    right = x

    rows, row_groups, y_of = [], [], {}
    y = top
    for ns, group in sources.items():
        row_groups.append(Label(_short(ns or "(no namespace)", LABEL_MAX), PAD, y + CELL_H * 0.7, ns, ns))
        y += CELL_H
        for s in group:
            rows.append(Label(_short(_name(s), LABEL_MAX - 2), PAD + 2 * CHAR_W, y + CELL_H * 0.7, s, s))
            y_of[s] = y
            y += CELL_H
    placed = [PlacedCell(c, x_of[(c.dst, c.port, c.protocol)], y_of[c.src]) for c in cells]
    # The last column's label runs up and to the right of the grid.
    width = right + SIN45 * CHAR_W * max(len(t) for t in col_texts) + PAD
    return Grid(round(width), round(y + PAD), left, top, rows, row_groups, columns, column_groups, placed)
