"""The rejects file: every rejected record with its line, its reason and its raw text.

It is written through files.OutputFile: to a temp file beside the target, renamed into
place when the import ends, committed or not (the file says why an import failed), but only
when it was written whole.  It is created only when there is something to write.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable
from pathlib import Path

from csvload.files import OutputFile
from csvload.read.chunks import Reject
from csvload.read.remote.urls import is_remote, local_name

HEADER = ("line", "reason", "record")
# When rejects name their input (several files, or a sheet): the file column first.
LABELLED_HEADER = ("file", *HEADER)

# Undecodable input bytes, as the source's decoder escaped them (U+DC00 + byte).
_ESCAPED = re.compile("([\udc00-\udcff]+)")


def default_path(input_path: str, cwd: Path) -> Path:
    """Beside the input as <input>.rejects.csv; for stdin or a URL, in the current
    directory."""
    if input_path == "-":
        return cwd / "stdin.rejects.csv"
    if is_remote(input_path):  # a URL: named after its file, in the current directory
        return cwd / (local_name(input_path) + ".rejects.csv")
    return Path(input_path + ".rejects.csv")


class RejectsWriter:
    def __init__(self, path: Path, encoding: str, labelled: bool = False):
        self.path = path
        self._labelled = labelled
        # Written in the input's encoding, undecodable input bytes restored as they were,
        # so a record can be fixed and fed back with the same --encoding.  The incremental
        # encoder writes a UTF-16 BOM once, at the start.
        self._encoder = codecs.getincrementalencoder(
            "utf-8" if encoding == "utf-8-sig" else encoding
        )()
        self._file = OutputFile(path, "rejects file")
        self._rows = io.StringIO()
        # "\r\n" as the terminator makes the writer quote a field holding a lone CR too
        # (with "\n" it would not, and a CR-only record would break the file's rows).
        self._writer = csv.writer(self._rows, lineterminator="\r\n")
        self.count = 0

    def write(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            if not self._file.opened:
                self._open()
            row = (reject.line, reject.reason, reject.raw)
            self._writer.writerow((reject.file or "", *row) if self._labelled else row)
            self.count += 1
        self._flush()

    def _flush(self) -> None:
        text = self._rows.getvalue()
        if not text:
            return
        self._rows.seek(0)
        self._rows.truncate()
        for i, part in enumerate(_ESCAPED.split(text)):
            if i % 2:
                self._file.write(bytes(ord(c) - 0xDC00 for c in part))
            elif part:
                self._file.write(self._encoder.encode(part))

    def _open(self) -> None:
        self._file.open()
        self._writer.writerow(LABELLED_HEADER if self._labelled else HEADER)

    def ready(self) -> None:
        """Flush and fsync it, before the import commits."""
        self._file.ready()

    def finish(self) -> Path | None:
        """Put the file in place; None when there were no rejects, or when it could not be
        written whole (that error has been raised already)."""
        return self._file.finish()

    def discard(self) -> None:
        self._file.discard()
