"""What the reader yields: chunks of COPY-ready records with their rejects, the assembly of
one chunk, and the Origin that names where a record came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Origin:
    """An input as rejects and messages name it: a file (`a.csv`) whose numbers count its
    physical lines, or a workbook's sheet (`book.xlsx sheet Prices`) whose numbers are its
    rows as the spreadsheet shows them."""

    file: str
    unit: str = "line"

    def at(self, number: int) -> str:
        """`a.csv line 3`, `book.xlsx sheet Prices row 17`."""
        return f"{self.file} {self.unit} {number}"


@dataclass(frozen=True)
class Reject:
    line: int  # 1-based physical line where the record starts
    reason: str
    # The record exactly as read, inner line breaks included, without its final line
    # terminator; undecodable bytes are kept as U+DC00+byte (see encoding.ERRORS).
    raw: str
    # The key fields, where they could be read: a full feed counts the row as present.
    key: tuple[str, ...] | None = None
    # The input it came from (Origin.file), where there may be more than one, or a sheet.
    file: str | None = None


@dataclass
class Chunk:
    """A batch of records: good ones as COPY-ready CSV, bad ones as rejects."""

    data: bytes  # UTF-8, one CSV line per good record, in file order, all header columns
    rows: int  # good records in text
    rejects: list[Reject] = field(default_factory=list)
    bytes_done: int = 0  # input bytes consumed so far (compressed bytes for gzip)
    # Where the good records start: runs of (first line, records) on consecutive lines.
    runs: list[list[int]] = field(default_factory=list)
    skipped: int = 0  # records a preset's row rules skip (a shop export's image rows)
    # Which input its lines are counted in; None: the one input, a file's physical lines.
    origin: Origin | None = None


class Assembly:
    """The chunk being assembled.  The reader's per-record loop appends to `lines`,
    `rejects` and `runs` directly (they are emptied in place, never replaced); take()
    hands the chunk over."""

    __slots__ = ("parts", "lines", "rows", "rejects", "runs", "skipped")

    def __init__(self) -> None:
        self.parts: list[bytes] = []  # COPY data: whole blocks, and lines joined
        self.lines: list[str] = []  # good records since the last part, one line each
        self.rows = 0  # good records in parts
        self.rejects: list[Reject] = []
        self.runs: list[list[int]] = []  # [first line, records] of good records
        self.skipped = 0

    def add_block(self, data: bytes, first: int, nlines: int) -> None:
        """A block of nlines records, from line `first`, that goes to COPY whole."""
        self._join()
        self.parts.append(data)
        self.rows += nlines
        self.add_run(first, nlines)

    def add_run(self, first: int, records: int) -> None:
        runs = self.runs
        if runs and runs[-1][0] + runs[-1][1] == first:
            runs[-1][1] += records
        else:
            runs.append([first, records])

    def take(self, bytes_done: int) -> Chunk:
        self._join()
        chunk = Chunk(
            b"".join(self.parts), self.rows, list(self.rejects), bytes_done, list(self.runs),
            self.skipped,
        )
        self.parts.clear()
        self.rejects.clear()
        self.runs.clear()
        self.rows = self.skipped = 0
        return chunk

    def _join(self) -> None:
        if self.lines:
            # Good records hold no undecodable bytes (their escapes would not encode).
            self.parts.append(("\n".join(self.lines) + "\n").encode("utf-8"))
            self.rows += len(self.lines)
            self.lines.clear()
