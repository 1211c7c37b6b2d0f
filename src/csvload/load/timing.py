"""Where an import's time goes: the wall-clock seconds of each of its phases, kept in the
ImportResult as `timings` (the JSON summary's "timings" object).

    phase     what it covers
    --------  ------------------------------------------------------------------------
    prepare   reading the target's definition and binding the header to it
    read      the client reading and parsing the file (staging minus copy)
    copy      waiting for the server's COPY: writes that blocked on a full socket
              buffer, and the end of the COPY (the server parsing what is left)
    analyze   the stage's ANALYZE, and the checks that pick the writer
    indexes   dropping secondary indexes (and foreign keys) before filling an empty
              table, and building them again after it
    write     the one statement that writes: dedupe, join and compare, write
    commit    COMMIT (and the run's final record, written just before it)

The read and copy phases overlap by design (the server parses one chunk while the client
reads the next), so `copy` is only what the client waited for.  Phases that did not run
are absent.  Nothing here touches the database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("prepare", "read", "copy", "analyze", "indexes", "write", "commit")


class Timings:
    """Seconds per phase, added up (a phase may run more than once: a write attempt that
    set rows aside runs again)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        assert name in PHASES, name
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def as_dict(self) -> dict[str, float]:
        """The phases that ran, in PHASES order, in seconds rounded to the millisecond."""
        return {p: round(self.seconds[p], 3) for p in PHASES if p in self.seconds}
