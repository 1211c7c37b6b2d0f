"""Reading a spreadsheet (.xlsx, .xlsm, .xlsb, .xls, .ods) as an input: one sheet, its
header row, and its rows as the records of a CSV, so that they take the same path as a
CSV's (typing, rejects, the merge).  Where a record came from is the row number as the
spreadsheet shows it (`book.xlsx sheet Prices row 17`).

Cells are written as a person sees them: a number to the 15 significant digits a
spreadsheet shows, in its shortest form (no trailing `.0`), dates and times in ISO form,
booleans as true/false, text as it is; a row with an error cell (#N/A) is a reject
(xlsxerrors.py finds them).  The sheet is read with python-calamine (Rust; see
docs/design.md, "Dependencies"), which loads the whole sheet before its first row: the rows
are then converted a batch at a time, column by column, and a batch with nothing to reject
goes to COPY without a Python loop over its rows.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import os
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import BinaryIO

from csvload.errors import InputError
from csvload.read import xlsxerrors
from csvload.read.chunks import Assembly, Chunk, Origin
from csvload.read.encoding import TextChecks
from csvload.read.source import Source, SourceOptions, _quote_row

SUFFIXES = (".xlsx", ".xlsm", ".xlsb", ".xls", ".ods")
# NUL: no sheet's text holds it in practice (PostgreSQL text cannot), so it joins a batch's
# cells in C; a batch whose cells hold one is written record by record instead.
_CELL = "\x00"


def is_workbook(path: str) -> bool:
    """Whether csvload reads path as a workbook: by its name's extension."""
    return path != "-" and path.lower().endswith(SUFFIXES)


# -- cells as a person sees them -------------------------------------------------------------


# A spreadsheet keeps and shows 15 significant digits of a number: a computed 19.99 may be
# stored as 19.990000000000002, which every spreadsheet shows as 19.99.
_DIGITS = "{:.15g}".format


def number(value: float) -> str:
    """A number as a spreadsheet shows it in full: to 15 significant digits, in the
    shortest form (19.99, 4 rather than 4.0) and without an exponent (1E+20 as
    100000000000000000000)."""
    if value == 0:
        return "0"  # -0.0 too
    text = _DIGITS(value)
    return format(Decimal(text), "f") if "e" in text else text


