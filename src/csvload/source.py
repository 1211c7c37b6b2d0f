"""Reading the input: a path, stdin or gzip; encodings and the BOM; the header and its
mapping onto product fields; and streaming records in chunks, with bad records set aside.

Python parses every record (that is how a bad row gets rejected with its line number while
the rest go on), but it does not re-serialise the good ones.  A single-line record whose
parse contains no quote character is parsed identically by PostgreSQL's COPY (FORMAT csv),
so its raw text is forwarded as it is; only the other records are re-quoted.  On the 500k
benchmark file that halves the client's per-row cost.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from csvload.errors import InputError, MissingColumnError

FIELDS = ("sku", "name", "description", "active")
REQUIRED = ("sku", "name")

# The largest field csvload accepts: 16 MiB, 128x Python csv's default of 131072.  A
# larger field is rejected with its line; past _CSV_HARD_LIMIT the csv module itself gives
# up, and since it cannot resynchronise after that, the file is refused as a whole.
FIELD_LIMIT = 16 * 1024 * 1024
_CSV_HARD_LIMIT = 4 * FIELD_LIMIT
csv.field_size_limit(_CSV_HARD_LIMIT)

BOOLEANS = {
    "true": "t", "t": "t", "1": "t", "yes": "t",
    "false": "f", "f": "f", "0": "f", "no": "f",
}  # fmt: skip

# Undecodable bytes become lone surrogates U+DC00+byte (ERRORS below), so a record holding
# them is found by one regex search and written back to the rejects file byte-exact.
_SURROGATE = re.compile("[\ud800-\udfff]")
ERRORS = "csvload-bytes"


def _escape_bytes(error: UnicodeError) -> tuple[str, int]:
    """Like surrogateescape, but for every byte: UTF-16 can fail on bytes below 0x80 (an odd
    trailing byte, a lone surrogate), where surrogateescape itself raises."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + b) for b in bad), error.end


codecs.register_error(ERRORS, _escape_bytes)
_SNIFF_DELIMITERS = ",;\t|"
_READ_BUFFER = 1 << 20
# What reading a damaged input raises: gzip.BadGzipFile is an OSError, a truncated gzip
# stream an EOFError, corrupt deflate data a zlib.error.
_READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass(frozen=True)
class SourceOptions:
    """How to read one input."""

    path: str  # "-" is stdin
    encoding: str = "utf-8"
    delimiter: str = ","  # or "auto"
    mapping: tuple[tuple[str, str], ...] = ()  # (header as in the file, product field)


@dataclass(frozen=True)
class Reject:
    line: int  # 1-based physical line where the record starts
    reason: str
    # The record exactly as read, inner line breaks included, without its final line
    # terminator; undecodable bytes are kept as U+DC00+byte (see ERRORS).
    raw: str


@dataclass
class Chunk:
    """A batch of records: good ones as COPY-ready CSV text, bad ones as rejects."""

    text: str  # one CSV line per good record, in file order, all header columns
    rows: int  # good records in text
    rejects: list[Reject] = field(default_factory=list)
    bytes_done: int = 0  # input bytes consumed so far (compressed bytes for gzip)


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


def normalise_encoding(name: str) -> str:
    """The codec to decode with: UTF-8 always tolerates a BOM; unknown names raise."""
    try:
        codec = codecs.lookup(name).name
    except LookupError as e:
        raise InputError(f"unknown encoding {name!r} (try utf-8, latin-1, cp1252 or utf-16)") from e
    return "utf-8-sig" if codec in ("utf-8", "utf-8-sig") else codec


