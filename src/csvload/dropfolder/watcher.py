"""The watch loop: look at the folder, import each complete new file once (oldest first)
through job.run(), file it away into done/ or failed/, and yield one Event per file.

Signals are the caller's, through Hooks as for one import: job.run() calls hooks.hold()
once its import can no longer roll back (and when it has ended), so a stop that arrives
from then on is only noted; the file is filed away whole, its event yielded, and the loop
ends when hooks.stopped() says so.  Otherwise resume() lets the caller raise job.Stopped
again: in the wait, the look, the digest, or the next import (which then rolls back and
leaves its file where it is, for the next run).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from csvload import job
from csvload.dropfolder.folder import DONE, FAILED, Arrival, DropFolder
from csvload.dropfolder.ledger import Identity, identity, imported_by
from csvload.errors import CsvloadError, Interrupted
from csvload.server.database import connect

# What a watcher does with each file it looks at (Event.kind).
IMPORTED = "imported"  # its import committed: moved to done/
FAILED_IMPORT = "failed"  # its import failed and changed nothing: moved to failed/
ALREADY = "already_imported"  # the run history knows it as imported: moved to done/
STOPPED = "stopped"  # a signal rolled its import back: left in place, for the next run
UNAVAILABLE = "database_unavailable"  # the history could not be asked: left in place


@dataclass(frozen=True)
class WatchOptions:
    folder: Path
    once: bool = False  # one look, then return
    interval: float = 10.0  # seconds between looks
    settle: float = 5.0  # seconds a file must stay the same to count as complete
    connect_timeout: float = 10.0


@dataclass
class Event:
    kind: str
    path: Path  # where the file was found
    moved_to: Path | None = None
    outcome: job.Outcome | None = None  # of its import, when there was one
    run_id: str | None = None  # the run that imported it (ALREADY)
    error: str | None = None  # why it failed (FAILED_IMPORT, UNAVAILABLE)


@dataclass
class Hooks:
    """How the caller steers the watcher: each import's hooks, and resume(), called when
    a file is filed away and the watcher may be stopped again."""

    run: job.Hooks = field(default_factory=job.Hooks)
    resume: Callable[[], None] = lambda: None
    sleep: Callable[[float], None] = time.sleep


# The import of one file: (its path, where its rejects go, what its run record adds).
RequestFor = Callable[[str, Path, dict], job.ImportRequest]


def watch(
    options: WatchOptions, dsn: str, request_for: RequestFor, hooks: Hooks
) -> Iterator[Event]:
    """Watch the folder until stopped (or, with once, for one look).  Raises
    DropFolderError when another watcher holds the folder or a file cannot be moved."""
    folder = DropFolder(options.folder)
    with folder.locked():
        while True:
            for arrival in folder.complete(options.settle, hooks.sleep):
                event = _take(folder, arrival, options, dsn, request_for, hooks.run)
                if event is None:
                    continue
                yield event
                if hooks.run.stopped() or event.kind == STOPPED:
                    return
                if event.kind == UNAVAILABLE:
                    break  # the next look, once the database is back
                hooks.resume()
            if options.once or hooks.run.stopped():
                return
            hooks.sleep(options.interval)


def _take(folder: DropFolder, arrival: Arrival, options: WatchOptions, dsn: str,
          request_for: RequestFor, hooks: job.Hooks) -> Event | None:  # fmt: skip
    """Import one file and file it away; None when it changed or went since the look."""
    try:
        file = identity(folder.path, arrival.path)
    except FileNotFoundError:
        return None
    except OSError as e:  # unreadable: an import could not read it either
        error = f"{arrival.path}: cannot read it: {e.strerror}"
        hooks.hold()  # the moves are not to be cut short
        return Event(FAILED_IMPORT, arrival.path, folder.file_away(arrival, FAILED, error),
                     error=error)  # fmt: skip
    if not folder.unchanged(arrival) or file.size != arrival.size:
        return None  # written to again: complete() looks at it again next time
    try:
        run_id = _imported_by(dsn, file, options.connect_timeout)
    except CsvloadError as e:
        return Event(UNAVAILABLE, arrival.path, error=str(e))
    if run_id is not None:
        # Imported and committed, but not moved (the watcher was killed in between).
        hooks.hold()
        return Event(ALREADY, arrival.path, folder.file_away(arrival, DONE), run_id=run_id)
    request = request_for(str(arrival.path), folder.rejects_path(arrival), file.record())
    outcome = job.run(request, hooks)  # calls hooks.hold() before it returns
    if isinstance(outcome.error, Interrupted):
        folder.discard_rejects(arrival)
        return Event(STOPPED, arrival.path, outcome=outcome, error=str(outcome.error))
    if outcome.error is None:
        kind, moved = IMPORTED, folder.file_away(arrival, DONE)
    else:
        kind, moved = FAILED_IMPORT, folder.file_away(arrival, FAILED, str(outcome.error))
    result = outcome.result
    if result.rejects_file:
        result.rejects_file = folder.relocated(result.rejects_file, arrival, moved)
    if result.error:
        result.error = folder.relocated(result.error, arrival, moved)
    return Event(kind, arrival.path, moved, outcome, error=result.error)


def _imported_by(dsn: str, file: Identity, connect_timeout: float) -> str | None:
    with connect(dsn, connect_timeout=connect_timeout, autocommit=True) as conn:
        return imported_by(conn, file)
