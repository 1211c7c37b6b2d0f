"""The input's encoding: naming its codec, keeping undecodable bytes (as lone surrogates),
and judging text that cannot be staged as it is: NULs, undecodable bytes, UTF-8 read as a
single-byte encoding, characters the database encoding cannot store."""

from __future__ import annotations

import codecs
import re

from csvload.errors import InputError

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
_SINGLE_BYTE = ("iso8859-1", "cp1252", "latin-1")
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


class TextChecks:
    """What the reader checks decoded text for, given the input's encoding (as the user
    named it, and its codec) and, once use_server_encoding() names it, the database's."""

    def __init__(self, name: str, given: str, codec: str) -> None:
        self.name = name  # the input, as messages name it
        self.given = given  # the encoding as the user wrote it
        self.codec = codec
        self.single_byte = codec in _SINGLE_BYTE
        # (PostgreSQL name, Python codec) of a database encoding that cannot store every
        # character; None for UTF8 and the rest.
        self.server: tuple[str, str] | None = None

    def use_server_encoding(self, name: str | None) -> bool:
        """Name the database's encoding (server_encoding, e.g. LATIN1); whether it is one
        that is checked.  UTF8, SQL_ASCII (no conversion) and encodings without a Python
        codec in _SERVER_CODECS are not, and cost nothing."""
        codec = _SERVER_CODECS.get((name or "").upper())
        self.server = (name.upper(), codec) if name and codec else None
        return self.server is not None

    def dirty(self, text: str) -> bool:
        """Whether text has a NUL, undecodable bytes, (single-byte encodings) non-ASCII
        characters that may be UTF-8, or characters the database encoding cannot store:
        its records are then checked one by one.  One encode of the whole text, in C, when
        it is not ASCII."""
        if "\x00" in text:
            return True
        if text.isascii():
            return False
        if self.single_byte or not _encodable(text):
            return True
        return self.server is not None and self.unstorable(text) is not None

    def problem(self, raw: str, line: int) -> str | None:
        """What is wrong with a record's text, if anything.  Undecodable bytes come first:
        a UTF-16 file read as UTF-8 is full of NULs too, and "check --encoding" is the
        useful answer there."""
        if raw.isascii():
            return "NUL byte in record" if "\x00" in raw else None
        if _SURROGATE.search(raw):
            return f"bytes that are not valid {self.given} (check --encoding)"
        if "\x00" in raw:
            return "NUL byte in record"
        if self.single_byte and _looks_like_utf8(raw, self.codec):
            raise InputError(
                f"{self.name} line {line}: text is valid UTF-8 but --encoding "
                f"{self.given} was given (use --encoding utf-8)"
            )
        if self.server is not None:
            char = self.unstorable(raw)
            if char is not None:
                return f"a character the database encoding {self.server[0]} cannot store: {char!r}"
        return None

    def unstorable(self, text: str) -> str | None:
        """The first character of text the database encoding cannot store, if any."""
        assert self.server is not None
        try:
            text.encode(self.server[1])
        except UnicodeEncodeError as e:
            return e.object[e.start]
        return None


def storable(text: str) -> bool:
    """Whether PostgreSQL could hold text at all: no NUL, and no bytes the file's encoding
    could not decode (kept as lone surrogates, see ERRORS)."""
    return "\x00" not in text and _encodable(text)


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