class Source:
    """One open input.  Use as a context manager, read .header/.columns, then .chunks()."""

    def __init__(self, options: SourceOptions, stdin: BinaryIO | None = None):
        self.options = options
        self.name = "<stdin>" if options.path == "-" else options.path
        self.size: int | None = None
        self.header: list[str] = []
        self.columns: dict[str, int] = {}  # product field -> 0-based column in the file
        self.ignored: list[str] = []
        self._stdin = stdin
        self.encoding = normalise_encoding(options.encoding)
        self._single_byte = self.encoding in ("iso8859-1", "cp1252", "latin-1")
        self._close: list = []
        self._counter: _CountingReader | None = None
        self._text: io.TextIOWrapper | None = None
        self._buf: list[str] = []  # raw lines of the record being parsed
        self._flag: list[str | None] = [None]  # a problem the line reader saw in this record
        self._eof = False
        self._line_end = 0  # physical line number where the last record ended
        self._reader = None

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
        else:
            raw = self._open_path(self.options.path)
            self._close.append(raw)
        try:
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
        self._text = io.TextIOWrapper(binary, encoding=self.encoding, errors=ERRORS, newline="")
        self._close.append(self._text)
        self.delimiter = delimiter
        self._reader = csv.reader(
            self._lines(), delimiter=delimiter, quotechar='"', doublequote=True, strict=False
        )

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
        except _READ_ERRORS as e:
            raise self._read_error(e, 1) from e
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

    # -- the line and record readers ---------------------------------------------------------

    def _lines(self) -> Iterator[str]:
        """Yield the physical lines, remembering the current record's raw text and noting
        NUL bytes, undecodable bytes and UTF-8 read as a single-byte encoding."""
        buf, flag = self._buf, self._flag
        single_byte, encoding = self._single_byte, self.encoding
        assert self._text is not None
        # A corrupt or truncated gzip stream fails inside the read; the try costs nothing
        # per line.
        try:
            for line in self._text:
                # Undecodable bytes first: a UTF-16 file read as UTF-8 is full of NULs too,
                # and "check --encoding" is the useful answer there.
                if not line.isascii():
                    if _SURROGATE.search(line):
                        flag[0] = f"bytes that are not valid {self.options.encoding}"
                    elif "\x00" in line:
                        flag[0] = "NUL byte in record"
                    elif single_byte and _looks_like_utf8(line, encoding):
                        flag[0] = "mojibake"
                elif "\x00" in line:
                    flag[0] = "NUL byte in record"
                buf.append(line)
                yield line
        except _READ_ERRORS as e:
            raise self._read_error(e, self._line_end + len(buf) + 1) from e
        except UnicodeError as e:
            # Undecodable bytes never get here (ERRORS escapes them); what does is the
            # UTF-16/32 decoder refusing a stream that does not start with a BOM.
            raise InputError(
                f"{self.name} line {self._line_end + len(buf) + 1}: {e} (name the byte order: "
                f"--encoding {self.encoding}-le or {self.encoding}-be)"
            ) from e
        self._eof = True

    def _read_error(self, error: Exception, line: int) -> InputError:
        detail = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return InputError(
            f"{self.name} line {line}: cannot read the input: {detail} "
            "(is the file truncated or not really gzip?)"
        )

    def _next_record(self) -> tuple[int, list[str]] | None:
        """The next non-blank record and the line it starts on, or None at the end."""
        assert self._reader is not None
        while True:
            self._buf.clear()
            self._flag[0] = None
            start = self._line_end + 1
            try:
                row = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as e:
                # With strict=False the only error left is a field past the hard limit,
                # after which the csv module cannot find the next record.
                raise InputError(
                    f"{self.name} line {start}: a field is longer than {_CSV_HARD_LIMIT} "
                    "characters, the file cannot be read past it (look for an unclosed quote)"
                ) from e
            self._line_end = self._reader.line_num
            if row:
                return start, row

    def _read_header(self) -> None:
        first = self._next_record()
        if first is None:
            raise InputError(f"{self.name}: empty file, no header line")
        start, header = first
        if self._flag[0]:
            raise InputError(f"{self.name} line {start}: header has {self._flag_reason()}")
        if self._eof:
            raise InputError(
                f"{self.name} line {start}: the header opens a quote that is never closed"
            )
        self.header = header
        self.columns = map_header(header, self.options.mapping, f"{self.name} line {start}")
        mapped = {i for i in self.columns.values()}
        self.ignored = [h for i, h in enumerate(header) if i not in mapped]

    def _flag_reason(self) -> str:
        reason = self._flag[0] or ""
        if reason == "mojibake":
            raise InputError(
                f"{self.name} line {self._line_end}: text is valid UTF-8 but --encoding "
                f"{self.options.encoding} was given (use --encoding utf-8)"
            )
        if reason.startswith("bytes"):
            reason += " (check --encoding)"
        return reason

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        """Stream the data records in chunks of at most batch_size records."""
        ncols = len(self.header)
        sku = self.columns["sku"]
        active = self.columns.get("active")
        delimiter = self.delimiter
        reader = self._reader
        assert reader is not None and self._counter is not None
        buf, flag = self._buf, self._flag
        # PostgreSQL ends COPY at a line that is just \. ; only with "." as the delimiter can
        # such a line parse as a valid record, so only then is raw forwarding unsafe.
        forward_raw = delimiter != "."
        lines: list[str] = []
        rejects: list[Reject] = []
        records = 0
        while True:
            record = self._next_record()
            if record is None:
                break
            start, row = record
            records += 1
            reason = None
            if flag[0]:
                reason = self._flag_reason()
            elif self._eof:
                # The csv module reads past the last line only while inside a quoted field.
                reason = "a quoted field is never closed before the end of the file"
            elif len(row) != ncols:
                reason = f"{len(row)} fields, header has {ncols}"
                if len(row) == 1 and ncols > 1:
                    reason += " (check --delimiter)"
            elif not row[sku].strip():
                reason = "empty sku"
            elif (len(buf) > 1 or len(buf[0]) > FIELD_LIMIT) and max(map(len, row)) > FIELD_LIMIT:
                reason = f"a field is longer than {FIELD_LIMIT} characters"
            elif active is not None:
                value = BOOLEANS.get(row[active].strip().lower())
                if value is None:
                    reason = (
                        f"active is {_preview(row[active])}, not a boolean "
                        "(use true/false, t/f, 1/0 or yes/no)"
                    )
                else:
                    row[active] = value
                    lines.append(_quote_row(row, delimiter))
            elif forward_raw and len(buf) == 1 and ('"' not in buf[0] or '"' not in "".join(row)):
                # Forward the raw line: PostgreSQL parses it exactly as Python did.
                lines.append(buf[0].rstrip("\r\n"))
            else:
                lines.append(_quote_row(row, delimiter))
            if reason is not None:
                rejects.append(Reject(start, reason, _strip_terminator("".join(buf))))
            if records >= batch_size:
                yield self._chunk(lines, rejects)
                lines, rejects, records = [], [], 0
        if records:
            yield self._chunk(lines, rejects)

    def _chunk(self, lines: list[str], rejects: list[Reject]) -> Chunk:
        text = "\n".join(lines)
        if lines:
            text += "\n"
        assert self._counter is not None
        return Chunk(text, len(lines), rejects, self._counter.count)


