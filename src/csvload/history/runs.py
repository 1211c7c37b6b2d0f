"""Run history: one row per import in csvload_runs, written as the import goes, so any
shell, dashboard or cron job can see what happened and what is happening now.

The row is written from a connection of its own in autocommit mode.  The import's
transaction therefore stays atomic (a failed import leaves its row 'failed' while products
is unchanged), and progress is visible to other sessions at once instead of at commit.

Liveness.  A process that dies (kill -9, power loss) cannot mark its row; readers work it
out from two signals:
  * the recorder holds a session-level advisory lock keyed by the run for the run's life.
    The server drops it the moment the recorder's connection ends, which is immediate on
    kill -9 (the kernel closes the socket);
  * a heartbeat, refreshed every second by a daemon thread, also while the merge runs one
    long statement and the progress callback is silent.  It covers what the lock cannot: a
    client machine that lost power leaves its TCP connection (and the lock) open on the
    server until keepalives give up, which can take hours.
A 'running' row whose lock is not held, or whose heartbeat is older than STALE_AFTER, is
shown as 'interrupted'; the next recorder to start writes that down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from csvload.errors import RunNotFoundError
from csvload.load.result import OPTIONAL_COUNTS
from csvload.server.database import translate
from csvload.table.schema import PRODUCTS, ddl_transaction

RUNS = "csvload_runs"
HEARTBEAT_INTERVAL = 1.0  # seconds; also the progress throttle
# 30 heartbeats missed in a row: far beyond any scheduling hiccup, short enough that a dead
# run stops looking alive within half a minute even when its lock lingers.
STALE_AFTER = 30.0
# Keys of the options dict that are dropped whatever the caller passes.
SECRET_WORDS = ("secret", "password", "passwd", "dsn", "token")
LEDGER = (
    "rows_read", "inserted", "updated", "unchanged", "duplicates", "rejected", "skipped",
    "suppressed", "deactivated", "reactivated", "deleted", "existing", "not_found",
)  # fmt: skip

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    run_id       uuid        PRIMARY KEY,
    file         text        NOT NULL,
    size         bigint,
    sha256       text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    status       text        NOT NULL DEFAULT 'running'
                 CONSTRAINT csvload_runs_status_check CHECK (status IN ({statuses})),
    phase        text        NOT NULL DEFAULT 'starting',
    bytes_done   bigint      NOT NULL DEFAULT 0,
    bytes_total  bigint,
    rows_done    bigint      NOT NULL DEFAULT 0,
    rows_read    bigint,
    inserted     bigint,
    updated      bigint,
    unchanged    bigint,
    duplicates   bigint,
    rejected     bigint,
    statements   integer,
    error        text,
    host         text,
    pid          integer,
    version      text,
    options      jsonb       NOT NULL DEFAULT '{{}}',
    lock_key     bigint      NOT NULL,
    target       text,
    key          text[],
    skipped      bigint,
    deactivated  bigint,
    reactivated  bigint,
    deleted      bigint,
    suppressed   bigint,
    existing     bigint,
    not_found    bigint,
    source       text,
    etag         text,
    last_modified text,
    remote_mtime bigint,
    files        jsonb,
    kind         text        NOT NULL DEFAULT 'import',
    undo_of      uuid
)
"""
# Tables made by older versions of csvload lack these columns.
RUNS_UPGRADE = (
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS target text,"
    " ADD COLUMN IF NOT EXISTS key text[], ADD COLUMN IF NOT EXISTS skipped bigint,"
    " ADD COLUMN IF NOT EXISTS deactivated bigint, ADD COLUMN IF NOT EXISTS reactivated bigint,"
    " ADD COLUMN IF NOT EXISTS deleted bigint, ADD COLUMN IF NOT EXISTS suppressed bigint,"
    " ADD COLUMN IF NOT EXISTS existing bigint, ADD COLUMN IF NOT EXISTS not_found bigint,"
    # A remote source: its redacted URL and what --if-changed compares (read/remote/).
    " ADD COLUMN IF NOT EXISTS source text, ADD COLUMN IF NOT EXISTS etag text,"
    " ADD COLUMN IF NOT EXISTS last_modified text, ADD COLUMN IF NOT EXISTS remote_mtime bigint,"
    # Every input of a run (many files in one import).
    " ADD COLUMN IF NOT EXISTS files jsonb,"
    # csvload undo: a run is an import or the undo of one.
    " ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'import',"
    " ADD COLUMN IF NOT EXISTS undo_of uuid,"
    # Older tables' CHECK lacks 'unchanged_feed': replaced in the same statement (the
    # columns above being there is how readers know this ran).
    " DROP CONSTRAINT IF EXISTS csvload_runs_status_check,"
    " ADD CONSTRAINT csvload_runs_status_check CHECK (status IN ({statuses}))"
)
_UPGRADED = (
    "SELECT count(*) = 16 FROM pg_attribute WHERE attrelid = to_regclass(%s)"
    " AND attname IN ('target', 'key', 'skipped', 'deactivated', 'reactivated', 'deleted',"
    " 'suppressed', 'existing', 'not_found', 'source', 'etag', 'last_modified',"
    " 'remote_mtime', 'files', 'kind', 'undo_of')"
    " AND NOT attisdropped"
)
# unchanged_feed: --if-changed found the source as the last import did; nothing imported.
STATUSES = ("running", "succeeded", "failed", "dry_run", "interrupted", "unchanged_feed")
RUNS_INDEX = "CREATE INDEX IF NOT EXISTS {index} ON {table} (started_at DESC)"

