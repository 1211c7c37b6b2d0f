"""The error cells of an .xlsx sheet (#N/A, #DIV/0!, ...), which python-calamine gives as
empty cells: read from the sheet's XML, so that a row holding one is a reject rather than a
row whose value silently went missing.

The sheet's XML is decompressed and searched a megabyte at a time for the mark of an error
cell (`t="e"`), on a thread of its own while calamine loads the sheet (both leave the GIL:
on two cores it costs the import next to no time).  Only the .xlsx family is searched;
.xls, .xlsb and .ods keep error cells empty (docs/excel-and-many-files.md).
"""

from __future__ import annotations

import posixpath
import re
import threading
import zipfile
from xml.etree import ElementTree

SUFFIXES = (".xlsx", ".xlsm")
_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_MARK = b't="e"'
# A cell with content (never a self-closing <c .../>): its attributes, then what is in it.
_CELL = re.compile(rb"<(?:\w+:)?c(\s[^>]*?)?(?<!/)>(.*?)</(?:\w+:)?c>", re.S)
_REF = re.compile(rb'\br="([A-Z]+)([0-9]+)"')
_VALUE = re.compile(rb"<(?:\w+:)?v>([^<]*)</(?:\w+:)?v>")
_TAIL = 1 << 16  # kept from one read to the next: an error cell cut in two is found whole
_READ = 1 << 20


class ErrorCells:
    """Searches one sheet for error cells in the background; found() waits for it and
    gives {row number: [(0-based column, the error as the sheet shows it)]}."""

    def __init__(self, path: str, sheet: str):
        self._found: dict[int, list[tuple[int, str]]] = {}
        self._thread = threading.Thread(
            target=self._search, args=(path, sheet), name="csvload-xlsx-errors", daemon=True
        )
        self._thread.start()

    def found(self) -> dict[int, list[tuple[int, str]]]:
        self._thread.join()
        return self._found

    def _search(self, path: str, sheet: str) -> None:
        # A workbook calamine cannot read is its error to report; what is not found here
        # only leaves error cells empty, as calamine gives them.
        try:
            with zipfile.ZipFile(path) as book:
                part = _sheet_part(book, sheet)
                if part is not None:
                    with book.open(part) as xml:
                        self._scan(xml)
        except (OSError, zipfile.BadZipFile, KeyError, ElementTree.ParseError, EOFError):
            return

    def _scan(self, xml) -> None:
        seen: set[tuple[int, int]] = set()
        tail = b""
        while data := xml.read(_READ):
            data = tail + data
            if _MARK in data:
                for match in _CELL.finditer(data):
                    attributes = match.group(1) or b""
                    ref = _REF.search(attributes) if _MARK in attributes else None
                    if ref is None:
                        continue
                    column, row = _column_index(ref.group(1)), int(ref.group(2))
                    if (row, column) in seen:
                        continue
                    seen.add((row, column))
                    value = _VALUE.search(match.group(2))
                    text = value.group(1).decode("utf-8", "replace") if value else "#VALUE!"
                    self._found.setdefault(row, []).append((column, text))
            tail = data[-_TAIL:]


def _sheet_part(book: zipfile.ZipFile, sheet: str) -> str | None:
    """The zip member holding the sheet named `sheet`."""
    workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
    rid = next(
        (s.get(_REL) for s in workbook.iter(f"{_MAIN}sheet") if s.get("name") == sheet), None
    )
    rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    for rel in rels.iter(f"{_RELS}Relationship"):
        if rel.get("Id") == rid:
            target = rel.get("Target", "")
            if target.startswith("/"):
                return target[1:]
            return posixpath.normpath(posixpath.join("xl", target))
    return None


def _column_index(letters: bytes) -> int:
    """b"A" -> 0, b"AA" -> 26."""
    index = 0
    for c in letters:
        index = index * 26 + c - 64
    return index - 1
