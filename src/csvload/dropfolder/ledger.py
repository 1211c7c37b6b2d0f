"""Was this file imported already?  Asked of the run history (csvload_runs): a watcher
records, in the options of each run it starts, the folder, the file's name, size and
sha256, and the run's row says 'succeeded' exactly when its import committed (it is
written in the import's own transaction).  So a file killed between the commit and its
move to done/ is known as imported on restart, and a file with the same name but other
content is not."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from csvload.history.runs import RUNS, runs_table_exists
from csvload.server.database import translate

RECORD_KEY = "watch"  # the key of the options record a watcher's runs carry


@dataclass(frozen=True)
class Identity:
    """What makes a file the same file: its folder, name, size and digest."""

    folder: str
    name: str
    size: int
    sha256: str

    def record(self) -> dict:
        """The run history's record of it (the run's options, under RECORD_KEY)."""
        return {RECORD_KEY: {"folder": self.folder, "name": self.name, "size": self.size,
                             "sha256": self.sha256}}  # fmt: skip


def identity(folder: Path, path: Path) -> Identity:
    """The identity of the file at `path`, read whole for its digest.  Raises OSError."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return Identity(str(folder), path.name, size, digest)


def imported_by(conn: psycopg.Connection, file: Identity) -> str | None:
    """The run that imported this very file and committed, or None."""
    if not runs_table_exists(conn):
        return None
    query = sql.SQL(
        "SELECT run_id FROM {} WHERE status = 'succeeded' AND options -> {} = %s::jsonb"
        " ORDER BY finished_at DESC LIMIT 1"
    ).format(sql.Identifier(RUNS), sql.Literal(RECORD_KEY))
    try:
        row = conn.execute(query, (psycopg.types.json.Jsonb(file.record()[RECORD_KEY]),)).fetchone()
    except psycopg.Error as e:
        raise translate(e, RUNS) from e
    return str(row[0]) if row else None