# The advisory locks held right now in this database, as the bigint keys they were taken
# with: pg_locks splits a bigint key into classid (high half) and objid (low half).
_HELD = """
SELECT (l.classid::bigint << 32) | l.objid::bigint AS key
FROM pg_locks l
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

# The stored row plus the status a reader should believe.
_SELECT = """
SELECT r.*, clock_timestamp() AS now,
       CASE WHEN r.status = 'running'
             AND (r.lock_key NOT IN (SELECT key FROM held)
                  OR r.heartbeat_at < clock_timestamp() - make_interval(secs => {stale}))
            THEN 'interrupted' ELSE r.status END AS shown_status
FROM {table} r
"""


def create_runs_table(conn: psycopg.Connection) -> None:
    """Create csvload_runs if missing (idempotent; safe when two imports start at once)."""
    try:
        with ddl_transaction(conn) as cur:
            statuses = sql.SQL(", ").join(map(sql.Literal, STATUSES))
            cur.execute(sql.SQL(RUNS_DDL).format(table=sql.Identifier(RUNS), statuses=statuses))
            cur.execute(
                sql.SQL(RUNS_UPGRADE).format(table=sql.Identifier(RUNS), statuses=statuses)
            )
            cur.execute(
                sql.SQL(RUNS_INDEX).format(
                    index=sql.Identifier(f"{RUNS}_started_at_idx"), table=sql.Identifier(RUNS)
                )
            )
    except psycopg.Error as e:
        raise translate(e, RUNS) from e


def runs_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (RUNS,)).fetchone()
    return bool(row and row[0])


def runs_table_current(conn: psycopg.Connection) -> bool:
    row = conn.execute(_UPGRADED, (RUNS,)).fetchone()
    return bool(row and row[0])


def scrub(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as JSON-ready values, minus any key that smells of a secret."""
    clean: dict[str, Any] = {}
    for key, value in options.items():
        if any(word in str(key).lower() for word in SECRET_WORDS):
            continue
        if isinstance(value, Mapping):
            value = scrub(value)
        clean[str(key)] = value
    return json.loads(json.dumps(clean, default=str))


