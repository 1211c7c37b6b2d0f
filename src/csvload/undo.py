"""The library's entry point for `csvload undo`: run() finds the run to take back, checks
that it can be, records the undo as a run of its own (kind 'undo'), reverts it in one
transaction under the import's table lock (load/revert.py), and delivers the
`import.undone` webhooks.  The caller renders the UndoOutcome."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from csvload import webhook
from csvload.errors import (
    CsvloadError,
    Interrupted,
    NoTableError,
    RunNotFoundError,
    UndoConflictError,
    UndoRefusedError,
)
from csvload.files import OutputFile
from csvload.history.recorder import RunRecorder
from csvload.history.runs import RunInfo, latest_run
from csvload.history.undone import last_import
from csvload.load import statements
from csvload.load.capabilities import Server
from csvload.load.result import ImportResult
from csvload.load.revert import Record, Revert, Reverted, read_record
from csvload.load.undo_log import UNDO, UNDO_RUNS, undo_tables_exist
from csvload.server.database import connect, target, translate
from csvload.table.catalog import describe
from csvload.table.citus import table_kind


@dataclass(frozen=True)
class UndoRequest:
    """One undo: which run (an id or prefix, or the last import, of `table` when given)."""

    dsn: str | Callable[[], str]
    run_id: str | None = None
    last: bool = False
    table: str | None = None
    dry_run: bool = False
    skip_conflicts: bool = False
    conflicts_path: Path | None = None  # where --skip-conflicts lists them
    connect_timeout: float = 10
    lock_timeout: float | None = None
    statement_timeout: float | None = None
    webhooks: webhook.WebhookOptions = field(default_factory=webhook.WebhookOptions)


@dataclass
class UndoResult:
    status: str  # succeeded, failed, dry_run
    undo_of: str | None = None
    file: str | None = None  # the undone run's file
    table: str | None = None
    key: list[str] = field(default_factory=list)
    records: int = 0
    deleted: int = 0
    restored: int = 0
    reactivated: int = 0
    reinserted: int = 0
    already_gone: int = 0
    conflicts: int = 0
    conflict_examples: list[list[str]] = field(default_factory=list)
    conflicts_file: str | None = None
    seconds: float = 0.0
    run_id: str | None = None  # the undo's own run
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def ledger(self) -> ImportResult:
        """The undo's counts in the run history's columns: inserted are the rows put back,
        updated the rows restored, deleted the rows taken out, skipped the conflicts."""
        return ImportResult(
            status=self.status, file=self.file or "", table=self.table, key=self.key,
            rows_read=self.records, inserted=self.reinserted, updated=self.restored,
            reactivated=self.reactivated, deleted=self.deleted, skipped=self.conflicts,
            seconds=self.seconds, run_id=self.run_id,
        )  # fmt: skip


@dataclass
class UndoOutcome:
    result: UndoResult
    deliveries: list[webhook.Delivery] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: CsvloadError | None = None


def run(request: UndoRequest, before_commit: Callable[[], None] | None = None) -> UndoOutcome:
    """Take one run back.  Never raises CsvloadError: the outcome carries it.
    `before_commit` runs in the undo's transaction just before COMMIT (tests stop there)."""
    started = time.monotonic()
    outcome = UndoOutcome(UndoResult(status="failed"))
    result = outcome.result
    database = {"name": None, "host": None}
    recorder: RunRecorder | None = None
    try:
        dsn = request.dsn() if callable(request.dsn) else request.dsn
        with connect(dsn, connect_timeout=request.connect_timeout, autocommit=True) as look:
            info = _find(look, request)
            record = _check(look, info)
        result.undo_of, result.file = info.run_id, info.file
        result.table, result.key = record.target, list(record.key)
        if not request.dry_run:
            recorder = RunRecorder.start(
                dsn, file=info.file, options=_options(request),
                connect_timeout=request.connect_timeout, table=record.target,
                key=tuple(record.key), undo_of=info.run_id,
            )  # fmt: skip
            result.run_id = recorder.run_id
        with connect(dsn, connect_timeout=request.connect_timeout) as conn:
            database = target(conn)
            _undo(conn, request, record, result, recorder, before_commit)
        result.status = "dry_run" if request.dry_run else "succeeded"
    except CsvloadError as e:
        outcome.error = e
        result.status, result.error = "failed", str(e)
    except KeyboardInterrupt:
        # Ctrl-C: before the COMMIT the transaction was rolled back; after it (result
        # says so) the undo stands, and is reported as the success it is.
        if result.status != "succeeded":
            outcome.error = Interrupted(
                f"undo of run {result.undo_of}: interrupted: rolled back, nothing was changed"
            )
            result.status, result.error = "failed", str(outcome.error)
    finally:
        result.seconds = round(time.monotonic() - started, 3)
        if recorder is not None:
            if outcome.error is None:
                recorder.finish(result.ledger())
            else:
                recorder.fail(str(outcome.error), result.ledger())
            if recorder.warning:
                outcome.warnings.append(f"run history: {recorder.warning}")
    outcome.deliveries = _deliver(request, result, database)
    return outcome


