"""The input's physical lines, read a block at a time: cutting blocks at line ends (from the
raw bytes, or from decoded text), numbering lines, keeping the blocks the record being
parsed may span, and giving a record's raw text back.

Every read path holds at most _LINE_LIMIT (64 MiB) of a line whose end has not come: a
file without line ends fails fast, in bounded memory.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

from csvload.errors import InputError
from csvload.read.encoding import ERRORS

# The largest field csvload accepts: 16 MiB, 128x Python csv's default of 131072.  A
# larger field is rejected with its line; past CSV_HARD_LIMIT the csv module itself gives
# up, and since it cannot resynchronise after that, the file is refused as a whole.
FIELD_LIMIT = 16 * 1024 * 1024
CSV_HARD_LIMIT = 4 * FIELD_LIMIT
# The most of one physical line (bytes, or characters for the encodings read as text) the
# reader holds while it waits for the line's end: past it the file is refused, so that a
# file without line ends (a binary, /dev/zero) fails fast in bounded memory.  A line that
# is just over the limit but ends within the same read still reaches the csv module, which
# names a field past CSV_HARD_LIMIT itself.
_LINE_LIMIT = CSV_HARD_LIMIT
_BLOCK = 1 << 18  # characters (or bytes) of lines per block
# What reading a damaged input raises: gzip.BadGzipFile is an OSError, a truncated gzip
# stream an EOFError, corrupt deflate data a zlib.error.
READ_ERRORS = (OSError, EOFError, zlib.error)


class Block:
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

    def judge(self, dirty: Callable[[str], bool]) -> None:
        """Judge the lines decoded so far again (the checks have grown)."""
        if self._lines is not None and not self.dirty:
            self.dirty = dirty("".join(self._lines))


class Lines:
    """The blocks of one input and the bookkeeping of its line numbers.

    The csv reader pulls its lines from reader_lines(); Source.chunks() may take a block
    first (take()) and either forward it whole (forwarded()) or hand it on to the reader
    (handoff).  A physical line number is then reader.line_num + skipped.
    """

    __slots__ = (
        "name", "encoding", "dirty", "blocks", "kept", "block", "base", "next_base",
        "any_dirty", "eof", "line_end", "skipped", "handed", "handoff",
    )  # fmt: skip

    def __init__(self, name: str, encoding: str, dirty: Callable[[str], bool]) -> None:
        self.name = name  # the input, as messages name it
        self.encoding = encoding
        self.dirty = dirty  # whether a block's text must be checked record by record
        self.blocks: Iterator[Block] = iter(())
        # kept: every block that may hold a line of the record being parsed.  block and
        # base: the lines and base of the newest one the csv reader took.  next_base: the
        # lines read.  line_end: the physical line where the last record ended.
        self.kept: list[Block] = []
        self.block: list[str] = []
        self.base = 0
        self.next_base = 0
        self.any_dirty = False  # a kept block has a NUL, undecodable bytes or mojibake
        self.eof = False
        self.line_end = 0
        # skipped: lines forwarded whole, which the csv reader never saw; handed: the lines
        # given to the reader; handoff: a block taken and handed on to the reader.
        self.skipped = 0
        self.handed = 0
        self.handoff: Block | None = None

    # -- reading blocks --------------------------------------------------------------------

    def read_bytes(self, binary: BinaryIO, codec: str) -> None:
        """Cut blocks from the raw bytes, for codecs whose line ends are the bytes CR and
        LF and nothing else is."""
        self.blocks = self._byte_blocks(binary, codec)

    def read_text(self, text: io.TextIOWrapper) -> None:
        """Cut blocks from decoded text, for the other codecs (UTF-16, UTF-32, ...)."""
        self.blocks = self._text_blocks(text)

    def _text_blocks(self, text: io.TextIOWrapper) -> Iterator[Block]:
        # StringIO.readlines() splits a block's lines in C (on CR, LF and CRLF, as the csv
        # module expects with newline=""), and the csv reader pulls them through a C
        # iterator, so Python runs once per block here rather than once per line.
        for chunk in self._whole_lines(text.readline, text.read, ""):
            lines = io.StringIO(chunk, newline="").readlines()
            dirty = self.dirty(chunk)
            yield self._admit(Block(self.next_base, len(lines), None, lines, dirty, None))
        # The csv module asks past the last line only while inside a quoted field.
        self.eof = True

    def _byte_blocks(self, binary: BinaryIO, codec: str) -> Iterator[Block]:
        for raw in self._whole_lines(binary.readline, binary.read, b""):
            yield self._admit(self._byte_block(raw, codec))
            codec = "utf-8" if codec == "utf-8-sig" else codec  # a BOM only starts a file
        self.eof = True

    def _byte_block(self, raw: bytes, codec: str) -> Block:
        dirty = self.dirty

        def decode(raw: bytes) -> tuple[list[str], bool]:
            text = raw.decode(codec, ERRORS)
            return io.StringIO(text, newline="").readlines(), dirty(text)

        return Block(self.next_base, count_lines(raw), raw, None, False, decode)

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
            data, first = self._read(first), read
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
                    raise InputError(
                        f"{self.name} line {self.next_base + 1}: a line is longer than "
                        f"{_LINE_LIMIT >> 20} MiB, the file cannot be read (is this really a "
                        "CSV file?)"
                    )

    def _read(self, read):
        try:
            return read(_BLOCK)
        except READ_ERRORS as e:
            raise read_error(self.name, e, self.next_base + 1) from e
        except UnicodeError as e:
            # Undecodable bytes never get here (ERRORS escapes them); what does is the
            # UTF-16/32 decoder refusing a stream that does not start with a BOM.
            raise InputError(
                f"{self.name} line {self.next_base + 1}: {e} (name the byte "
                f"order: --encoding {self.encoding}-le or {self.encoding}-be)"
            ) from e

    def _admit(self, block: Block) -> Block:
        """Keep block, and forget the blocks before the record being parsed."""
        first_needed = self.line_end + 1  # where the record being parsed starts
        self.kept = [b for b in self.kept if b.base + b.nlines >= first_needed]
        self.kept.append(block)
        self.next_base += block.nlines
        return block

    # -- the csv reader's side -------------------------------------------------------------

    def reader_lines(self) -> Iterator[list[str]]:
        """The csv reader's blocks: the one handed on, or, when the reader asks for more
        lines inside a record (or for the header), simply the next one."""
        while True:
            if self.handoff is not None:
                block, self.handoff = self.handoff, None
            else:
                block = next(self.blocks, None)
                if block is None:
                    return
            lines = block.lines
            self.any_dirty = any(b.dirty for b in self.kept)
            self.base, self.block = block.base, lines
            self.handed += len(lines)
            yield lines

    def forwarded(self, block: Block) -> int:
        """Count a block that went to COPY whole, unseen by the csv reader; its first line."""
        first = self.line_end + 1
        self.skipped += block.nlines
        self.line_end += block.nlines
        return first

    def raw(self, start: int, end: int) -> str:
        """The text of physical lines start..end (1-based, inclusive)."""
        parts: list[str] = []
        for block in self.kept:
            base = block.base
            lo, hi = max(start - 1 - base, 0), min(end - base, block.nlines)
            if lo < hi:
                parts.extend(block.lines[lo:hi])
        return "".join(parts)

    def judge_again(self) -> None:
        """Judge the blocks read so far again: the checks have grown."""
        for block in self.kept:
            block.judge(self.dirty)
        self.any_dirty = any(b.dirty for b in self.kept)


def count_lines(raw: bytes) -> int:
    """Physical lines in raw, split as io does with newline="" (CR, LF, CRLF)."""
    n = raw.count(b"\n")
    if b"\r" in raw:
        n += raw.count(b"\r") - raw.count(b"\r\n")
    return n if raw.endswith((b"\n", b"\r")) else n + 1


def read_error(name: str, error: Exception, line: int) -> InputError:
    """The one-line error for an input that cannot be read at line."""
    detail = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return InputError(
        f"{name} line {line}: cannot read the input: {detail} "
        "(is the file truncated or not really gzip?)"
    )