def options_record(*parts: Any) -> dict[str, Any]:
    """Merge option dataclasses (SourceOptions, ImportOptions) and dicts into one dict for
    RunRecorder.start; later parts win on a clash."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(asdict(part) if is_dataclass(part) else dict(part))
    return scrub(merged)


def reap_interrupted(conn: psycopg.Connection) -> int:
    """Write 'interrupted' into the rows of runs whose process is gone; return how many.
    Readers already show them so; this makes the table itself say it."""
    query = sql.SQL(
        "WITH held AS ({held}) UPDATE {table} r SET status = 'interrupted',"
        " finished_at = r.heartbeat_at,"
        " error = coalesce(r.error, 'the import process stopped without finishing')"
        " FROM ({select}) s WHERE s.run_id = r.run_id AND s.shown_status = 'interrupted'"
        " AND r.status = 'running'"
    ).format(held=sql.SQL(_HELD), table=sql.Identifier(RUNS), select=_select_sql())
    try:
        return conn.execute(query).rowcount
    except psycopg.Error as e:
        raise translate(e, RUNS) from e


def _select_sql() -> sql.Composed:
    return sql.SQL(_SELECT).format(table=sql.Identifier(RUNS), stale=sql.Literal(STALE_AFTER))


# -- reading -----------------------------------------------------------------------------


@dataclass
class RunInfo:
    """A run as a reader should see it, with derived rate and ETA."""

    run_id: str
    file: str
    status: str  # as shown: a dead 'running' run is 'interrupted'
    phase: str
    started_at: datetime
    finished_at: datetime | None
    heartbeat_at: datetime
    size: int | None
    sha256: str | None
    bytes_done: int
    bytes_total: int | None
    rows_done: int
    rows_read: int | None
    inserted: int | None
    updated: int | None
    unchanged: int | None
    duplicates: int | None
    rejected: int | None
    statements: int | None
    error: str | None
    host: str | None
    pid: int | None
    version: str | None
    options: dict = field(default_factory=dict)
    table: str | None = None
    key: list[str] | None = None
    skipped: int | None = None
    suppressed: int | None = None
    deactivated: int | None = None
    reactivated: int | None = None
    deleted: int | None = None
    existing: int | None = None
    not_found: int | None = None
    source: str | None = None  # a remote source's redacted URL
    # Every input of the run, in order: file, size and sha256 of each (None: recorded
    # before csvload listed them).
    files: list[dict] | None = None
    kind: str = "import"  # or "undo" (csvload undo), whose undo_of names the run
    undo_of: str | None = None
    elapsed_seconds: float = 0.0
    heartbeat_age_seconds: float = 0.0
    rows_per_second: float = 0.0
    bytes_per_second: float = 0.0
    percent: float | None = None  # of the bytes, while reading
    eta_seconds: float | None = None  # of the reading phase; the merge is not predicted

    def as_dict(self) -> dict:
        d = asdict(self)
        for key in ("started_at", "finished_at", "heartbeat_at"):
            if d[key] is not None:
                d[key] = d[key].isoformat()
        return d


_COPIED = (
    "size", "sha256", "bytes_done", "bytes_total", "rows_done", "rows_read", "inserted",
    "updated", "unchanged", "duplicates", "rejected", "statements", "error", "host", "pid",
    "version", "options",
)  # fmt: skip


def _info(row: dict) -> RunInfo:
    now = row["now"]
    end = row["finished_at"] or (now if row["shown_status"] == "running" else row["heartbeat_at"])
    elapsed = max((end - row["started_at"]).total_seconds(), 0.0)
    rows = row["rows_read"] if row["rows_read"] is not None else row["rows_done"]
    info = RunInfo(
        run_id=str(row["run_id"]),
        file=row["file"],
        status=row["shown_status"],
        phase=row["phase"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        **{k: row[k] for k in _COPIED},
        table=row.get("target"),
        key=row.get("key"),
        **{k: row.get(k) for k in OPTIONAL_COUNTS},
        source=row.get("source"),
        files=row.get("files"),
        kind=row.get("kind") or "import",
        undo_of=None if row.get("undo_of") is None else str(row["undo_of"]),
        elapsed_seconds=round(elapsed, 3),
        heartbeat_age_seconds=round(max((now - row["heartbeat_at"]).total_seconds(), 0.0), 3),
    )
    if elapsed > 0:
        info.rows_per_second = round(rows / elapsed, 1)
        info.bytes_per_second = round(row["bytes_done"] / elapsed, 1)
    total = row["bytes_total"]
    if total:
        info.percent = round(100.0 * min(row["bytes_done"], total) / total, 1)
        reading = info.status == "running" and info.phase in ("starting", "reading")
        if reading and info.bytes_per_second > 0:
            remaining = max(total - row["bytes_done"], 0)
            info.eta_seconds = round(remaining / info.bytes_per_second, 1)
    if info.error is None and info.status == "interrupted":
        info.error = "the import process stopped without finishing"
    return info


def _query(conn: psycopg.Connection, tail: sql.Composable, params: tuple = ()) -> list[RunInfo]:
    if not runs_table_exists(conn):
        return []
    query = sql.SQL("WITH held AS ({held}) SELECT * FROM ({select}) s {tail}").format(
        held=sql.SQL(_HELD), select=_select_sql(), tail=tail
    )
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, params).fetchall()
    except psycopg.Error as e:
        raise translate(e, RUNS) from e
    return [_info(r) for r in rows]


def list_runs(conn: psycopg.Connection, limit: int = 20) -> list[RunInfo]:
    """The most recent runs, newest first."""
    return _query(conn, sql.SQL("ORDER BY started_at DESC LIMIT %s"), (limit,))


def latest_run(conn: psycopg.Connection, run_id: str | None = None) -> RunInfo | None:
    """The run named by run_id (a full id or a unique prefix of one), else the newest run
    still running, else the newest run; None when nothing was ever recorded."""
    if run_id is None:
        found = _query(
            conn,
            sql.SQL("ORDER BY (shown_status = 'running') DESC, started_at DESC LIMIT 1"),
        )
        return found[0] if found else None
    prefix = run_id.strip().lower()
    if not prefix or any(c not in "0123456789abcdef-" for c in prefix):
        raise RunNotFoundError(f"{run_id!r} is not a run id (see 'csvload runs')")
    found = _query(
        conn,
        sql.SQL("WHERE run_id::text LIKE %s ORDER BY started_at DESC LIMIT 2"),
        (prefix + "%",),
    )
    if not found:
        raise RunNotFoundError(f"no run {run_id} (see 'csvload runs')")
    if len(found) > 1 and found[0].run_id != prefix:
        raise RunNotFoundError(f"run id {run_id} is ambiguous (give more characters)")
    return found[0]


def last_successful(conn: psycopg.Connection, table: str = PRODUCTS) -> RunInfo | None:
    """The newest succeeded import into table (runs recorded before csvload named their
    table went into csvload's own)."""
    found = _query(
        conn,
        sql.SQL(
            "WHERE shown_status = 'succeeded' AND coalesce(target, %s) = %s"
            " ORDER BY finished_at DESC LIMIT 1"
        ),
        (PRODUCTS, table),
    )
    return found[0] if found else None


def last_fetch(conn: psycopg.Connection, source: str, table: str) -> dict | None:
    """What the newest succeeded import of the remote source (its redacted URL) into
    table recorded: {etag, last_modified, size, remote_mtime, sha256}; None when there is
    none (or the history predates remote sources)."""
    if not runs_table_current(conn):
        return None
    query = sql.SQL(
        "SELECT etag, last_modified, size, remote_mtime, sha256 FROM {} WHERE source = %s"
        " AND coalesce(target, %s) = %s AND status = 'succeeded'"
        " ORDER BY finished_at DESC LIMIT 1"
    ).format(sql.Identifier(RUNS))
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, (source, PRODUCTS, table)).fetchone()
    except psycopg.Error as e:
        raise translate(e, RUNS) from e


__all__ = [
    "RUNS",
    "STALE_AFTER",
    "RunInfo",
    "create_runs_table",
    "last_fetch",
    "last_successful",
    "latest_run",
    "list_runs",
    "options_record",
    "reap_interrupted",
    "runs_table_current",
    "runs_table_exists",
    "scrub",
]
