"""Whole blocks: whether a block of lines can go to COPY as it is, unparsed by Python.

It can when one regular expression, run in C over the whole block, shows that every line
is one complete, well-formed record: exactly the header's number of fields, each either
unquoted without a quote character or fully quoted with doubled inner quotes and no line
break, and key fields that are not blank.  PostgreSQL's COPY (FORMAT csv) parses such
records exactly as Python's csv module does, and the reader would reject none of them.
"""

from __future__ import annotations

import re

from csvload.read.lines import FIELD_LIMIT, Block


class WholeBlocks:
    """Matches blocks against the patterns of one header (its width, its key columns,
    its delimiter).  A block that does not match (a blank line, a record spanning lines, a
    stray quote, a wrong field count, a dirty block, mixed line ends) goes through the csv
    reader record by record.  On the 500k benchmark file this took staging from about
    0.8 s to 0.4 s."""

    def __init__(
        self, ncols: int, keys: list[int], delimiter: str, utf8: bool, checked: bool = False
    ) -> None:
        self._utf8 = utf8
        # checked: the database cannot store every character, so a block that is not ASCII
        # is decoded (which checks it, see TextChecks.dirty) before it goes whole.
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

    def copy_data(self, block: Block) -> bytes | None:
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

    def _matched(self, block: Block) -> bytes | None:
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


# The field patterns of WholeBlocks, for str and for bytes: any field, and a key field;
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