def _options(request: UndoRequest) -> dict:
    return {"dry_run": request.dry_run, "skip_conflicts": request.skip_conflicts}


def _find(conn: psycopg.Connection, request: UndoRequest) -> RunInfo:
    run_id = request.run_id
    if request.last:
        run_id = last_import(conn, request.table)
        if run_id is None:
            where = f" into {request.table}" if request.table else ""
            raise RunNotFoundError(f"no import{where} recorded yet (see 'csvload runs')")
    info = latest_run(conn, run_id)
    if info is None:
        raise RunNotFoundError(f"no run {run_id} (see 'csvload runs')")
    return info


def _check(conn: psycopg.Connection, info: RunInfo) -> Record:
    """The run's record, or UndoRefusedError saying why it cannot be undone."""
    short = info.run_id
    if info.kind == "undo":
        raise UndoRefusedError(
            f"run {short} is an undo (of run {info.undo_of}); an undo cannot be undone"
            f" (import the file again: csvload import {info.file})"
        )
    if info.status != "succeeded":
        raise UndoRefusedError(f"run {short} did not commit ({info.status}): nothing to undo")
    record = read_record(conn, info.run_id) if undo_tables_exist(conn) else None
    if record is None and info.table:
        _refuse_citus(conn, info.table)
    if record is None:
        raise UndoRefusedError(
            f"run {short} kept no undo record (imported with --no-undo, into a table Citus"
            " manages, or its record was pruned: see 'csvload runs')"
        )
    if record.undone_by is not None:
        raise UndoRefusedError(f"run {short} was undone already, by run {record.undone_by}")
    return record


def _refuse_citus(conn: psycopg.Connection, table: str) -> None:
    """A table Citus manages keeps no undo record (its writers are upserts on the workers):
    say so in one line, before anything else."""
    try:
        kind = table_kind(conn, table)
    except NoTableError:
        return
    if kind.citus_plans:
        raise UndoRefusedError(
            f"{table}: is a {kind.kind.value} table of Citus; undo does not work on tables"
            " Citus manages yet (imports into it keep no undo record)"
        )


def _undo(
    conn: psycopg.Connection, request: UndoRequest, record: Record, result: UndoResult,
    recorder: RunRecorder | None, before_commit: Callable[[], None] | None,
) -> None:  # fmt: skip
    """The one transaction: settings, lock, re-check, find, apply, record, commit."""
    out = OutputFile(request.conflicts_path, "conflicts file") if request.conflicts_path else None
    try:
        with conn.transaction():
            _configure(conn, request)
            tgt = describe(conn, record.target, record.key)
            if tgt.citus_kind != "local":
                raise UndoRefusedError(
                    f"{record.target}: is a {tgt.citus_kind} table of Citus; undo does not"
                    " work on tables Citus manages yet"
                )
            if tgt.oid != record.table_oid:
                raise UndoRefusedError(
                    f"{record.target}: is not the table run {record.run_id} wrote (it was"
                    " dropped and created again since)"
                )
            _lock(conn, tgt)
            # Under the lock and FOR UPDATE: a second undo of the run waits here, then
            # sees the first one's undone_by.
            locked = read_record(conn, record.run_id, lock=True)
            if locked is None or locked.undone_by is not None:
                raise UndoRefusedError(
                    f"run {record.run_id} was undone already"
                    + (f", by run {locked.undone_by}" if locked else "")
                )
            revert = Revert(conn, tgt, record)
            done = revert.find()
            _take(result, done)
            if done.conflicts and not request.skip_conflicts and not request.dry_run:
                raise UndoConflictError(_conflict_line(record, done))
            if request.dry_run:
                raise psycopg.Rollback()
            if done.conflicts and out is not None:
                _write_conflicts(out, revert)
                result.conflicts_file = str(request.conflicts_path)
            revert.apply(done)
            _take(result, done)
            _mark(conn, record, result.run_id)
            if recorder is not None:
                recorder.finish_within(conn, result.ledger())
            if before_commit is not None:
                before_commit()
    except psycopg.Error as e:
        if out is not None:
            out.discard()
        raise translate(e, f"undo of run {record.run_id}") from e
    except BaseException:
        if out is not None:
            out.discard()
        raise
    if not request.dry_run:
        result.status = "succeeded"  # committed: a Ctrl-C from here on changes nothing
    if out is not None and out.opened:
        out.finish()


