"""Matrices as terminal tables: sources as rows, numbered destination ports as
columns, and the key to those numbers. Shared by the offline check and the
live reports."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.control import strip_control_codes
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

FIRST_MAX = 28  # the source column's widest; longer names end in "…"
FIRST_MIN = 12  # its narrowest, on a console too narrow for the whole matrix
CELL_MIN = 3


def columns(edges) -> list[tuple[str, int, str]]:
    """The destination ports of a matrix, in first-seen order."""
    return list(dict.fromkeys((e.dst, e.port, e.protocol) for e in edges))


def _col_name(dst: str, port: int, proto: str) -> str:
    return f"{dst} {port}/{proto}"


def matrix_table(edges, title: str, cell):
    """Sources as rows, destination ports as numbered columns; ``cell(edge)``
    renders one edge (None where a source has no such edge) as a rich
    ``Text``. A ``str`` is drawn as the plain text it is: no markup is read
    (a cell of "[green]✓[/green]" would show as that, cut to its width).

    Destinations are numbered (the key is printed once below the tables):
    full names as headers would make a 14 x 18 matrix too wide to read."""
    edges = list(edges)
    cols = columns(edges)
    by = {(e.src, e.dst, e.port, e.protocol): e for e in edges}
    srcs = list(dict.fromkeys(e.src for e in edges))
    rows = [(src, [cell(by.get((src, dst, port, proto))) for dst, port, proto in cols]) for src in srcs]
    return Grid(title, len(cols), rows)


class Grid:
    """A matrix drawn the way a borderless rich Table with no padding draws
    it (left title, bold header, centred cells at least three wide), but
    laid out here: a Table measures every cell through the console, about
    30 ms for one 14 x 18 matrix, and a rollout prints two per step. On a
    console narrower than the matrix the source column gives up its width
    (down to FIRST_MIN, names ending in "…"), so the dashi profile's 18
    columns fit an 80-column terminal. Where the layout would need what
    only the Table does (a title wider than the matrix, a console too
    narrow even so) the Table draws it."""

    def __init__(self, title: str, ncols: int, rows: list[tuple[str, list]]):
        self.title, self.ncols = title, ncols
        self.rows = [(src, [c if isinstance(c, Text) else Text(str(c or "")) for c in cells]) for src, cells in rows]
        self.headers = [str(i) for i in range(1, ncols + 1)]
        self.first = min(FIRST_MAX, max([len("from \\ to")] + [len(src) for src, _ in self.rows]))
        self.widths = [max([CELL_MIN, len(h)] + [cells[j].cell_len for _, cells in self.rows])
                       for j, h in enumerate(self.headers)]
        self.width = self.first + sum(self.widths)

    def table(self) -> Table:
        table = Table(title=self.title, title_justify="left", show_lines=False, pad_edge=False, box=None,
                      header_style="bold", padding=(0, 0), collapse_padding=True, min_width=len(self.title))
        table.add_column("from \\ to", no_wrap=True, max_width=FIRST_MAX, overflow="ellipsis")
        for h in self.headers:
            table.add_column(h, justify="center", no_wrap=True, min_width=CELL_MIN)
        for src, cells in self.rows:
            table.add_row(src, *cells)
        return table

    def _first(self, options: ConsoleOptions) -> int | None:
        """The source column's width on this console; None where the Table must draw."""
        first = self.first
        if self.width > options.max_width:
            first = max(FIRST_MIN, first - (self.width - options.max_width))
        width = first + sum(self.widths)
        return first if len(self.title) <= width <= options.max_width else None

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        first = self._first(options)
        if first is None:
            return Measurement.get(console, options, self.table())
        return Measurement(first + sum(self.widths), first + sum(self.widths))

    def _lines(self, first_width: int) -> list[list]:
        """The matrix as lines of pieces: (text, style) with style "" for
        none, or a cell's own Text (its style, and any spans it has)."""
        def first(label: str) -> str:
            return (label if len(label) <= first_width else label[:first_width - 1] + "…").ljust(first_width)

        width = first_width + sum(self.widths)
        lines = [[(self.title.ljust(width), "table.title")],
                 [(first("from \\ to"), "bold")] + [(_centre(h, w), "bold") for h, w in zip(self.headers, self.widths)]]
        for src, cells in self.rows:
            line = [(first(src), "")]
            for c, w in zip(cells, self.widths):
                left = (w - c.cell_len) // 2  # a cell's style covers its padding, as in a Table
                line += [(" " * left, c.style), c, (" " * (w - c.cell_len - left), c.style)]
            lines.append(line)
        return lines

    @staticmethod
    def _text(lines) -> Text:
        out = Text(no_wrap=True, overflow="ignore")
        for i, line in enumerate(lines):
            if i:
                out.append("\n")
            for piece in line:
                if isinstance(piece, Text):
                    out.append_text(piece)
                else:
                    out.append(*piece)
        return out

    def _segments(self, console: Console, lines):
        """What rendering ``_text(lines)`` draws, without rich's general text
        layout: one segment per run of pieces in the same style (a cell and
        its padding, neighbouring cells alike), so the console has a third
        as many to measure and write."""
        get_style = console.get_style
        null = Style.null()
        styles: dict = {"": null}
        for i, line in enumerate(lines):
            if i:
                yield Segment("\n")
            run, run_style = "", null
            for text, style in map(_pair, line):
                if not text:
                    continue
                st = styles.get(style)
                if st is None:
                    st = styles[style] = Style.combine((null, get_style(style, default=null)))
                if st != run_style:
                    if run:
                        yield Segment(run, run_style)
                    run, run_style = "", st
                run += text
            if run:
                yield Segment(run, run_style)
        yield Segment("\n")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        first = self._first(options)
        if first is None:
            yield self.table()
            return
        lines = self._lines(first)
        # The segments are those of the Text, where its layout leaves the
        # lines as they are (the Text is drawn no_wrap, overflow "ignore").
        if (options.justify in (None, "default") or first + sum(self.widths) == options.max_width) \
                and not any(c.spans for _, cells in self.rows for c in cells) \
                and _plain_line("".join(text for line in lines for text, _ in map(_pair, line))):
            yield from self._segments(console, lines)
        else:
            yield self._text(lines)


def _pair(piece) -> tuple[str, object]:
    """A piece of ``Grid._lines`` as (text, style); only cells without spans get here."""
    return (piece.plain, piece.style) if isinstance(piece, Text) else piece


def _plain_line(text: str) -> bool:
    """No tab to expand and no control code to strip (what rich.text.Text does to them)."""
    return "\t" not in text and strip_control_codes(text) == text


def _centre(text: str, width: int) -> str:
    left = (width - len(text)) // 2
    return " " * left + text + " " * (width - len(text) - left)


def print_column_key(edges, console: Console) -> None:
    """The numbered destination columns of ``matrix_table``, packed per line."""
    cols = columns(edges)
    width = max(len(_col_name(*c)) for c in cols) + 5 if cols else 0
    per_line = max(1, (console.width or 80) // max(width, 1))
    keys = [f"{i:>2} {_col_name(*c)}".ljust(width) for i, c in enumerate(cols, 1)]
    for i in range(0, len(keys), per_line):
        console.print("".join(keys[i:i + per_line]).rstrip(), markup=False, highlight=False, soft_wrap=True,
                      style="dim")

