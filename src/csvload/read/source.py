"""Reading one input: a path, stdin or gzip; its delimiter and header; and streaming its
records in chunks, with bad records set aside.  Which header goes to which table column is
the binding's business; the reader only needs to know where the key columns are (a record
with an empty key is rejected here).

Python parses every record (so a bad one is rejected with its line number while the rest
go on), but does not re-serialise the good ones: a single-line record whose parse holds no
quote character is parsed identically by COPY (FORMAT csv), so its raw line is forwarded;
and a block of lines that one regular expression shows to be plain records goes to COPY
unparsed (wholeblocks.py).  The blocks themselves come from lines.py.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from csvload.errors import InputError, MissingColumnError
from csvload.read.chunks import Assembly, Chunk, Origin, Reject
from csvload.read.encoding import ERRORS, TextChecks, normalise_encoding
from csvload.read.lines import (
    CSV_HARD_LIMIT,
    FIELD_LIMIT,
    READ_ERRORS,
    Block,
    Lines,
    read_error,
)
from csvload.read.presets import RowRejected
from csvload.read.remote import Fetched, RemoteOptions, is_remote, open_input, shown
from csvload.read.wholeblocks import WholeBlocks
from csvload.table.catalog import resolve

__all__ = [
    "FIELD_LIMIT", "Chunk", "Reject", "Source", "SourceOptions", "normalise_encoding",
]  # fmt: skip

csv.field_size_limit(CSV_HARD_LIMIT)
_SNIFF_DELIMITERS = ",;\t|"
_READ_BUFFER = 1 << 20
# Codecs whose line ends are the bytes \n and \r and nothing else is: their blocks are cut
# from the raw bytes; other encodings (UTF-16, UTF-32, ...) go through a TextIOWrapper.
_BYTE_CODECS = ("utf-8-sig", "ascii", "iso8859-1", "cp1252")
_TOO_LONG = f"a field is longer than {FIELD_LIMIT} characters"
# A line that is just this ends COPY FROM STDIN (FORMAT csv) before PostgreSQL 18, even
# mid-stream: a record whose raw line it is goes quoted instead.
_END_OF_DATA = "\\."


@dataclass(frozen=True)
class SourceOptions:
    """How to read one input."""

    path: str  # "-" is stdin
    encoding: str = "utf-8"
    delimiter: str = ","  # or "auto"
    mapping: tuple[tuple[str, str], ...] = ()  # (header as in the file, table column)
    remote: RemoteOptions | None = None  # how to fetch a URL path (read/remote/)
    sheet: str | None = None  # a workbook's sheet (workbook.py); None: the first
    header_row: int | None = None  # a workbook's header row; None: the first non-empty


class _CountingReader(io.RawIOBase):
    """Counts the bytes pulled from the underlying stream, so progress works on pipes
    and, under gzip, measures the compressed bytes."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


