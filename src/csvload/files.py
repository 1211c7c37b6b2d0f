"""The files an import writes beside the user's (rejects, changes, and any to come): which
paths may be written, and how each file gets there.

The rules, checked together for every output of a run by check_outputs() before anything
is read (the CLI, the library and the config file's paths all go through it):

- an output must not be the input file, nor another output of the same run (compared by
  real path, and by device and inode where the file exists, so `./in.csv`, a hard link or
  a path through a symlinked folder is caught too);
- an output is a new path or an existing regular file, which it replaces.  A directory, a
  device (/dev/null), a FIFO, a socket or a symbolic link is refused: the rename that puts
  the file in place would replace the special file or the link itself, and following a
  link planted at the default rejects path would write wherever it points.

Each file is written to a temp file in the target's directory (so the rename is atomic),
flushed and fsynced by ready() while the import's transaction is still open, so that a
full disk rolls the import back, and renamed into place by finish() only once complete.
A file that failed to write is never renamed; its temp file is removed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from csvload.errors import OutputPathError, OutputWriteError

# What an existing path is, for the message that refuses it.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def check_outputs(input: str | int | None, outputs: Sequence[tuple[str, Path]]) -> None:
    """Refuse outputs (option, path) that name the input (a path, or the descriptor stdin
    reads from; None when unknown), each other, or anything but a new path or a regular
    file.  Raises OutputPathError naming the option."""
    source = None if input == "-" else _identity(input)
    seen: list[tuple[str, str, tuple[int, int] | None]] = []
    for option, path in outputs:
        identity = _identity(str(path))
        if source is not None and identity == source:
            raise OutputPathError(option, "must not be the input file")
        real = os.path.realpath(path)
        for other, other_real, other_identity in seen:
            if real == other_real or (identity is not None and identity == other_identity):
                raise OutputPathError(option, f"must not be the {_what(other)}")
        problem = _not_replaceable(path)
        if problem:
            raise OutputPathError(option, problem)
        seen.append((option, real, identity))


def _not_replaceable(path: Path) -> str | None:
    """Why the rename must not replace what is at `path`; None for a regular file or a
    new path (or one that cannot be looked at: writing the temp file will say why)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    if stat.S_ISLNK(mode):
        return f"{path} is {kind} (give the file it points to, or another path)"
    return f"{path} is {kind} (give a regular file or a new path)"


def _identity(path: str | int | None) -> tuple[int, int] | None:
    """(device, inode) of the file a path (through links) or descriptor names; None when
    there is none."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _what(option: str) -> str:
    """--rejects -> 'rejects file'."""
    return f"{option.lstrip('-')} file"


class OutputFile:
    """One output written through a temp file beside `path`: write(), then ready() before
    the import commits, then finish() to rename it into place, or discard()."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self._what = what
        self._tmp: str | None = None
        self._file: BinaryIO | None = None
        self._ready = False
        self._broken = False  # a write failed: the temp file must never be put in place

    @property
    def opened(self) -> bool:
        return self._file is not None

    def open(self) -> None:
        directory = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
        except OSError as e:
            self._broken = True
            raise self._error(e) from e
        # mkstemp makes the file 0600; give it the mode the user's umask asks for.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        self._file = open(fd, "wb")  # noqa: SIM115 - closed in finish()/discard()
        self._broken = False

    def write(self, data: bytes) -> None:
        assert self._file is not None
        self._ready = False
        try:
            self._file.write(data)
        except OSError as e:  # ENOSPC, EFBIG, EIO: what is in the temp file is not whole
            self._broken = True
            raise self._error(e) from e

    def restart(self) -> None:
        """Empty the file, to write it again from the start."""
        assert self._file is not None
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError as e:
            self._broken = True
            raise self._error(e) from e
        self._ready = False

    def ready(self) -> None:
        """Flush and fsync the temp file and check that the target may still be replaced:
        before the import commits, so that a full disk rolls it back."""
        if self._file is None or self._ready:
            return
        if self._broken:
            raise OutputWriteError(
                f"{self.path}: cannot write the {self._what}: an earlier write failed;"
                " nothing was imported"
            )
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            self._broken = True
            raise self._error(e) from e
        # The up-front check, again: a directory made at the target since then would
        # only fail the rename, after the commit.
        problem = _not_replaceable(self.path)
        if problem:
            self._broken = True
            raise OutputWriteError(
                f"{self.path}: cannot write the {self._what}: {problem}; nothing was imported"
            )
        self._ready = True

    def finish(self) -> Path | None:
        """Put the file in place (after ready()); None when it was never opened or could
        not be written whole, in which case the temp file is removed."""
        if self._file is None:
            return None
        if self._broken:
            self.discard()
            return None
        try:
            self.ready()
        except BaseException:
            self.discard()
            raise
        self._file.close()
        self._file = None
        assert self._tmp is not None
        try:
            os.replace(self._tmp, self.path)
        except OSError as e:
            # ready() has checked all a rename needs, so only a race gets here, maybe
            # after the commit: keep the whole file where it is, and say where.
            raise OutputWriteError(
                f"{self.path}: cannot put the {self._what} in place: {e.strerror}"
                f" (it is left at {self._tmp})"
            ) from e
        return self.path

    def discard(self) -> None:
        """Close and remove the temp file; never raises for a write that already failed."""
        if self._file is None:
            return
        # close() flushes what is buffered, which may fail again on a full disk; the file
        # is being thrown away, and close() releases the descriptor all the same.
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None
        assert self._tmp is not None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def _error(self, e: OSError) -> OutputWriteError:
        return OutputWriteError(
            f"{self.path}: cannot write the {self._what}: {e.strerror}; nothing was imported"
        )