def map_header(
    header: list[str], mapping: tuple[tuple[str, str], ...], where: str
) -> dict[str, int]:
    """Match header names to product fields, case-insensitively, honouring --map."""
    renames = {src.strip().casefold(): dst for src, dst in mapping}
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lstrip("\ufeff").casefold()
        target = renames.get(key, key if key in FIELDS else None)
        if target is None:
            continue
        if target in columns:
            raise InputError(
                f"{where}: columns {header[columns[target]]!r} and {name!r} both map to "
                f"{target} (rename one, or --map it to another field)"
            )
        columns[target] = i
    for required in REQUIRED:
        if required not in columns:
            found = ", ".join(repr(h) for h in header[:8])
            raise MissingColumnError(
                f"{where}: no {required} column in the header (found {found}; "
                f"use --map 'Your Column={required}')"
            )
    return columns


def _quote_row(row: list[str], delimiter: str) -> str:
    return delimiter.join(['"' + f.replace('"', '""') + '"' for f in row])


def _strip_terminator(raw: str) -> str:
    if raw.endswith("\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(("\n", "\r")) else raw


def _looks_like_utf8(line: str, encoding: str) -> bool:
    try:
        line.encode(encoding).decode("utf-8")
    except UnicodeError:
        return False
    return True


def _preview(value: str, limit: int = 20) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
