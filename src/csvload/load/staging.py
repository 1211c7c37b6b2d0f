"""The stage: one streaming COPY of a source's good records into the temp table
csvload_stage, counting the rows read, rejected and skipped.  Shared by the import and
verify; Statements (the counting cursor) and LineMap (stage row to file line) live here."""

from __future__ import annotations

import bisect
import time
from array import array
from dataclasses import dataclass, field, replace

import psycopg

from csvload.load import statements
from csvload.load.missing import NoFeed
from csvload.load.result import Progress, ProgressCallback
from csvload.load.timing import Timings
from csvload.read.chunks import Origin
from csvload.read.source import Source
from csvload.server.database import widen_send_buffer

# 10k rows (about 1.3 MB of text) per chunk written to the COPY stream: 2k and 10k measured
# within noise of each other at 500k rows, and 10k keeps the client's peak RSS near 55 MB,
# most of it psycopg and libpq themselves (50k rows per chunk: 95 MB).
DEFAULT_BATCH_SIZE = 10_000


class Statements:
    """A cursor that counts the statements it sends."""

    def __init__(self, conn: psycopg.Connection):
        self.cur = conn.cursor()
        self.count = 0

    def execute(self, query, params=None) -> psycopg.Cursor:
        self.count += 1
        return self.cur.execute(query, params)

    def copy(self, statement):
        self.count += 1
        return self.cur.copy(statement)


class LineMap:
    """Which physical line each staged record (numbered by the stage's ord, from 1)
    starts on, kept as runs of records on consecutive lines: one run for a clean file,
    one more per blank line, multi-line record or rejected record, so it stays small.
    Each run also knows its input (an Origin) when there may be more than one, or the
    numbers are a sheet's rows."""

    def __init__(self) -> None:
        self._ords = array("q")  # the ord of each run's first record
        self._lines = array("q")  # its line
        self._inputs = array("l")  # its input's position in _origins (0: none named)
        self._origins: list[Origin | None] = [None]
        self._next = 1

    def add(self, runs: list[list[int]], origin: Origin | None = None) -> None:
        if origin != self._origins[-1]:
            self._origins.append(origin)
        where = len(self._origins) - 1 if origin is not None else 0
        for line, count in runs:
            if (
                self._ords
                and self._lines[-1] + (self._next - self._ords[-1]) == line
                and self._inputs[-1] == where
            ):
                pass  # continues the last run
            else:
                self._ords.append(self._next)
                self._lines.append(line)
                self._inputs.append(where)
            self._next += count

    def line(self, ord_: int) -> int:
        i = bisect.bisect_right(self._ords, ord_) - 1
        return self._lines[i] + (ord_ - self._ords[i])

    def file(self, ord_: int) -> str | None:
        """The input the record came from, when it is named (Origin.file)."""
        origin = self._origins[self._inputs[bisect.bisect_right(self._ords, ord_) - 1]]
        return origin.file if origin is not None else None

    def place(self, ord_: int, name: str) -> str:
        """`a.csv line 3`, `book.xlsx sheet Prices row 17`; `name` is the one input's."""
        origin = self._origins[self._inputs[bisect.bisect_right(self._ords, ord_) - 1]]
        return (origin or Origin(name)).at(self.line(ord_))


def _silent(p: Progress) -> None:
    return None


@dataclass
class Staging:
    """One source on its way into the stage, and where its counts (rows_read, rejected,
    skipped: an ImportResult or a VerifyResult) and its rejects go."""

    source: Source
    counts: object
    batch_size: int = DEFAULT_BATCH_SIZE
    max_errors: int = 0
    report: ProgressCallback = _silent
    rejects: object | None = None  # a RejectsWriter, or anything with write(rejects)
    lines: LineMap | None = None
    feed: NoFeed = field(default_factory=NoFeed)
    constants: tuple[str, ...] = ()  # --scope's values, staged as columns after the file's
    timings: Timings | None = None  # where the read and copy phases' seconds go

    @property
    def ncols(self) -> int:
        return len(self.source.staged_columns)


def stage(db, staging: Staging, created: bool = False) -> None:
    """COPY the source's good records into the stage, chunk by chunk, first creating the
    coordinator's temp stage unless the caller `created` one (distributed_stage).

    All chunks go through ONE streaming COPY: while Python parses the next chunk, the
    server parses the last one from the socket buffer (500k rows: 0.91 s, against 1.35 s
    for one COPY per chunk and 1.45 s for per-chunk COPYs on a worker thread).
    """
    source, counts, report = staging.source, staging.counts, staging.report
    started = time.perf_counter()
    waited = 0.0  # for the server: in writes the socket buffer held up, and at the end
    widen_send_buffer(db.cur.connection)
    if not created:
        db.execute(statements.create_stage(staging.ncols, staging.constants))
    report(Progress("reading", 0, source.size, 0))
    with db.copy(statements.copy_stage(staging.ncols, source.delimiter)) as copy:
        for chunk in source.chunks(staging.batch_size):
            counts.rows_read += chunk.rows + len(chunk.rejects) + chunk.skipped
            counts.skipped += chunk.skipped
            if chunk.rejects:
                counts.rejected += len(chunk.rejects)
                rejects = chunk.rejects
                if chunk.origin is not None:
                    rejects = [replace(r, file=chunk.origin.file) for r in rejects]
                if staging.rejects is not None:
                    staging.rejects.write(rejects)
                staging.feed.keep(rejects)
            # Past --max-errors the import will fail: keep reading only to list every reject.
            if chunk.rows and counts.rejected <= staging.max_errors:
                writing = time.perf_counter()
                copy.write(chunk.data)
                waited += time.perf_counter() - writing
                if staging.lines is not None:
                    staging.lines.add(chunk.runs, chunk.origin)
            report(Progress("reading", chunk.bytes_done, source.size, counts.rows_read))
        ending = time.perf_counter()
    ended = time.perf_counter()
    if staging.timings is not None:
        waited += ended - ending
        staging.timings.add("copy", waited)
        staging.timings.add("read", ended - started - waited)
    staging.feed.stage_kept(db)
