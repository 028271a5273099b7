"""Matrices as terminal tables: sources as rows, numbered destination ports as
columns, and the key to those numbers. Shared by the offline check and the
live reports."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def columns(edges) -> list[tuple[str, int, str]]:
    """The destination ports of a matrix, in first-seen order."""
    return list(dict.fromkeys((e.dst, e.port, e.protocol) for e in edges))


def _col_name(dst: str, port: int, proto: str) -> str:
    return f"{dst} {port}/{proto}"


def matrix_table(edges, title: str, cell) -> Table:
    """Sources as rows, destination ports as numbered columns; ``cell(edge)``
    renders one edge (None where a source has no such edge)."""
    edges = list(edges)
    cols = columns(edges)
    by = {(e.src, e.dst, e.port, e.protocol): e for e in edges}
    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=False, box=None, header_style="bold",
                  padding=(0, 0), collapse_padding=True, min_width=len(title))
    table.add_column("from \\ to", no_wrap=True, max_width=28, overflow="ellipsis")
    # Destinations are numbered (the key is printed once below the tables):
    # full names as headers would make a 14 x 18 matrix too wide to read.
    for i, _ in enumerate(cols, 1):
        table.add_column(str(i), justify="center", no_wrap=True, min_width=3)
    for src in dict.fromkeys(e.src for e in edges):
        table.add_row(src, *[cell(by.get((src, dst, port, proto))) for dst, port, proto in cols])
    return table


def print_column_key(edges, console: Console) -> None:
    """The numbered destination columns of ``matrix_table``, packed per line."""
    cols = columns(edges)
    width = max(len(_col_name(*c)) for c in cols) + 5 if cols else 0
    per_line = max(1, (console.width or 80) // max(width, 1))
    keys = [f"{i:>2} {_col_name(*c)}".ljust(width) for i, c in enumerate(cols, 1)]
    for i in range(0, len(keys), per_line):
        console.print("".join(keys[i:i + per_line]).rstrip(), markup=False, highlight=False, soft_wrap=True,
                      style="dim")