def _configure(conn: psycopg.Connection, request: UndoRequest) -> None:
    settings = {}
    if Server.of(conn).connection_check:
        # As for an import: a killed csvload's backend rolls back within a second.
        settings["client_connection_check_interval"] = "1s"
    if request.lock_timeout is not None:
        settings["lock_timeout"] = f"{max(1, round(request.lock_timeout * 1000))}ms"
    if request.statement_timeout is not None:
        settings["statement_timeout"] = f"{max(1, round(request.statement_timeout * 1000))}ms"
    if settings:
        conn.execute(statements.set_local(settings))
    # Another table's deferred foreign key is checked at each statement, not at COMMIT.
    conn.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _lock(conn: psycopg.Connection, tgt) -> None:
    """The lock an import takes (loader._lock): imports and undos of a table serialise."""
    conn.execute(
        psycopg.sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(tgt.identifier)
    )


def _take(result: UndoResult, done: Reverted) -> None:
    result.records, result.deleted, result.restored = done.records, done.deleted, done.restored
    result.reactivated, result.reinserted = done.reactivated, done.reinserted
    result.already_gone, result.conflicts = done.already_gone, done.conflicts
    result.conflict_examples = [list(e) for e in done.examples]


def _conflict_line(record: Record, done: Reverted) -> str:
    named = "; ".join(f"{key}: {reason}" for key, reason in done.examples)
    more = ", ..." if done.conflicts > len(done.examples) else ""
    rows = "row" if done.conflicts == 1 else "rows"
    return (
        f"undo of run {record.run_id}: {done.conflicts} {rows} of {record.target} conflict"
        f" ({named}{more}); nothing was changed (--skip-conflicts reverts the others and"
        " lists these in a file)"
    )


def _write_conflicts(out: OutputFile, revert: Revert) -> None:
    import csv
    import io

    out.open()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["key", "change", "reason"])
    for row in revert.conflict_rows():
        writer.writerow(row)
        if text.tell() > 1 << 16:
            out.write(text.getvalue().encode("utf-8"))
            text.seek(0)
            text.truncate()
    out.write(text.getvalue().encode("utf-8"))
    out.ready()


def _mark(conn: psycopg.Connection, record: Record, undo_id: str | None) -> None:
    """The run is undone: its record says by which run, and its rows go."""
    conn.execute(
        psycopg.sql.SQL("UPDATE {} SET undone_by = %s WHERE run_id = %s").format(
            psycopg.sql.Identifier(UNDO_RUNS)
        ),
        (undo_id or record.run_id, record.run_id),
    )
    conn.execute(
        psycopg.sql.SQL("DELETE FROM {} WHERE run_id = %s").format(psycopg.sql.Identifier(UNDO)),
        (record.run_id,),
    )


def _deliver(request: UndoRequest, result: UndoResult, database: dict) -> list:
    """One import.undone event per URL, after a committed undo."""
    if not request.webhooks.urls or result.status != "succeeded":
        return []
    event = webhook.build_undone_event(result.as_dict(), database=database)
    return webhook.deliver(request.webhooks, event)


__all__ = ["UndoOutcome", "UndoRequest", "UndoResult", "run"]
