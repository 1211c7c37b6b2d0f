"""The rejects file: every rejected record with its line, its reason and its raw text.

It is written to a temporary file beside the target and renamed into place when the
import ends, so a reader never sees half of it, and a symlink planted at the target is
replaced rather than followed.  It is created only when there is something to write.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from csvload.errors import CsvloadError
from csvload.source import Reject

HEADER = ("line", "reason", "record")


def default_path(input_path: str, cwd: Path) -> Path:
    """Beside the input as <input>.rejects.csv; for stdin, in the current directory."""
    if input_path == "-":
        return cwd / "stdin.rejects.csv"
    return Path(input_path + ".rejects.csv")


class RejectsWriter:
    def __init__(self, path: Path, encoding: str):
        self.path = path
        # Write in the input's encoding with surrogateescape, so undecodable input bytes
        # come back out exactly as they were read.
        self._encoding = "utf-8" if encoding == "utf-8-sig" else encoding
        self._file = None
        self._tmp: str | None = None
        self._writer = None
        self.count = 0

    def write(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            if self._writer is None:
                self._open()
            assert self._writer is not None
            self._writer.writerow((reject.line, reject.reason, reject.raw))
            self.count += 1

    def _open(self) -> None:
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
        except OSError as e:
            raise CsvloadError(f"{self.path}: cannot write the rejects file: {e.strerror}") from e
        # mkstemp makes the file 0600; give it the mode the user's umask asks for.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        self._file = open(  # noqa: SIM115 - closed in finish()/discard()
            fd, "w", encoding=self._encoding, errors="surrogateescape", newline=""
        )
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(HEADER)

    def finish(self) -> Path | None:
        """Put the file in place; None when there were no rejects."""
        if self._file is None:
            return None
        self._file.close()
        assert self._tmp is not None
        os.replace(self._tmp, self.path)
        self._file = None
        return self.path

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            assert self._tmp is not None
            os.unlink(self._tmp)
            self._file = None
