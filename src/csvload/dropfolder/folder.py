"""The drop folder on disk: which files in it are complete, the lock that keeps a second
watcher out, and filing a file away into done/ or failed/ with its rejects and .error files.

- A file is a candidate when it is a regular file (or a link to one) directly in the
  folder, its name does not start with a dot and does not end in .part or .tmp (any case).
  It is complete when its size, modification time and inode are the same on two looks
  `settle` seconds apart: the sender's convention is to write under a .part name (or
  elsewhere on the same filesystem) and rename when done; the two looks are the fallback
  for senders that write in place.
- The lock is flock() on DIR/.csvload-watch.lock, taken without waiting: a second watcher
  gets DropFolderError naming the holder.  The kernel drops the lock when the process dies
  however it dies, so a stale lock file is harmless; it is never removed (removing it would
  let two watchers lock two different files).
- Filing away renames within the folder (atomic, the same filesystem): the rejects file
  and the .error file first, the data file last, so a crash in between leaves the file
  where it was (it is looked at again on restart) and never loses it.  A name already taken
  in done/ or failed/ gets a -1, -2, ... suffix before its extension: nothing is replaced.
  Only the lock holder writes there, so looking for a free name and then renaming is safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from csvload.errors import DropFolderError

PARTIAL = (".part", ".tmp")  # names of files still being written, by convention
LOCK = ".csvload-watch.lock"
WORK = ".csvload"  # where rejects files are written while a file is imported
DONE, FAILED = "done", "failed"
REJECTS, ERROR = ".rejects.csv", ".error"  # beside a filed-away file: <file><suffix>


@dataclass(frozen=True)
class Arrival:
    """A candidate file as one look saw it."""

    path: Path
    size: int
    mtime_ns: int
    inode: int

    @property
    def name(self) -> str:
        return self.path.name


class DropFolder:
    def __init__(self, path: Path):
        self.path = Path(os.path.realpath(path))
        self.work = self.path / WORK

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock, or raise DropFolderError at once when another watcher
        holds it."""
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DropFolderError(f"{self.path}: cannot watch: {lock}: {e.strerror}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                raise DropFolderError(
                    f"{self.path}: another csvload watch holds this folder"
                    f"{f' ({holder})' if holder else ''}; nothing was done"
                    " (one watcher per folder)"
                ) from e
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            self._make(self.work)
            yield
        finally:
            os.close(fd)

    def look(self) -> dict[str, Arrival]:
        """The candidate files in the folder now, by name."""
        found: dict[str, Arrival] = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.lower().endswith(PARTIAL):
                    continue
                try:
                    if not entry.is_file():  # done/, failed/, any other folder or device
                        continue
                    st = entry.stat()
                except FileNotFoundError:  # renamed away since the listing
                    continue
                found[name] = Arrival(Path(entry.path), st.st_size, st.st_mtime_ns, st.st_ino)
        return found

    def complete(self, settle: float, sleep: Callable[[float], None]) -> list[Arrival]:
        """The files that stayed the same over `settle` seconds, oldest first (by
        modification time, then name)."""
        first = self.look()
        if not first:
            return []
        if settle > 0:
            sleep(settle)
        ready = [a for name, a in self.look().items() if first.get(name) == a]
        return sorted(ready, key=lambda a: (a.mtime_ns, a.name))

    def unchanged(self, arrival: Arrival) -> bool:
        """The file is still there as `arrival` saw it."""
        try:
            st = os.stat(arrival.path)
        except FileNotFoundError:
            return False
        return (st.st_size, st.st_mtime_ns, st.st_ino) == (
            arrival.size, arrival.mtime_ns, arrival.inode,
        )  # fmt: skip

    def rejects_path(self, arrival: Arrival) -> Path:
        """Where the import of `arrival` writes its rejects, until it is filed away."""
        return self.work / (arrival.name + REJECTS)

    def file_away(self, arrival: Arrival, where: str, error: str | None = None) -> Path:
        """Move `arrival` into where (DONE or FAILED), with its rejects file and, for
        `error`, a one-line .error file beside it; return its new path."""
        target = self.path / where
        self._make(target)
        name = _free_name(target, arrival.name)
        moved = target / name
        try:
            rejects = self.rejects_path(arrival)
            if rejects.exists():
                os.rename(rejects, target / (name + REJECTS))
            if error is not None:
                line = " ".join(self.relocated(error, arrival, moved).split())
                _write_line(target / (name + ERROR), line)
            os.rename(arrival.path, moved)
        except OSError as e:
            raise DropFolderError(
                f"{arrival.path}: cannot move it to {where}/: {e.strerror} (it stays where it is)"
            ) from e
        return moved

    def relocated(self, text: str, arrival: Arrival, moved: Path) -> str:
        """`text` (an error, a result's rejects_file) naming the rejects file where it is
        once `arrival` has been filed away as `moved`."""
        return text.replace(str(self.rejects_path(arrival)), str(moved) + REJECTS)

    def discard_rejects(self, arrival: Arrival) -> None:
        """Remove the rejects of an import that was stopped: the file is imported again."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.rejects_path(arrival))

    def _make(self, folder: Path) -> None:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            raise DropFolderError(f"{folder}: cannot create it: {e.strerror}") from e


def _free_name(folder: Path, name: str) -> str:
    """`name`, or name-1, name-2, ... before its extension (.csv, .csv.gz), the first for
    which the file and its rejects and .error files are all free in `folder`."""
    suffixes = Path(name).suffixes
    ext = "".join(suffixes[-2:] if name.endswith(".gz") else suffixes[-1:])
    stem = name[: len(name) - len(ext)] if ext and len(ext) < len(name) else name
    ext = name[len(stem) :]
    candidate, n = name, 0
    while any(os.path.lexists(folder / (candidate + s)) for s in ("", REJECTS, ERROR)):
        n += 1
        candidate = f"{stem}-{n}{ext}"
    return candidate


def _write_line(path: Path, line: str) -> None:
    """One line, whole or absent: written beside, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