def _duration(value: datetime.timedelta) -> str:
    """A duration ([h]:mm:ss) as hours:minutes:seconds: 26:00:00."""
    micro = value // datetime.timedelta(microseconds=1)
    sign, micro = ("-", -micro) if micro < 0 else ("", micro)
    seconds, micro = divmod(micro, 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    text = f"{sign}{hours}:{minutes:02}:{seconds:02}"
    return f"{text}.{micro:06}".rstrip("0") if micro else text


def cell_text(value: object) -> str:
    """One cell's value as text."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is float:
        return number(value)  # type: ignore[arg-type]
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date too
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return _duration(value)
    return str(value)  # an int (from .xls and .ods)


def _column_text(column: Sequence[object]) -> Sequence[str]:
    """A batch's column of cells as text, in C where the column is all text or all floats
    (a price column: 0.5 s of Python calls for 500k rows, spared)."""
    kinds = set(map(type, column))
    if kinds <= {str}:
        return column  # type: ignore[return-value]
    if kinds == {float}:
        joined = _CELL.join(map(_DIGITS, column))
        # Exponents and -0.0 are rare: those columns go cell by cell.
        if "e" not in joined and f"{_CELL}-0{_CELL}" not in f"{_CELL}{joined}{_CELL}":
            return joined.split(_CELL)
    return [cell_text(c) for c in column]


def column_letter(index: int) -> str:
    """0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


class WorkbookSource(Source):
    """One sheet of a workbook, read as an input: use as a Source."""

    labelled = True

    def __init__(self, options: SourceOptions, stdin: BinaryIO | None = None):
        super().__init__(options, stdin)
        # Cells are text already: what is checked is NUL and, in a LATIN1 database, the
        # characters it cannot store.  The rejects file is UTF-8.
        self.encoding = "utf-8-sig"
        self._checks = TextChecks(self.name, "utf-8", self.encoding)
        self.delimiter = ","
        self.sheet = ""
        self._rows: Iterator[list] = iter(())
        self._next_row = 0  # the spreadsheet's number of the row _rows gives next
        self._total = 0  # rows in the sheet's used range
        self._start_column = 0  # the sheet's first used column (0: A)
        self._width = 0  # the header's columns, up to its last named one
        self._book = None
        self._merged: list = []  # ((top, left), (bottom, right)), 0-based
        self._error_cells: xlsxerrors.ErrorCells | None = None
        self._errors: dict[int, list[tuple[int, str]]] = {}  # row -> (column, error)

    @property
    def origin(self) -> Origin:
        return Origin(f"{self.name} sheet {self.sheet}", "row")

    def close(self) -> None:
        self._rows = iter(())
        if self._book is not None:
            self._book.close()
            self._book = None
        super().close()

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        from python_calamine import CalamineError, CalamineWorkbook

        path = self.options.path
        self._open_path(path).close()  # the same one-line errors as a CSV's
        self.size = os.path.getsize(path) or None
        try:
            # Every error of the reader (a zip that is no workbook, a text file named .xlsx,
            # broken XML) is a CalamineError; its format is told by the extension.
            self._book = CalamineWorkbook.from_path(path)
            name = self._pick_sheet()
            if path.lower().endswith(xlsxerrors.SUFFIXES):
                self._error_cells = xlsxerrors.ErrorCells(path, name)  # while calamine loads
            sheet = self._book.get_sheet_by_name(name)
        except CalamineError as e:
            raise InputError(f"{path}: not a workbook csvload can read ({_first_line(e)})") from e
        # iter_rows() gives the rows from the sheet's first (row 1, even when the used
        # range starts lower: tests/read/test_workbook.py holds it to that), and the
        # columns from the used range's first.
        self._total = (sheet.end or (0, 0))[0] + 1
        self._next_row, self._start_column = 1, (sheet.start or (0, 0))[1]
        self._rows = iter(sheet.iter_rows())
        self._merged = sheet.merged_cell_ranges or []

    def _pick_sheet(self) -> str:
        """--sheet NAME (exactly, else ignoring case), or the first visible worksheet."""
        names = list(self._book.sheet_names)
        wanted = self.options.sheet
        if wanted is None:
            for meta in self._book.sheets_metadata:
                if str(meta.visible).endswith("Visible") and str(meta.typ).endswith("WorkSheet"):
                    self.sheet = meta.name
                    return meta.name
            raise InputError(f"{self.options.path}: the workbook has no visible worksheet")
        found = [n for n in names if n == wanted] or [
            n for n in names if n.casefold() == wanted.casefold()
        ]
        if len(found) != 1:
            shown = ", ".join(repr(n) for n in names)
            raise InputError(f"{self.options.path}: no sheet {wanted!r} (it has {shown})")
        self.sheet = found[0]
        return found[0]

    def _take(self) -> tuple[int, list] | None:
        """The next row of the sheet and its number, or None at the end."""
        row = next(self._rows, None)
        if row is None:
            return None
        self._next_row += 1
        return self._next_row - 1, row

    def _read_header(self) -> None:
        wanted = self.options.header_row
        while True:
            taken = self._take()
            if taken is None:
                where = self.origin.file
                if wanted is not None:
                    raise InputError(f"{where}: no row {wanted}, the sheet ends before it")
                raise InputError(f"{where}: empty sheet, no header row")
            number_, row = taken
            cells = [cell_text(c) for c in row]
            if wanted is not None:
                if number_ < wanted:
                    continue
                if number_ > wanted or not any(cells):
                    raise InputError(f"{self.place(wanted)}: the header row is empty")
                break
            if any(cells):
                break
        # Trailing empty header cells (and the columns under them) are not columns, but
        # for those a merged header cell spans: they are columns without a name.
        self._width = max(i for i, c in enumerate(cells) if c) + 1
        for (top, _), (bottom, right) in self._merged:
            if top < number_ <= bottom + 1:
                self._width = max(self._width, right + 1 - self._start_column)
        cells += [""] * (self._width - len(cells))
        self.header = cells[: self._width]
        self.header_line = number_

    # -- the records -----------------------------------------------------------------------

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        if not self.keys and self._preset is None:
            self.keys = self.find_keys(("sku",))
        if self._error_cells is not None:
            self._errors = self._error_cells.found()
        while True:
            first = self._next_row
            batch = list(itertools.islice(self._rows, batch_size))
            if not batch:
                return
            self._next_row += len(batch)
            chunk = Assembly()
            self._add(batch, first, chunk)
            read = (self._next_row - 1) / max(self._total, 1)
            out = chunk.take(round(self.size * min(read, 1.0)) if self.size else 0)
            out.origin = self.origin
            yield out

    def _add(self, batch: list[list], first: int, chunk: Assembly) -> None:
        """A batch of rows, numbered from `first`, into the chunk: whole when nothing in
        it needs a look row by row, else record by record."""
        width = self._width
        columns = [_column_text(c) for c in zip(*batch, strict=True)]
        beyond = any(any(c) for c in columns[width:])
        data = columns[:width]
        while len(data) < width:  # a header wider than the data's used range
            data.append([""] * len(batch))
        if self._layout is not None:
            data = [data[i] if i >= 0 else [""] * len(batch) for i in self._layout]
        text = None
        flagged = self._errors and not self._errors.keys().isdisjoint(
            range(first, first + len(batch))
        )
        if (
            not beyond
            and not flagged
            and self._preset is None
            and all(all(map(str.strip, columns[i])) for i, _ in self.keys)
        ):
            text = self._whole(data)
        if text is not None:
            chunk.add_block(text, first, len(batch))
            return
        delimiter = self._staged_delimiter or self.delimiter
        for number_, row in zip(itertools.count(first), zip(*columns, strict=True)):
            row = list(row)
            if not any(row):
                continue  # an empty row: skipped, like a blank line
            row = self._judge(row, number_, number_, chunk)
            if row is not None:
                chunk.lines.append(_quote_row(row, delimiter))
                chunk.add_run(number_, 1)

    def _whole(self, columns: list[Sequence[str]]) -> bytes | None:
        """The batch as COPY data, every field quoted; None when a row is empty or a cell
        holds what must be looked at (NUL, a character the database cannot store)."""
        quoted = []
        for column in columns:
            joined = "".join(column)
            if _CELL in joined:
                return None
            quoted.append([c.replace('"', '""') for c in column] if '"' in joined else column)
        rows = list(zip(*quoted, strict=True))
        if not all(map(any, rows)):
            return None
        delimiter = self._staged_delimiter or self.delimiter
        data = '"' + '"\n"'.join(map(f'"{delimiter}"'.join, rows)) + '"\n'
        if self._checks.dirty(data):
            return None
        return data.encode("utf-8")

    def _check(self, row: list[str], raw: str, end: int) -> str | None:
        width = self._width
        if end in self._errors:
            column, error = self._errors[end][0]
            at = column - self._start_column
            name = self.header[at] if 0 <= at < width and self.header[at] else None
            where = name or f"column {column_letter(column)}"
            return f"{where} is {error}, an error in the sheet"
        extra = [i for i in range(width, len(row)) if row[i]]
        if extra:
            column = column_letter(self._start_column + extra[0])
            return f"a value in column {column}, which has no header"
        del row[width:]
        row.extend([""] * (width - len(row)))
        problem = self._checks.problem(raw, end)
        if problem:
            return problem
        for i, name in self.keys:
            if not row[i].strip():
                return f"empty {name}"
        return None

    def _record_text(self, row: list[str], start: int, end: int) -> str:
        """The row as one CSV record, for the rejects file (empty cells at the end
        dropped)."""
        cells = list(row)
        while cells and not cells[-1]:
            cells.pop()
        out = io.StringIO()
        # "\r\n" makes the writer quote a cell holding CR or LF; the terminator is dropped.
        csv.writer(out, lineterminator="\r\n").writerow(cells)
        return out.getvalue()[:-2]


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
