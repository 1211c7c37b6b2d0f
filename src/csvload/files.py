"""Files csvload writes beside the user's: through a temporary file in the same directory,
renamed into place only when complete, so a reader never sees half of one and a symlink
planted at the target is replaced rather than followed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from csvload.errors import CsvloadError


class AtomicFile:
    """A file written through a temp file beside `path`; finish() renames it into place,
    discard() removes it."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self._what = what
        self._tmp: str | None = None
        self.file: BinaryIO | None = None

    def open(self) -> BinaryIO:
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
        except OSError as e:
            raise CsvloadError(f"{self.path}: cannot write the {self._what}: {e.strerror}") from e
        # mkstemp makes the file 0600; give it the mode the user's umask asks for.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        self.file = open(fd, "wb")  # noqa: SIM115 - closed in finish()/discard()
        return self.file

    def finish(self) -> Path | None:
        """Put the file in place; None when it was never opened."""
        if self.file is None:
            return None
        self.file.close()
        assert self._tmp is not None
        os.replace(self._tmp, self.path)
        self.file = None
        return self.path

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            assert self._tmp is not None
            os.unlink(self._tmp)
            self.file = None