class Source:
    """One open input.  Use as a context manager, read .header, then .chunks()."""

    labelled = False  # whether rejects name their input (a sheet, or one of many files)

    def __init__(self, options: SourceOptions, stdin: BinaryIO | None = None):
        self.options = options
        self.name = "<stdin>" if options.path == "-" else shown(options.path)
        self.size: int | None = None
        self.fetched: Fetched | None = None  # what a URL's fetch found (read/remote/)
        self.header: list[str] = []
        # (0-based column, name) of each key column: set by use_keys() before chunks().
        self.keys: tuple[tuple[int, str], ...] = ()
        self._preset = None  # a BoundPreset rewriting every record (use_preset())
        self._reject_keys: tuple[tuple[int, str], ...] | None = None
        self._stdin = stdin
        self.encoding = normalise_encoding(options.encoding)
        self._checks = TextChecks(self.name, options.encoding, self.encoding)
        self._lines = Lines(self.name, self.encoding, self._checks.dirty)
        self._close: list = []
        self._counter: _CountingReader | None = None
        self._reader = None
        # restage(): the column of each staged field (-1: empty), and the delimiter COPY
        # reads, for a later input of a many-file import laid out like the first.
        self._layout: list[int] | None = None
        self._staged_delimiter: str | None = None

    @property
    def _raw_blocks(self) -> Iterator[Block]:
        """The blocks not read yet."""
        return self._lines.blocks

    # -- opening ---------------------------------------------------------------------------

    def __enter__(self) -> Source:
        try:
            self._open()
            self._read_header()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        while self._close:
            self._close.pop().close()

    def _open(self) -> None:
        if self.options.path == "-":
            if self._stdin is None:
                raise InputError("<stdin>: no standard input to read")
            raw: BinaryIO = self._stdin
        elif is_remote(self.options.path):
            raw, self.size, self.fetched = open_input(self.options.path, self.options.remote)
            self._close.append(raw)
        else:
            raw = self._open_path(self.options.path)
            self._close.append(raw)
        try:
            if self.fetched is None:
                st = os.fstat(raw.fileno())
                if os.path.isfile(self.options.path) or st.st_size:
                    self.size = st.st_size or None
        except (OSError, io.UnsupportedOperation, ValueError):
            self.size = None
        self._counter = _CountingReader(raw)
        buffered = io.BufferedReader(self._counter, buffer_size=_READ_BUFFER)
        binary: BinaryIO = buffered
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            binary = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
            binary = io.BufferedReader(binary, buffer_size=_READ_BUFFER)  # type: ignore[arg-type]
        delimiter = self.options.delimiter
        if delimiter == "auto":
            delimiter = self._sniff(binary)
        elif delimiter in ('"', "\r", "\n") or len(delimiter) != 1:
            raise InputError(
                f"{self.name}: --delimiter {delimiter!r} cannot be used (give one character "
                "other than a quote or a line break)"
            )
        self.delimiter = delimiter
        if self.encoding in _BYTE_CODECS:
            self._close.append(binary)
            self._lines.read_bytes(binary, self.encoding)
        else:
            text = io.TextIOWrapper(binary, encoding=self.encoding, errors=ERRORS, newline="")
            self._close.append(text)
            self._lines.read_text(text)
        self._reader = csv.reader(
            itertools.chain.from_iterable(self._lines.reader_lines()),
            delimiter=delimiter,
            quotechar='"',
            doublequote=True,
            strict=False,
        )

    def reopen(self) -> None:
        """Open the input again from its start, after close(): a later file of a many-file
        import is closed once its header is read and bound.  The header must come back."""
        header = self.header
        self.close()
        self._lines = Lines(self.name, self.encoding, self._checks.dirty)
        self.__enter__()
        if self.header != header:
            raise InputError(
                f"{self.place(self.header_line)}: the header changed while csvload was"
                " reading the file (was it being written?)"
            )

    @property
    def origin(self) -> Origin:
        """The input as rejects and messages name it."""
        return Origin(self.name)

    def place(self, line: int) -> str:
        """`a.csv line 3`: where a record or a header is."""
        return self.origin.at(line)

    @property
    def paths(self) -> tuple[str, ...]:
        """The inputs read, as given."""
        return (self.options.path,)

    def listing(self, rows_read: int) -> list[dict]:
        """The inputs read, for the summary: each one's name, size and records."""
        return [{"file": self.name, "size": self.size, "rows_read": rows_read}]

    def _open_path(self, path: str) -> BinaryIO:
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory, not a CSV file")
        try:
            return open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError as e:
            raise InputError(f"{path}: no such file") from e
        except PermissionError as e:
            raise InputError(f"{path}: permission denied") from e
        except OSError as e:
            raise InputError(f"{path}: cannot open: {e.strerror}") from e

    def _sniff(self, binary) -> str:
        try:
            head = binary.peek(65536)[:65536]
        except READ_ERRORS as e:
            raise read_error(self.name, e, 1) from e
        sample = head.decode(self.encoding, errors="replace")
        sample = sample.lstrip("\ufeff")
        lines = sample.splitlines()[:20]
        if len(lines) > 1 and not sample.endswith(("\n", "\r")):
            lines = lines[:-1]  # the last line may be cut mid-record
        try:
            dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=_SNIFF_DELIMITERS)
        except csv.Error as e:
            raise InputError(
                f"{self.name}: cannot detect the delimiter (give --delimiter explicitly)"
            ) from e
        return dialect.delimiter

    def _too_long(self, start: int) -> InputError:
        # With strict=False the only csv.Error left is a field past the hard limit, after
        # which the csv module cannot find the next record.
        return InputError(
            f"{self.name} line {start}: a field is longer than {CSV_HARD_LIMIT} "
            "characters, the file cannot be read past it (look for an unclosed quote)"
        )

    def _read_header(self) -> None:
        assert self._reader is not None
        lines = self._lines
        while True:
            start = lines.line_end + 1
            try:
                header = next(self._reader)
            except StopIteration:
                raise InputError(f"{self.name}: empty file, no header line") from None
            except csv.Error as e:
                raise self._too_long(start) from e
            lines.line_end = self._reader.line_num + lines.skipped
            if header:
                break
        problem = self._checks.problem(lines.raw(start, lines.line_end), lines.line_end)
        if problem:
            raise InputError(f"{self.name} line {start}: header has {problem}")
        if lines.eof:
            raise InputError(
                f"{self.name} line {start}: the header opens a quote that is never closed"
            )
        self.header = header
        self.header_line = start

    # -- what the caller tells the reader --------------------------------------------------

    def find_keys(self, key: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
        """(column, name) of each key column in the header, as named or --map'ped, matched
        as target.resolve() matches names (exactly first, else ignoring case);
        MissingColumnError names the first one missing.  Lets a file without its key fail
        before csvload even connects."""
        where = self.place(self.header_line)
        spelt = [h.strip().lstrip("\ufeff") for h in self.header]
        # Each header as the column it binds to: its --map target, else its own name.
        names = list(spelt)
        for header_name, column in self.options.mapping:
            found = resolve(header_name.strip(), spelt, f"--map {header_name}={column}",
                            "write the header exactly")
            if found is not None:
                names[spelt.index(found)] = column
        found_keys = []
        for k in key:
            name = resolve(k, names, where,
                           f"rename one, or --map one of them to {k}")
            if name is None:
                shown = ", ".join(repr(h) for h in self.header[:8])
                raise MissingColumnError(
                    f"{where}: no {k} column in the header"
                    f" (found {shown}; use --map 'Your Column={k}')"
                )
            found_keys.append((names.index(name), k))
        return tuple(found_keys)

    def use_keys(self, keys: tuple[tuple[int, str], ...]) -> None:
        """Name the key columns, (0-based column, name): a record with an empty key is
        rejected."""
        self.keys = keys

    def use_preset(self, preset) -> None:
        """Rewrite every record with a shop-export preset's row rules (presets.py): the
        records staged are then preset.columns wide, and the preset decides which rows
        are skipped or rejected and how the key is read."""
        self._preset = preset
        self.keys = ()
        # A row the preset rejects still has a readable key: a full feed keeps its product.
        self._reject_keys = ((preset.key_at, preset.key[0]),)

    @property
    def staged_columns(self) -> list[str]:
        """The names of the columns each staged record has: the header's, or a preset's."""
        return list(self._preset.columns) if self._preset is not None else list(self.header)

    def restage(self, layout: list[int] | None, delimiter: str) -> None:
        """Stage each record in another layout: field i from the record's column
        layout[i] (-1: empty), and with COPY's delimiter.  A later file of a many-file
        import whose columns or delimiter differ from the first's is read so, record by
        record (its lines are no longer forwarded as they are)."""
        self._layout, self._staged_delimiter = layout, delimiter

    def use_server_encoding(self, name: str | None) -> None:
        """Name the database's encoding (server_encoding, e.g. LATIN1): a record holding a
        character it cannot store is then rejected, rather than failing the whole COPY
        (SQLSTATE 22P05)."""
        if self._checks.use_server_encoding(name):
            # Blocks read so far (the header's, maybe a little more) were judged without it.
            self._lines.judge_again()

    # -- the records -----------------------------------------------------------------------

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        """Stream the data records in chunks of about batch_size records: a block that
        goes to COPY whole (about 256K characters) is never split."""
        whole, keys = self._whole_blocks()
        sku = keys[0] if len(keys) == 1 else None
        forward_raw = self._preset is None and self._staged_delimiter is None
        ncols, delimiter = len(self.header), self._staged_delimiter or self.delimiter
        reader, lines, counter = self._reader, self._lines, self._counter
        assert reader is not None and counter is not None
        chunk = Assembly()
        good, rejects, runs = chunk.lines, chunk.rejects, chunk.runs  # emptied in place
        records = 0
        end = lines.line_end
        try:
            while True:
                if records >= batch_size:
                    yield chunk.take(counter.count)
                    records = 0
                if reader.line_num == lines.handed:
                    # The reader holds no unread line: look at the next block first.
                    block = next(lines.blocks, None)
                    if block is None:
                        break
                    data = whole.copy_data(block) if forward_raw else None
                    if data is not None:
                        chunk.add_block(data, lines.forwarded(block), block.nlines)
                        records += block.nlines
                        end = lines.line_end
                        continue
                    lines.handoff = block
                try:
                    row = next(reader)
                except StopIteration:
                    break
                start = end + 1
                lines.line_end = end = reader.line_num + lines.skipped
                if not row:
                    continue  # a blank line
                records += 1
                if (
                    forward_raw
                    and end == start
                    and len(row) == ncols
                    and not lines.any_dirty
                    and not lines.eof
                    and (row[sku].strip() if sku is not None else all(
                        row[k].strip() for k in keys))
                ):
                    # The common case: one physical line, the newest one read.
                    line = lines.block[end - 1 - lines.base]
                    if len(line) > FIELD_LIMIT and max(map(len, row)) > FIELD_LIMIT:
                        rejects.append(Reject(start, _TOO_LONG, _strip_terminator(line)))
                        continue
                    line = line.rstrip("\r\n")
                    if ('"' not in line or '"' not in "".join(row)) and line != _END_OF_DATA:
                        good.append(line)  # PostgreSQL parses the raw line as Python did
                    else:
                        good.append(_quote_row(row, delimiter))
                else:
                    row = self._judge(row, start, end, chunk)
                    if row is None:
                        continue
                    good.append(_quote_row(row, delimiter))
                if runs and runs[-1][0] + runs[-1][1] == start:
                    runs[-1][1] += 1
                else:
                    runs.append([start, 1])
        except csv.Error as e:
            raise self._too_long(end + 1) from e
        if records:
            yield chunk.take(counter.count)

    def _whole_blocks(self) -> tuple[WholeBlocks, list[int]]:
        """The matcher of whole blocks for this header, and the key columns' positions."""
        if not self.keys and self._preset is None:
            # Nobody bound the file to a table: the default key, sku, as the header has it.
            self.keys = self.find_keys(("sku",))
        keys = [i for i, _ in self.keys] or [0]
        utf8, checked = self.encoding == "utf-8-sig", self._checks.server is not None
        return WholeBlocks(len(self.header), keys, self.delimiter, utf8, checked), keys

    def _judge(self, row: list[str], start: int, end: int, chunk: Assembly) -> list[str] | None:
        """The slow path: the record to stage (rewritten by a preset), or None when it is
        rejected (into chunk.rejects) or skipped."""
        raw = self._record_text(row, start, end)
        reason = self._check(row, raw, end)
        if reason is None and self._preset is not None:
            try:
                out = self._preset.apply(row)
            except RowRejected as e:
                reason = e.reason
            else:
                if out is None:
                    chunk.skipped += 1
                    return None
                row = out
        if reason is not None:
            chunk.rejects.append(Reject(start, reason, _strip_terminator(raw), self._key_of(row)))
            return None
        if self._layout is not None:
            row = [row[i] if i >= 0 else "" for i in self._layout]
        return row

    def _record_text(self, row: list[str], start: int, end: int) -> str:
        """The record as read, for the rejects file: physical lines start..end."""
        return self._lines.raw(start, end)

    def _check(self, row: list[str], raw: str, end: int) -> str | None:
        """Why a record must be rejected, or None: for multi-line records, dirty blocks,
        and rows the fast path found wrong.  Values are the server's to check (each
        against its column's type), not the reader's."""
        problem = self._checks.problem(raw, end)
        if problem:
            return problem
        if self._lines.eof:
            return "a quoted field is never closed before the end of the file"
        ncols = len(self.header)
        if len(row) != ncols:
            reason = f"{len(row)} fields, header has {ncols}"
            return reason + " (check --delimiter)" if len(row) == 1 and ncols > 1 else reason
        for i, name in self.keys:
            if not row[i].strip():
                return f"empty {name}"
        if len(raw) > FIELD_LIMIT and max(map(len, row)) > FIELD_LIMIT:
            return _TOO_LONG
        return None

    def _key_of(self, row: list[str]) -> tuple[str, ...] | None:
        """A rejected record's key fields, when it has them all, not blank."""
        keys = self._reject_keys if self._reject_keys is not None else self.keys
        if not keys or any(i >= len(row) or not row[i].strip() for i, _ in keys):
            return None
        return tuple(row[i] for i, _ in keys)


def _quote_row(row: list[str], delimiter: str) -> str:
    return delimiter.join(['"' + f.replace('"', '""') + '"' for f in row])


def _strip_terminator(raw: str) -> str:
    if raw.endswith("\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(("\n", "\r")) else raw
