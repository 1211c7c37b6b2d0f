"""Reading the input: a path, stdin or gzip; encodings and the BOM; the header; and
streaming records in chunks, with bad records set aside.  Which header goes to which
table column is target.bind()'s business; the reader only needs to know where the key
columns are (a record with an empty key is rejected here).

Python parses every record (that is how a bad row gets rejected with its line number while
the rest go on), but it does not re-serialise the good ones.  A single-line record whose
parse contains no quote character is parsed identically by PostgreSQL's COPY (FORMAT csv),
so its raw text is forwarded as it is (unless the line is just \\., which ends COPY before
PostgreSQL 18); only the other records are re-quoted.  On the 500k benchmark file that
halves the client's per-row cost.

Better still, a whole block of lines that one regular expression shows to be plain,
well-formed records goes to COPY without Python parsing any of it (see _WholeBlocks).  For
UTF-8, ASCII and the single-byte encodings the blocks are cut from the raw bytes at line
ends and only decoded when the csv reader needs them, so such a block is never decoded or
re-encoded either.

Every read path holds at most _LINE_LIMIT (64 MiB) of a line whose end has not come: a
file without line ends fails fast, in bounded memory.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import itertools
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from csvload.errors import InputError, MissingColumnError
from csvload.read.presets import RowRejected
from csvload.table.target import resolve

# The largest field csvload accepts: 16 MiB, 128x Python csv's default of 131072.  A
# larger field is rejected with its line; past _CSV_HARD_LIMIT the csv module itself gives
# up, and since it cannot resynchronise after that, the file is refused as a whole.
FIELD_LIMIT = 16 * 1024 * 1024
_CSV_HARD_LIMIT = 4 * FIELD_LIMIT
csv.field_size_limit(_CSV_HARD_LIMIT)
# The most of one physical line (bytes, or characters for the encodings read as text) the
# reader holds while it waits for the line's end: past it the file is refused, so that a
# file without line ends (a binary, /dev/zero) fails fast in bounded memory.  A line that
# is just over the limit but ends within the same read still reaches the csv module, which
# names a field past _CSV_HARD_LIMIT itself.
_LINE_LIMIT = _CSV_HARD_LIMIT

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
# PostgreSQL's server encodings that cannot store every character, and the Python codecs
# that agree with its conversions from UTF8.  The multi-byte EUC encodings are left out:
# where Python's tables and PostgreSQL's differ, a reject would refuse a character the
# database takes.  SQL_ASCII stores bytes unconverted, so it is not checked either.
_SERVER_CODECS = {
    "LATIN1": "latin-1",
    **{f"LATIN{n}": f"iso8859-{i}" for n, i in
       ((2, 2), (3, 3), (4, 4), (5, 9), (6, 10), (7, 13), (8, 14), (9, 15), (10, 16))},
    **{f"ISO_8859_{n}": f"iso8859-{n}" for n in (5, 6, 7, 8)},
    **{f"WIN{n}": f"cp{n}" for n in (866, 874, 1250, 1251, 1252, 1253, 1254, 1255, 1256,
                                     1257, 1258)},
    "KOI8R": "koi8-r",
    "KOI8U": "koi8-u",
}  # fmt: skip
_SNIFF_DELIMITERS = ",;\t|"
_READ_BUFFER = 1 << 20
_BLOCK = 1 << 18  # characters (or bytes) of lines per block
# Codecs whose line ends are the bytes \n and \r and nothing else is: their blocks are cut
# from the raw bytes (_byte_blocks); other encodings (UTF-16, UTF-32, ...) go through a
# TextIOWrapper (_text_blocks).
_BYTE_CODECS = ("utf-8-sig", "ascii", "iso8859-1", "cp1252")
_TOO_LONG = f"a field is longer than {FIELD_LIMIT} characters"
# A line that is just this ends COPY FROM STDIN (FORMAT csv) before PostgreSQL 18, even
# mid-stream: a record whose raw line it is goes quoted instead.
_END_OF_DATA = "\\."
# What reading a damaged input raises: gzip.BadGzipFile is an OSError, a truncated gzip
# stream an EOFError, corrupt deflate data a zlib.error.
_READ_ERRORS = (OSError, EOFError, zlib.error)


@dataclass(frozen=True)
class SourceOptions:
    """How to read one input."""

    path: str  # "-" is stdin
    encoding: str = "utf-8"
    delimiter: str = ","  # or "auto"
    mapping: tuple[tuple[str, str], ...] = ()  # (header as in the file, table column)


@dataclass(frozen=True)
class Reject:
    line: int  # 1-based physical line where the record starts
    reason: str
    # The record exactly as read, inner line breaks included, without its final line
    # terminator; undecodable bytes are kept as U+DC00+byte (see ERRORS).
    raw: str
    # The key fields, where they could be read: a full feed counts the row as present.
    key: tuple[str, ...] | None = None


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


_TRY_ENCODINGS = "(try utf-8, latin-1, cp1252 or utf-16)"


def normalise_encoding(name: str, shown: str | None = None) -> str:
    """The codec to decode with: UTF-8 always tolerates a BOM; unknown names raise, and so
    do codecs that do not turn bytes into text (hex, base64, zlib, rot13, ...).  `shown`
    is the name as the message quotes it (the config file quotes as TOML does)."""
    shown = shown or repr(name)
    try:
        info = codecs.lookup(name)
    except LookupError as e:
        raise InputError(f"unknown encoding {shown} {_TRY_ENCODINGS}") from e
    # CPython marks its bytes-to-bytes and str-to-str codecs with _is_text_encoding=False;
    # "undefined" is a text codec that refuses every byte.
    if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":
        raise InputError(f"{shown} is not a text encoding {_TRY_ENCODINGS}")
    return "utf-8-sig" if info.name in ("utf-8", "utf-8-sig") else info.name


class _Block:
    """A run of whole physical lines.  Blocks cut from bytes are decoded into lines only
    when the csv reader needs them (a block forwarded whole never is)."""

    __slots__ = ("base", "nlines", "raw", "_lines", "dirty", "_decode")

    def __init__(self, base: int, nlines: int, raw: bytes | None, lines, dirty: bool, decode):
        self.base = base  # physical lines before this block
        self.nlines = nlines
        self.raw = raw  # the bytes, for a block cut from bytes
        self._lines: list[str] | None = lines
        self.dirty = dirty  # NUL, undecodable bytes or mojibake (once decoded)
        self._decode = decode

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines, self.dirty = self._decode(self.raw)
        return self._lines


def _count_lines(raw: bytes) -> int:
    """Physical lines in raw, split as io does with newline="" (CR, LF, CRLF)."""
    n = raw.count(b"\n")
    if b"\r" in raw:
        n += raw.count(b"\r") - raw.count(b"\r\n")
    return n if raw.endswith((b"\n", b"\r")) else n + 1


class Source:
    """One open input.  Use as a context manager, read .header/.columns, then .chunks()."""

    def __init__(self, options: SourceOptions, stdin: BinaryIO | None = None):
        self.options = options
        self.name = "<stdin>" if options.path == "-" else options.path
        self.size: int | None = None
        self.header: list[str] = []
        # (0-based column, name) of each key column: set by use_keys() before chunks().
        self.keys: tuple[tuple[int, str], ...] = ()
        self._preset = None  # a BoundPreset rewriting every record (use_preset())
        self._reject_keys: tuple[tuple[int, str], ...] | None = None
        self._stdin = stdin
        self.encoding = normalise_encoding(options.encoding)
        self._single_byte = self.encoding in ("iso8859-1", "cp1252", "latin-1")
        self._close: list = []
        self._counter: _CountingReader | None = None
        self._binary: BinaryIO | None = None
        # The lines come in blocks of about _BLOCK characters.  _kept holds every block
        # that may hold a line of the record being parsed; _block/_base are the lines and
        # base of the newest one the csv reader took; _next_base counts the lines read.
        self._kept: list[_Block] = []
        self._block: list[str] = []
        self._base = 0
        self._next_base = 0
        self._any_dirty = False  # a kept block has a NUL, undecodable bytes or mojibake
        self._eof = False
        self._line_end = 0  # physical line number where the last record ended
        self._reader = None
        # Whole blocks that chunks() forwards to COPY never pass through the csv reader:
        # _skipped counts their lines (physical line = reader.line_num + _skipped),
        # _handed the lines given to the reader, and _handoff is a block chunks() looked
        # at and handed on.
        self._raw_blocks: Iterator[_Block] = iter(())
        self._skipped = 0
        self._handed = 0
        self._handoff: _Block | None = None
        # (PostgreSQL name, Python codec) of a database encoding that cannot store every
        # character (use_server_encoding()); None for UTF8 and the rest.
        self._server: tuple[str, str] | None = None

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
        self.delimiter = delimiter
        self._binary = binary
        if self.encoding in _BYTE_CODECS:
            self._close.append(binary)
            self._raw_blocks = self._byte_blocks()
        else:
            text = io.TextIOWrapper(binary, encoding=self.encoding, errors=ERRORS, newline="")
            self._close.append(text)
            self._raw_blocks = self._text_blocks(text)
        self._reader = csv.reader(
            itertools.chain.from_iterable(self._reader_blocks()),
            delimiter=delimiter,
            quotechar='"',
            doublequote=True,
            strict=False,
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

    def _text_blocks(self, text: io.TextIOWrapper) -> Iterator[_Block]:
        """Yield the physical lines a block at a time, for encodings read as text.

        The text is read about _BLOCK characters at a time and cut after its last line end
        (_whole_lines); StringIO.readlines() then splits the lines in C (on CR, LF and CRLF,
        as the csv module expects with newline=""), and the csv reader pulls them through a
        C iterator, so Python runs once per block here rather than once per line.  Each
        block is checked as a whole for NUL bytes, undecodable bytes and (for single-byte
        encodings) text that is really UTF-8; only records in such a block are checked one
        by one.
        """
        for chunk in self._whole_lines(text.readline, text.read, ""):
            lines = io.StringIO(chunk, newline="").readlines()
            dirty = self._dirty(chunk)
            yield self._admit(_Block(self._next_base, len(lines), None, lines, dirty, None))
        # The csv module asks past the last line only while inside a quoted field.
        self._eof = True

    def _byte_blocks(self) -> Iterator[_Block]:
        """Yield blocks of whole lines cut from the raw bytes, for encodings whose line
        ends are the bytes CR and LF."""
        assert self._binary is not None
        binary, codec = self._binary, self.encoding
        for raw in self._whole_lines(binary.readline, binary.read, b""):
            yield self._admit(self._byte_block(raw, codec))
            codec = "utf-8" if codec == "utf-8-sig" else codec  # a BOM only starts a file
        self._eof = True

    def _whole_lines(self, first, read, empty):
        """Runs of whole lines (str or bytes, as read() gives), about _BLOCK long: the first
        from first(), the header line alone when it fits, so data blocks start clean.  A
        run ends after an LF, or after a CR that is not the last character read (it could
        be the first half of a CRLF); the last run may lack a line end.

        While a line's end does not come, its pieces are kept in a list (joined once: a
        long line costs linear time), and past _LINE_LIMIT the file is refused."""
        lf, cr = ("\n", "\r") if isinstance(empty, str) else (b"\n", b"\r")
        pieces: list = []  # the start of a line whose end has not been read yet
        held = 0
        while True:
            try:
                data, first = first(_BLOCK), read
            except _READ_ERRORS as e:
                raise self._read_error(e, self._next_base + 1) from e
            except UnicodeError as e:
                # Undecodable bytes never get here (ERRORS escapes them); what does is the
                # UTF-16/32 decoder refusing a stream that does not start with a BOM.
                raise InputError(
                    f"{self.name} line {self._next_base + 1}: {e} (name the byte "
                    f"order: --encoding {self.encoding}-le or {self.encoding}-be)"
                ) from e
            if not data:
                if pieces:
                    yield empty.join(pieces)
                return
            if data.endswith(lf):
                cut = len(data)
            else:
                cut = max(data.rfind(lf), data.rfind(cr, 0, len(data) - 1)) + 1
            if cut:
                if pieces:
                    pieces.append(data[:cut])
                    run = empty.join(pieces)
                else:
                    run = data if cut == len(data) else data[:cut]
                pieces = [data[cut:]] if cut < len(data) else []
                held = len(data) - cut
                yield run
            elif pieces and pieces[-1].endswith(cr):
                # The CR that ended the last read was a line end after all.
                run, pieces, held = empty.join(pieces), [data], len(data)
                yield run
            else:
                pieces.append(data)
                held += len(data)
                if held > _LINE_LIMIT:
                    raise self._line_too_long(self._next_base + 1)

    def _byte_block(self, raw: bytes, codec: str) -> _Block:
        def decode(raw: bytes) -> tuple[list[str], bool]:
            text = raw.decode(codec, ERRORS)
            return io.StringIO(text, newline="").readlines(), self._dirty(text)

        return _Block(self._next_base, _count_lines(raw), raw, None, False, decode)

    def _admit(self, block: _Block) -> _Block:
        """Keep block, and forget the blocks before the record being parsed."""
        first_needed = self._line_end + 1  # where the record being parsed starts
        self._kept = [b for b in self._kept if b.base + b.nlines >= first_needed]
        self._kept.append(block)
        self._next_base += block.nlines
        return block

    def _reader_blocks(self) -> Iterator[list[str]]:
        """The csv reader's blocks: the one chunks() handed on, or, when the reader asks
        for more lines inside a record (or for the header), simply the next one."""
        while True:
            if self._handoff is not None:
                block, self._handoff = self._handoff, None
            else:
                block = next(self._raw_blocks, None)
                if block is None:
                    return
            lines = block.lines
            self._any_dirty = any(b.dirty for b in self._kept)
            self._base, self._block = block.base, lines
            self._handed += len(lines)
            yield lines

    def _raw(self, start: int, end: int) -> str:
        """The text of physical lines start..end (1-based, inclusive)."""
        parts: list[str] = []
        for block in self._kept:
            base = block.base
            lo, hi = max(start - 1 - base, 0), min(end - base, block.nlines)
            if lo < hi:
                parts.extend(block.lines[lo:hi])
        return "".join(parts)

    def _problem(self, raw: str, end: int) -> str | None:
        """What is wrong with a record's bytes, if anything.  Undecodable bytes come first:
        a UTF-16 file read as UTF-8 is full of NULs too, and "check --encoding" is the
        useful answer there."""
        if raw.isascii():
            return "NUL byte in record" if "\x00" in raw else None
        if _SURROGATE.search(raw):
            return f"bytes that are not valid {self.options.encoding} (check --encoding)"
        if "\x00" in raw:
            return "NUL byte in record"
        if self._single_byte and _looks_like_utf8(raw, self.encoding):
            raise InputError(
                f"{self.name} line {end}: text is valid UTF-8 but --encoding "
                f"{self.options.encoding} was given (use --encoding utf-8)"
            )
        if self._server is not None:
            char = self._unstorable(raw)
            if char is not None:
                return f"a character the database encoding {self._server[0]} cannot store: {char!r}"
        return None

    def _line_too_long(self, line: int) -> InputError:
        return InputError(
            f"{self.name} line {line}: a line is longer than {_LINE_LIMIT >> 20} MiB, the file "
            "cannot be read (is this really a CSV file?)"
        )

    def _too_long(self, start: int) -> InputError:
        # With strict=False the only csv.Error left is a field past the hard limit, after
        # which the csv module cannot find the next record.
        return InputError(
            f"{self.name} line {start}: a field is longer than {_CSV_HARD_LIMIT} "
            "characters, the file cannot be read past it (look for an unclosed quote)"
        )

    def _next_record(self) -> tuple[int, list[str]] | None:
        """The next non-blank record and the line it starts on, or None at the end."""
        assert self._reader is not None
        while True:
            start = self._line_end + 1
            try:
                row = next(self._reader)
            except StopIteration:
                return None
            except csv.Error as e:
                raise self._too_long(start) from e
            self._line_end = self._reader.line_num + self._skipped
            if row:
                return start, row

    def _read_error(self, error: Exception, line: int) -> InputError:
        detail = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return InputError(
            f"{self.name} line {line}: cannot read the input: {detail} "
            "(is the file truncated or not really gzip?)"
        )

    def _read_header(self) -> None:
        first = self._next_record()
        if first is None:
            raise InputError(f"{self.name}: empty file, no header line")
        start, header = first
        problem = self._problem(self._raw(start, self._line_end), self._line_end)
        if problem:
            raise InputError(f"{self.name} line {start}: header has {problem}")
        if self._eof:
            raise InputError(
                f"{self.name} line {start}: the header opens a quote that is never closed"
            )
        self.header = header
        self.header_line = start

    def find_keys(self, key: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
        """(column, name) of each key column in the header, as named or --map'ped, matched
        as target.resolve() matches names (exactly first, else ignoring case);
        MissingColumnError names the first one missing.  Lets a file without its key fail
        before csvload even connects."""
        where = f"{self.name} line {self.header_line}"
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

    def use_server_encoding(self, name: str | None) -> None:
        """Name the database's encoding (server_encoding, e.g. LATIN1): a record holding a
        character it cannot store is then rejected, rather than failing the whole COPY
        (SQLSTATE 22P05).  UTF8, SQL_ASCII (no conversion) and encodings without a
        Python codec in _SERVER_CODECS are not checked, and cost nothing."""
        codec = _SERVER_CODECS.get((name or "").upper())
        self._server = (name.upper(), codec) if name and codec else None
        if self._server is None:
            return
        # Blocks read so far (the header's, maybe a little more) were judged without it.
        for block in self._kept:
            if block._lines is not None and not block.dirty:
                block.dirty = self._dirty("".join(block._lines))
        self._any_dirty = any(b.dirty for b in self._kept)

    def _dirty(self, text: str) -> bool:
        """_dirty(), and text the database encoding cannot store: a block to check record
        by record.  One encode of the whole block, in C, when it is not ASCII."""
        if _dirty(text, self._single_byte):
            return True
        return (
            self._server is not None and not text.isascii() and self._unstorable(text) is not None
        )

    def _unstorable(self, text: str) -> str | None:
        """The first character of text the database encoding cannot store, if any."""
        assert self._server is not None
        try:
            text.encode(self._server[1])
        except UnicodeEncodeError as e:
            return e.object[e.start]
        return None

    def use_keys(self, keys: tuple[tuple[int, str], ...]) -> None:
        """Name the key columns, (0-based column, name): a record with an empty key is
        rejected."""
        self.keys = keys

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        """Stream the data records in chunks of about batch_size records: a block that
        goes to COPY whole (see _WholeBlocks, about 256K characters) is never split."""
        ncols = len(self.header)
        preset = self._preset
        if not self.keys and preset is None:
            # Nobody bound the file to a table: the default key, sku, as the header has it.
            self.keys = self.find_keys(("sku",))
        keys = [i for i, _ in self.keys] or [0]
        sku = keys[0] if len(keys) == 1 else None
        reader = self._reader
        assert reader is not None and self._counter is not None
        forward_raw = preset is None
        whole = _WholeBlocks(
            ncols, keys, self.delimiter, self.encoding == "utf-8-sig", self._server is not None
        )
        parts: list[bytes] = []  # COPY data: whole blocks, and lines joined
        lines: list[str] = []
        rejects: list[Reject] = []
        runs: list[list[int]] = []  # [first line, records] of good records
        records = rows = skipped = 0
        end = self._line_end
        try:
            while True:
                if reader.line_num == self._handed:
                    # The reader holds no unread line: look at the next block first.
                    block = next(self._raw_blocks, None)
                    if block is None:
                        break
                    data = whole.copy_data(block) if forward_raw else None
                    if data is None:
                        self._handoff = block
                    else:
                        if lines:
                            parts.append(_joined(lines))
                            rows, lines = rows + len(lines), []
                        parts.append(data)
                        n = block.nlines
                        if runs and runs[-1][0] + runs[-1][1] == end + 1:
                            runs[-1][1] += n
                        else:
                            runs.append([end + 1, n])
                        rows, records, self._skipped = rows + n, records + n, self._skipped + n
                        self._line_end = end = end + n
                        if records >= batch_size:
                            yield self._chunk(parts, rows, rejects, runs)
                            parts, rejects, records, rows, runs = [], [], 0, 0, []
                        continue
                try:
                    row = next(reader)
                except StopIteration:
                    break
                start = end + 1
                self._line_end = end = reader.line_num + self._skipped
                if not row:
                    continue  # a blank line
                records += 1
                if (
                    forward_raw
                    and end == start
                    and len(row) == ncols
                    and not self._any_dirty
                    and not self._eof
                    and (row[sku].strip() if sku is not None else all(
                        row[k].strip() for k in keys))
                ):
                    # The common case: one physical line, the newest one read.
                    line = self._block[end - 1 - self._base]
                    if len(line) > FIELD_LIMIT and max(map(len, row)) > FIELD_LIMIT:
                        rejects.append(Reject(start, _TOO_LONG, _strip_terminator(line)))
                        continue
                    line = line.rstrip("\r\n")
                    if ('"' not in line or '"' not in "".join(row)) and line != _END_OF_DATA:
                        # PostgreSQL parses the raw line exactly as Python did.
                        lines.append(line)
                    else:
                        lines.append(_quote_row(row, self.delimiter))
                else:
                    raw = self._raw(start, end)
                    reason = self._check(row, raw, end)
                    if reason is None and preset is not None:
                        try:
                            out = preset.apply(row)
                        except RowRejected as e:
                            reason = e.reason
                        else:
                            if out is None:
                                skipped += 1
                                continue
                            row = out
                    if reason is not None:
                        rejects.append(
                            Reject(start, reason, _strip_terminator(raw), self._key_of(row))
                        )
                        if records >= batch_size:
                            parts.append(_joined(lines))
                            yield self._chunk(parts, rows + len(lines), rejects, runs, skipped)
                            parts, lines, rejects, records, rows, runs = [], [], [], 0, 0, []
                            skipped = 0
                        continue
                    lines.append(_quote_row(row, self.delimiter))
                if runs and runs[-1][0] + runs[-1][1] == start:
                    runs[-1][1] += 1
                else:
                    runs.append([start, 1])
                if records >= batch_size:
                    parts.append(_joined(lines))
                    yield self._chunk(parts, rows + len(lines), rejects, runs, skipped)
                    parts, lines, rejects, records, rows, runs = [], [], [], 0, 0, []
                    skipped = 0
        except csv.Error as e:
            raise self._too_long(end + 1) from e
        if records:
            if lines:
                parts.append(_joined(lines))
            yield self._chunk(parts, rows + len(lines), rejects, runs, skipped)

    def _check(self, row: list[str], raw: str, end: int) -> str | None:
        """Why a record must be rejected, or None.  The slow path: multi-line records,
        dirty blocks, and rows the fast path found wrong.  Values are the server's to
        check (each against its column's type), not the reader's."""
        problem = self._problem(raw, end)
        if problem:
            return problem
        if self._eof:
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

    def _chunk(self, parts, rows: int, rejects: list[Reject], runs, skipped: int = 0) -> Chunk:
        assert self._counter is not None
        return Chunk(b"".join(parts), rows, rejects, self._counter.count, runs, skipped)


def _joined(lines: list[str]) -> bytes:
    # Good records hold no undecodable bytes (their escapes would not encode).
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


class _WholeBlocks:
    """Decides whether a block of lines can go to COPY as it is, unparsed by Python.

    It can when one regular expression, run in C over the whole block, shows that every
    line is one complete, well-formed record: exactly the header's number of fields, each
    either unquoted without a quote character or fully quoted with doubled inner quotes and
    no line break, and key fields that are not blank.  PostgreSQL's COPY (FORMAT csv)
    parses such records exactly as Python's csv module does, and none of them would be
    rejected by the reader, so the block needs no per-record work in Python.  Any other
    block (a blank line, a record spanning
    lines, a stray quote, a wrong field count, a dirty block, mixed line endings) goes
    through the csv reader record by record, as before.  Measured on the 500k benchmark
    file: staging went from about 0.8 s to 0.4 s.
    """

    def __init__(
        self, ncols: int, keys: list[int], delimiter: str, utf8: bool, checked: bool = False
    ) -> None:
        self._utf8 = utf8
        # checked: the database cannot store every character, so a block that is not ASCII
        # is decoded (which checks it, see Source._dirty) before it goes whole.
        self._checked = checked
        self._text = self._patterns(ncols, keys, delimiter, _TEXT_FIELDS)
        # Blocks cut from bytes are matched as bytes; with a non-ASCII delimiter they are
        # decoded and matched as text.
        self._bytes = (
            self._patterns(ncols, keys, delimiter, _BYTE_FIELDS) if delimiter.isascii() else None
        )

    @staticmethod
    def _patterns(ncols, keys, delimiter, kind) -> tuple[re.Pattern, re.Pattern]:
        """The (LF, CRLF) patterns of a run of records, for str or bytes (kind)."""
        any_field, key_field, encode = kind
        d = re.escape(delimiter)
        fields = [any_field.format(d=d)] * ncols
        for k in keys:
            fields[k] = key_field.format(d=d, key=_key_class(delimiter))
        record = d.join(fields)
        return (
            re.compile(encode(f"(?:{record}\\n)*+")),
            re.compile(encode(f"(?:{record}\\r\\n)*+")),
        )

    def copy_data(self, block: _Block) -> bytes | None:
        """The block as COPY data (UTF-8, line ends made LF), or None if it needs the
        csv reader."""
        data = self._matched(block)
        # A line that is just \. ends COPY FROM STDIN (FORMAT csv) before PostgreSQL 18
        # (copyfromparse.c; only at the start of a line outside quotes): a block holding
        # one goes to the csv reader, which quotes that record.  The patterns let no CR
        # through but in a CRLF, which _matched() makes LF, so no \. then CR either.
        # A backslash is looked for first: memchr takes 2 us a block, the search for the
        # whole line 0.3 ms (15% of the 500k file's reading).
        if data is None or (b"\\" in data and (
            data.startswith(b"\\.\n") or b"\n\\.\n" in data
        )):  # fmt: skip
            return None
        return data

    def _matched(self, block: _Block) -> bytes | None:
        raw = block.raw
        if raw is not None and self._bytes is not None:
            if len(raw) > FIELD_LIMIT or not raw.endswith(b"\n") or b"\x00" in raw:
                return None
            ascii = raw.isascii()
            if ascii or (self._utf8 and not self._checked and _valid_utf8(raw)):
                lf, crlf = self._bytes
                if b"\r" not in raw:
                    if lf.fullmatch(raw):
                        return raw
                elif crlf.fullmatch(raw):
                    return raw.replace(b"\r\n", b"\n")
            if ascii:
                return None  # the text patterns accept no more of an ASCII block
        # Text: the encodings read through a TextIOWrapper, and non-ASCII byte blocks the
        # bytes patterns turned down (a sku of only non-ASCII characters, say) or that
        # the database encoding must be checked against (block.dirty).
        text = "".join(block.lines)
        if block.dirty or len(text) > FIELD_LIMIT or not text.endswith("\n"):
            return None
        lf, crlf = self._text
        if "\r" not in text:
            return text.encode("utf-8") if lf.fullmatch(text) else None
        return text.replace("\r\n", "\n").encode("utf-8") if crlf.fullmatch(text) else None


# The field patterns of _WholeBlocks, for str and for bytes: any field, and a key field;
# {d} is the escaped delimiter.  A field is either fully quoted (doubled quotes inside, no
# line break) or unquoted without a quote.  A key must not be blank after str.strip():
# for str, \s is exactly the whitespace strip() removes; for bytes, the key must hold a
# printable ASCII character ({key}), so a key of only non-ASCII characters is left to the
# text pattern.
_QUOTED = '"[^"\\r\\n]*+(?:""[^"\\r\\n]*+)*+"'
_TEXT_FIELDS = (
    "(?:" + _QUOTED + '|[^"{d}\\r\\n]*+)',
    '(?:"[^\\S"\\r\\n]*+(?:[^\\s"]|"")[^"\\r\\n]*+(?:""[^"\\r\\n]*+)*+"'
    '|[^\\S"{d}\\r\\n]*+[^\\s"{d}][^"{d}\\r\\n]*+)',
    str,
)
_BYTE_FIELDS = (
    _TEXT_FIELDS[0],
    '(?:"[^!-~\\r\\n]*+(?:[!#-~]|"")[^"\\r\\n]*+(?:""[^"\\r\\n]*+)*+"'
    '|[^!-~"{d}\\r\\n]*+{key}[^"{d}\\r\\n]*+)',
    lambda pattern: pattern.encode("ascii"),
)


def _key_class(delimiter: str) -> str:
    """A class of the printable ASCII characters but the quote and the delimiter."""
    keys = (chr(c) for c in range(0x21, 0x7F))
    return "[" + "".join(re.escape(c) for c in keys if c not in ('"', delimiter)) + "]"


def _valid_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _quote_row(row: list[str], delimiter: str) -> str:
    return delimiter.join(['"' + f.replace('"', '""') + '"' for f in row])


def _strip_terminator(raw: str) -> str:
    if raw.endswith("\r\n"):
        return raw[:-2]
    return raw[:-1] if raw.endswith(("\n", "\r")) else raw


def _dirty(text: str, single_byte: bool) -> bool:
    """Whether text has a NUL, undecodable bytes or (single_byte) non-ASCII characters
    that may be UTF-8 read as a single-byte encoding: its records are checked one by one."""
    return "\x00" in text or (not text.isascii() and (single_byte or not _encodable(text)))


def _encodable(text: str) -> bool:
    """False when text holds escaped undecodable bytes (lone surrogates); encoding is about
    twice as fast as searching for them with a regex."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _looks_like_utf8(line: str, encoding: str) -> bool:
    try:
        line.encode(encoding).decode("utf-8")
    except UnicodeError:
        return False
    return True


def _preview(value: str, limit: int = 20) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
