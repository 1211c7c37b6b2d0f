"""The rejects file: every rejected record with its line, its reason and its raw text.

It is written to a temporary file beside the target and renamed into place when the
import ends, so a reader never sees half of it, and a symlink planted at the target is
replaced rather than followed.  It is created only when there is something to write.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

from csvload.files import AtomicFile
from csvload.source import Reject

HEADER = ("line", "reason", "record")

# Undecodable input bytes, as the source's decoder escaped them (U+DC00 + byte).
_ESCAPED = re.compile("([\udc00-\udcff]+)")


def default_path(input_path: str, cwd: Path) -> Path:
    """Beside the input as <input>.rejects.csv; for stdin, in the current directory."""
    if input_path == "-":
        return cwd / "stdin.rejects.csv"
    return Path(input_path + ".rejects.csv")


class RejectsWriter:
    def __init__(self, path: Path, encoding: str):
        self.path = path
        # Written in the input's encoding, undecodable input bytes restored as they were,
        # so a record can be fixed and fed back with the same --encoding.  The incremental
        # encoder writes a UTF-16 BOM once, at the start.
        self._encoder = codecs.getincrementalencoder(
            "utf-8" if encoding == "utf-8-sig" else encoding
        )()
        self._atomic = AtomicFile(path, "rejects file")
        self._file = None
        self._rows = io.StringIO()
        # "\r\n" as the terminator makes the writer quote a field holding a lone CR too
        # (with "\n" it would not, and a CR-only record would break the file's rows).
        self._writer = csv.writer(self._rows, lineterminator="\r\n")
        self.count = 0

    def write(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            if self._file is None:
                self._open()
            self._writer.writerow((reject.line, reject.reason, reject.raw))
            self.count += 1
        self._flush()

    def _flush(self) -> None:
        text = self._rows.getvalue()
        if not text:
            return
        self._rows.seek(0)
        self._rows.truncate()
        assert self._file is not None
        for i, part in enumerate(_ESCAPED.split(text)):
            if i % 2:
                self._file.write(bytes(ord(c) - 0xDC00 for c in part))
            elif part:
                self._file.write(self._encoder.encode(part))

    def _open(self) -> None:
        self._file = self._atomic.open()
        self._writer.writerow(HEADER)

    def finish(self) -> Path | None:
        """Put the file in place; None when there were no rejects."""
        self._file = None
        return self._atomic.finish()

    def discard(self) -> None:
        self._file = None
        self._atomic.discard()
