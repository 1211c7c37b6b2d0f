"""Recording one import as it goes: the run's row in csvload_runs, its progress, its
heartbeat and advisory lock (how readers tell a live run from a dead one: see runs.py), and
its final state, written in the import's own transaction when it commits."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from csvload import __version__
from csvload.history.runs import (
    HEARTBEAT_INTERVAL,
    LEDGER,
    RUNS,
    create_runs_table,
    reap_interrupted,
    runs_table_current,
    scrub,
)
from csvload.load.result import ImportResult, Progress
from csvload.server.database import connect, translate


def lock_key(run_id: str) -> int:
    """The advisory lock key of a run: the first 64 bits of its uuid, signed."""
    return int.from_bytes(uuid.UUID(run_id).bytes[:8], "big", signed=True)


def _assignments(values: Mapping[str, Any]) -> sql.Composed:
    """`col = %s, ...` for the keys of values, in order."""
    return sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)


def _update(conn: psycopg.Connection, run_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE run_id = %s").format(
            sql.Identifier(RUNS), _assignments(values)
        ),
        (*values.values(), run_id),
    )


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            # 1 MiB reads: hashlib releases the GIL on buffers this size, so the hash runs
            # on the other core alongside the import.
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _file(path: str) -> dict:
    """An input as the run records it: its name and, for a regular file, its size (and
    the path to hash); a FIFO or device is not read here (that would steal its bytes), and
    a missing file is the import's to report."""
    entry = {"file": "<stdin>" if path == "-" else path, "size": None, "sha256": None,
             "path": None}  # fmt: skip
    if path != "-":
        try:
            st = os.stat(path)
        except OSError:
            return entry
        if os.path.isfile(path):
            entry["size"], entry["path"] = st.st_size, path
    return entry


def _files_json(files: list[dict]) -> psycopg.types.json.Jsonb:
    return psycopg.types.json.Jsonb([{k: f[k] for k in ("file", "size", "sha256")} for f in files])


class RunRecorder:
    """Writes one run's row.  Start it with RunRecorder.start(); end it with finish() or
    fail(), which also close its connection.

    After start() a database problem never interrupts the import: the recorder stops
    writing and keeps the reason in .warning for the caller to show.
    """

    def __init__(self, conn: psycopg.Connection, run_id: str, files: list[dict]):
        self.run_id = run_id
        self.warning: str | None = None
        self._conn = conn
        self._lock = threading.Lock()  # one statement at a time on the shared connection
        self._latest: Progress | None = None
        self._bytes = (0, None)  # (done, total) of the last 'reading' report
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._beat = threading.Thread(target=self._heartbeat, name="csvload-heartbeat", daemon=True)
        self._hasher: threading.Thread | None = None
        # A remote source's columns (source, etag, ..., sha256): written with the final row.
        self.remote: dict[str, Any] = {}
        if any(f["path"] is not None for f in files):
            self._hasher = threading.Thread(
                target=self._hash, args=(files,), name="csvload-sha256", daemon=True
            )

    @classmethod
    def start(
        cls,
        dsn: str,
        *,
        file: str,
        path: str | None = None,
        paths: Sequence[str] = (),
        options: Mapping[str, Any] | None = None,
        connect_timeout: float = 10,
        table: str | None = None,
        key: tuple[str, ...] | None = None,
        remote: Mapping[str, Any] | None = None,
        undo_of: str | None = None,
    ) -> RunRecorder:
        """Insert a 'running' row and start the heartbeat.  `file` is the name to show;
        `path` (or each of `paths`, the inputs of a many-file import), when it is a
        regular file, is stat'ed for its size and hashed in a background thread (sha256
        stays NULL for stdin).  `files` lists every input with its size and sha256; the
        row's size is their sum, its sha256 the one input's.  `remote` holds a URL
        source's columns (source, size, etag, ...; read/remote/), its sha256 set later.
        `undo_of`: the run is `csvload undo` of that run (kind 'undo').  Raises
        CsvloadError when the row cannot be written: the caller should not import
        unrecorded."""
        run_id = str(uuid.uuid4())
        files = [_file(p) for p in (paths or ([path] if path is not None else []))]
        sizes = [f["size"] for f in files]
        size = sum(sizes) if files and None not in sizes else None
        conn = connect(dsn, connect_timeout=connect_timeout, autocommit=True)
        try:
            if not runs_table_current(conn):
                create_runs_table(conn)
            reap_interrupted(conn)
            lock = lock_key(run_id)
            # Locked before the row exists, so no reader ever sees the row without the lock.
            conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (run_id, file, size, bytes_total, status, host, pid,"
                    " version, options, lock_key, target, key, files, kind, undo_of)"
                    " VALUES (%s, %s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(sql.Identifier(RUNS)),
                (
                    run_id, file, size, size, socket.gethostname(), os.getpid(), __version__,
                    psycopg.types.json.Jsonb(scrub(options or {})), lock, table,
                    list(key) if key else None, _files_json(files),
                    "import" if undo_of is None else "undo", undo_of,
                ),
            )  # fmt: skip
            if remote:
                _update(conn, run_id, remote)
        except psycopg.Error as e:
            conn.close()
            raise translate(e, RUNS) from e
        except BaseException:
            conn.close()
            raise
        recorder = cls(conn, run_id, files)
        recorder.remote = dict(remote or {})
        recorder._beat.start()
        if recorder._hasher is not None:
            recorder._hasher.start()
        return recorder

    # -- while the import runs ---------------------------------------------------------

    def progress(self, p: Progress) -> None:
        """A loader progress callback.  Stores the report; the heartbeat thread writes the
        latest one each second, or at once when the phase changes."""
        if p.phase == "reading":
            self._bytes = (p.bytes_done, p.bytes_total)
        previous = self._latest
        self._latest = p
        if previous is None or previous.phase != p.phase:
            self._wake.set()

    def _heartbeat(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(HEARTBEAT_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._write_progress()

    def _write_progress(self) -> None:
        p = self._latest
        done, total = self._bytes
        if p is None:
            statement, params = "UPDATE {} SET heartbeat_at = now() WHERE run_id = %s", ()
        else:
            statement = (
                "UPDATE {} SET heartbeat_at = now(), phase = %s, bytes_done = %s,"
                " bytes_total = coalesce(%s, bytes_total), rows_done = %s WHERE run_id = %s"
            )
            params = (p.phase, done, total, p.rows)
        self._execute(sql.SQL(statement).format(sql.Identifier(RUNS)), (*params, self.run_id))

    def _hash(self, files: list[dict]) -> None:
        for f in files:
            if f["path"] is not None:
                f["sha256"] = _sha256(f["path"])
        single = files[0]["sha256"] if len(files) == 1 else None
        self._execute(
            sql.SQL(
                "UPDATE {} SET sha256 = coalesce(%s, sha256), files = %s WHERE run_id = %s"
            ).format(sql.Identifier(RUNS)),
            (single, _files_json(files), self.run_id),
        )

    def _execute(self, query, params) -> None:
        with self._lock:
            if self._closed or self.warning is not None:
                return
            try:
                self._conn.execute(query, params)
            except psycopg.Error as e:
                # Losing the history must not cost the import: note it and stop writing.
                self.warning = f"run {self.run_id} is no longer recorded: {translate(e, RUNS)}"

    # -- the end ---------------------------------------------------------------------------

    def finish(self, result: ImportResult) -> None:
        """Record a completed import (status succeeded or dry_run) and its ledger."""
        self._end(result.status, result, None)

    def fail(
        self, message: str, result: ImportResult | None = None, interrupted: bool = False
    ) -> None:
        """Record a failed (or, with interrupted, a stopped) import and its error."""
        self._end("interrupted" if interrupted else "failed", result, message)

    def finish_within(self, conn: psycopg.Connection, result: ImportResult) -> None:
        """Write the run's final row in the import's own transaction, just before it
        commits (load.loader.Import's before_commit): the row then says 'succeeded'
        exactly when the data is committed, even if the process is killed right after
        COMMIT.  finish() writes it once more afterwards, with the final timings.  In a
        savepoint: losing the history must not cost the import."""
        query, params = self._final("succeeded", result, None)
        try:
            with conn.transaction():
                conn.execute(query, params)
        except psycopg.Error as e:
            self.warning = f"run {self.run_id} is no longer recorded: {translate(e, RUNS)}"

    def _end(self, status: str, result: ImportResult | None, error: str | None) -> None:
        self._stop.set()
        self._wake.set()
        self._beat.join()
        if self._hasher is not None:
            # Only waits when hashing is slower than the whole import, which takes a file
            # far larger than the page cache and a very fast database.
            self._hasher.join()
        self._write_progress()
        self._execute(*self._final(status, result, error))
        self.close()

    def _final(
        self, status: str, result: ImportResult | None, error: str | None
    ) -> tuple[sql.Composed, tuple]:
        """The UPDATE that ends the run's row."""
        values: dict[str, Any] = {"status": status, "error": error}
        if status in ("succeeded", "dry_run", "unchanged_feed"):
            values["phase"] = "done"
        values.update(self.remote)
        # A failure's result may be the caller's placeholder: its zeros would hide the
        # rows_done the progress reports already recorded.
        if result is not None and (error is None or result.rows_read):
            values.update({k: getattr(result, k) for k in LEDGER})
            values["statements"] = result.statements
            values["rows_done"] = result.rows_read
        assignments = _assignments(values)
        query = sql.SQL(
            "UPDATE {table} SET {assignments}, finished_at = now(), heartbeat_at = now()"
            " WHERE run_id = %s"
        ).format(table=sql.Identifier(RUNS), assignments=assignments)
        return query, (*values.values(), self.run_id)

    def close(self) -> None:
        """Stop the heartbeat and close the connection, which releases the run's lock."""
        self._stop.set()
        self._wake.set()
        if self._beat.is_alive() and threading.current_thread() is not self._beat:
            self._beat.join()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
