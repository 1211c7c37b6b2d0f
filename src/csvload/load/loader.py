"""The import pipeline: stream the source into a staging table with COPY, then merge it into
the target table with set-based SQL, all in one transaction.

Nothing here prints: progress goes to a callback and the outcome is an ImportResult.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psycopg
from psycopg import errors

from csvload import files
from csvload.errors import ConstraintError, TargetError, TooManyRejectsError
from csvload.load import distributed_stage, fit, missing, sql, upsert
from csvload.load.changes import ChangesWriter
from csvload.read.presets import PRESETS
from csvload.read.rejects import RejectsWriter
from csvload.read.source import Reject, Source
from csvload.server.database import translate, widen_send_buffer
from csvload.table import schema
from csvload.table.schema import INDEXES, PRODUCTS
from csvload.table.target import Binding, Plan, bind, describe

# 10k rows (about 1.3 MB of text) per chunk written to the COPY stream: 2k and 10k measured
# within noise of each other at 500k rows, and 10k keeps the client's peak RSS near 55 MB,
# most of it psycopg and libpq themselves (50k rows per chunk: 95 MB).  See the README's
# tuning section.
DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class ImportOptions:
    table: str = PRODUCTS  # optionally schema-qualified
    key: tuple[str, ...] = ("sku",)
    binding: Binding = field(default_factory=Binding)
    preset: str | None = None  # a shop export's layout: presets.PRESETS
    missing: str = "keep"  # keep, deactivate or delete the rows the file does not list
    active_column: str = "active"  # the boolean column --missing deactivate sets
    max_missing: int | str = "10%"  # rows, or a share of the rows in scope ("10%")
    changes_path: Path | None = None  # --changes: one CSV row per key changed
    batch_size: int = DEFAULT_BATCH_SIZE
    max_errors: int = 0
    dry_run: bool = False
    rejects_path: Path | None = None
    lock_timeout: float | None = None  # seconds; None waits for as long as it takes
    statement_timeout: float | None = None
    work_mem: str = "256MB"  # for the dedupe sort; per import, not per server


@dataclass(frozen=True)
class Progress:
    phase: str  # reading, waiting, merging, committing, done
    bytes_done: int
    bytes_total: int | None
    rows: int


ProgressCallback = Callable[[Progress], None]

# The ledger: rows_read is the sum of the counts in LEDGER_PARTS.  OPTIONAL_COUNTS are
# shown only when they are not 0 (full feeds, presets and triggers make them).
LEDGER_PARTS = (
    "inserted", "updated", "unchanged", "suppressed", "duplicates", "rejected", "skipped",
)  # fmt: skip
OPTIONAL_COUNTS = ("skipped", "suppressed", "deactivated", "reactivated", "deleted")


@dataclass
class ImportResult:
    status: str  # succeeded, failed, dry_run
    file: str
    table: str | None = None
    key: list[str] = field(default_factory=list)
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0  # rows a preset's rules skip (a shop export's image rows)
    suppressed: int = 0  # new or changed rows a trigger of the table kept from being written
    deactivated: int = 0  # --missing deactivate: rows the file no longer lists
    reactivated: int = 0  # inactive rows the file lists again (counted in updated too)
    deleted: int = 0  # --missing delete
    seconds: float = 0.0
    rows_per_second: float = 0.0
    statements: int = 0
    rejects_file: str | None = None
    changes_file: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    error: str | None = None
    run_id: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


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


def prepare(
    conn: psycopg.Connection, source: Source, options: ImportOptions, writing: bool = True
) -> Plan:
    """Read the target's definition and bind the source's header to it; tells the source
    where its key columns are.  Raises CsvloadError before anything is read or written."""
    try:
        with conn.transaction():
            # Reading column defaults takes a share lock on the table: both bounds hold
            # while it waits (--statement-timeout alone had let it wait for ever).
            settings = {}
            if options.lock_timeout is not None:
                settings["lock_timeout"] = _milliseconds(options.lock_timeout)
            if options.statement_timeout is not None:
                settings["statement_timeout"] = _milliseconds(options.statement_timeout)
            if settings:
                conn.execute(sql.set_local(settings))
            target = describe(conn, options.table, options.key)
    except psycopg.Error as e:
        raise translate(e, source.name) from e
    if target.citus_kind != "local" and (options.missing != "keep" or options.changes_path):
        # The full feed's statement joins the table with the coordinator's stage in ways
        # Citus refuses (a FULL JOIN, ctid): say so before reading the file.
        raise TargetError(
            f"{options.table}: is a {target.citus_kind} table of Citus; --missing and"
            " --changes do not work on tables Citus manages yet"
        )
    if options.preset is not None:
        preset = PRESETS[options.preset].bind(source.header, target.writable(), _where(source))
        source.use_preset(preset)
    # A full feed (--missing deactivate) gives every new row active = true itself.
    filled = (options.active_column,) if options.missing == "deactivate" else ()
    plan = bind(
        target, source.staged_columns, _binding(source, options), _where(source), writing, filled
    )
    if options.missing != "keep":
        plan = missing.prepare(plan, options)
    if options.preset is None:
        source.use_keys(
            tuple((f.index, f.column.name) for f in plan.key_fields if f.index < len(source.header))
        )
    # A character the database encoding cannot store is a reject, not a failed COPY.
    source.use_server_encoding(conn.info.parameter_status("server_encoding"))
    return plan


def _binding(source: Source, options: ImportOptions) -> Binding:
    """--map lives in SourceOptions (the reader looks for the key before connecting)."""
    mapping = source.options.mapping
    return replace(options.binding, mapping=mapping) if mapping else options.binding


def _where(source: Source) -> str:
    return f"{source.name} line {getattr(source, 'header_line', 1)}"


def import_source(
    conn: psycopg.Connection,
    source: Source,
    options: ImportOptions,
    progress: ProgressCallback | None = None,
    result: ImportResult | None = None,
    plan: Plan | None = None,
    before_commit: Callable[[psycopg.Connection, ImportResult], None] | None = None,
) -> ImportResult:
    """Import an open Source into the target table, atomically.  Raises CsvloadError on
    failure; the transaction is then rolled back and the rejects file still written.

    Pass `result` to keep the counts reached so far when the import fails, and `plan`
    (from prepare()) when the caller has bound the source already.  `before_commit` runs
    in the import's transaction once everything is written, just before COMMIT (never
    for a dry run): what it writes commits with the import, or not at all.
    """
    started = time.monotonic()
    report = progress or (lambda p: None)
    if result is None:
        result = ImportResult(status="running", file=source.name)
    check_outputs(options, source.options.path)
    if plan is None:
        plan = prepare(conn, source, options)
    result.status, result.file = "running", source.name
    result.table, result.key = plan.target.display, list(plan.target.key)
    result.ignored_columns = list(plan.ignored)
    rejects = RejectsWriter(options.rejects_path, source.encoding) if options.rejects_path else None
    changes = ChangesWriter(options.changes_path) if options.changes_path else None
    db = Statements(conn)
    where = source.name
    lines = LineMap()
    sync = missing.Sync(plan, options) if options.missing != "keep" else None
    try:
        with conn.transaction():
            _configure(db, options)
            _check_now(db, plan)
            distributed = stage(
                db, source, options, result, rejects, report, lines, plan, sync, distribute=True
            )
            if result.rejected > options.max_errors:
                raise TooManyRejectsError(_too_many(result, options, rejects))
            _lock(db, plan, report, result)
            if sync is not None:
                sync.before(db)
            report(Progress("merging", 0, None, result.rows_read))
            _write(db, plan, source, options, result, rejects, lines, changes, sync, distributed)
            if sync is not None:
                sync.after(result, source.name)
            if options.dry_run:
                raise psycopg.Rollback()
            # The files on disk before the COMMIT: a full disk then rolls the import back
            # instead of failing it after its rows are in.
            for output in (rejects, changes):
                if output is not None:
                    output.ready()
            if before_commit is not None:
                before_commit(conn, result)
            report(Progress("committing", 0, None, result.rows_read))
    except psycopg.Error as e:
        if changes is not None:
            changes.discard()
        raise translate(e, where) from e
    except BaseException:
        if changes is not None:
            changes.discard()
        raise
    finally:
        result.statements = db.count
        result.seconds = round(time.monotonic() - started, 3)
        if rejects is not None:
            # Committed or not: the rejects say why an import failed.  One that could not
            # be written whole is removed, its error raised (here, or where it happened).
            path = rejects.finish()
            result.rejects_file = str(path) if path else None
    if changes is not None:
        # Only a committed import has changed anything: a dry run lists its changes in
        # the counts alone.
        if options.dry_run:
            changes.discard()
        else:
            path = changes.finish()
            result.changes_file = str(path) if path else None
    result.status = "dry_run" if options.dry_run else "succeeded"
    result.rows_per_second = round(result.rows_read / result.seconds) if result.seconds else 0
    report(Progress("done", 0, None, result.rows_read))
    return result


def outputs(options: ImportOptions) -> list[tuple[str, Path]]:
    """The files an import writes, under their options."""
    paths = (("--rejects", options.rejects_path), ("--changes", options.changes_path))
    return [(option, path) for option, path in paths if path is not None]


def check_outputs(options: ImportOptions, input: str | int | None) -> None:
    """Refuse output paths that are the input (a path, or stdin's descriptor), each other,
    or not a regular file or a new path: files.check_outputs().  Raises OutputPathError."""
    files.check_outputs(input, outputs(options))


def _configure(db: Statements, options: ImportOptions) -> None:
    """Settings for this transaction only, in one statement."""
    settings = {
        "work_mem": options.work_mem,
        # ANALYZE of the stage samples 3,000 rows instead of 30,000: 0.01 s against
        # 0.08 s at 500k rows, and enough for the one thing the merge's plan needs from
        # it (that there are many keys, so the join hashes).
        "default_statistics_target": "10",
    }
    if db.cur.connection.info.server_version >= 140000:
        # If csvload dies (kill -9) mid-merge, the server otherwise finishes the statement
        # before noticing, holding the products lock; this makes it notice within a second.
        settings["client_connection_check_interval"] = "1s"
    if options.lock_timeout is not None:
        settings["lock_timeout"] = _milliseconds(options.lock_timeout)
    if options.statement_timeout is not None:
        settings["statement_timeout"] = _milliseconds(options.statement_timeout)
    db.execute(sql.set_local(settings))


def _check_now(db: Statements, plan: Plan) -> None:
    """Deferred foreign keys (Django declares every one DEFERRABLE INITIALLY DEFERRED) would
    otherwise be checked at COMMIT, where a bad row fails the whole import; checked at the
    end of the merge instead, a violation is a reject like any other."""
    if plan.target.deferrable:
        db.execute(SET_CONSTRAINTS_IMMEDIATE)


SET_CONSTRAINTS_IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE"


def _milliseconds(seconds: float) -> str:
    # PostgreSQL reads 0 as "no limit"; a user who asks for 0 s means "do not wait".
    return f"{max(1, round(seconds * 1000))}ms"


class LineMap:
    """Which physical line each staged record (numbered by the stage's ord, from 1)
    starts on, kept as runs of records on consecutive lines: one run for a clean file,
    one more per blank line, multi-line record or rejected record, so it stays small."""

    def __init__(self) -> None:
        self._ords = array("q")  # the ord of each run's first record
        self._lines = array("q")  # its line
        self._next = 1

    def add(self, runs: list[list[int]]) -> None:
        for line, count in runs:
            if self._ords and self._lines[-1] + (self._next - self._ords[-1]) == line:
                pass  # continues the last run
            else:
                self._ords.append(self._next)
                self._lines.append(line)
            self._next += count

    def line(self, ord_: int) -> int:
        i = bisect.bisect_right(self._ords, ord_) - 1
        return self._lines[i] + (ord_ - self._ords[i])


def stage(
    db, source: Source, options, result, rejects, report, lines=None, plan=None, sync=None,
    distribute: bool = False,
) -> distributed_stage.DistributedStage | None:
    """COPY the source's good records into the temp table sql.STAGE, chunk by chunk,
    counting rows_read and rejected into result.  Shared with verify.

    With `distribute` (an import), a hash-distributed Citus target gets a stage
    co-located with it instead, when distributed_stage allows: returned, for _write()
    and for dropping before the commit.

    All chunks go through ONE streaming COPY: while Python parses the next chunk, the
    server parses the last one from the socket buffer.  Measured on the 500k file, this
    staged in 0.91 s against 1.35 s for one COPY statement per chunk and 1.45 s for
    per-chunk COPYs on a worker thread (which lost more to GIL hand-offs than it gained).
    """
    ncols = len(source.staged_columns)
    constants = tuple(value for _, value in plan.scope) if plan is not None else ()
    widen_send_buffer(db.cur.connection)
    distributed = None
    if distribute and plan is not None:
        distributed = distributed_stage.create(db, plan, ncols, constants, result.run_id)
    if distributed is None:
        db.execute(sql.create_stage(ncols, constants))
    report(Progress("reading", 0, source.size, 0))
    with db.copy(sql.copy_stage(ncols, source.delimiter)) as copy:
        for chunk in source.chunks(options.batch_size):
            result.rows_read += chunk.rows + len(chunk.rejects) + chunk.skipped
            result.skipped += chunk.skipped
            if chunk.rejects:
                result.rejected += len(chunk.rejects)
                if rejects is not None:
                    rejects.write(chunk.rejects)
                if sync is not None:
                    sync.keep(chunk.rejects)
            # Past --max-errors the import will fail: keep reading only to list every reject.
            if chunk.rows and result.rejected <= options.max_errors:
                copy.write(chunk.data)
                if lines is not None:
                    lines.add(chunk.runs)
            report(Progress("reading", chunk.bytes_done, source.size, result.rows_read))
    if sync is not None:
        sync.stage_kept(db)
    return distributed


def _too_many(result: ImportResult, options: ImportOptions, rejects) -> str:
    where = f" (see {rejects.path})" if rejects is not None else ""
    return (
        f"{result.rejected} rows rejected, more than --max-errors {options.max_errors};"
        f" nothing was imported{where}"
    )


def _lock(db: Statements, plan: Plan, report: ProgressCallback, result: ImportResult) -> None:
    """Serialise imports into the table: SHARE ROW EXCLUSIVE conflicts with itself and with
    writers, but not with plain readers."""
    try:
        with db.cur.connection.transaction():
            db.execute(sql.lock(plan, nowait=True))
            return
    except psycopg.errors.LockNotAvailable:
        pass
    except psycopg.errors.InternalError as e:
        # Citus propagates the LOCK to the workers, and a worker's NOWAIT failing comes
        # back as "failure on connection marked as essential: <worker>" (Citus 14.0.1).
        # A worker that is really down fails the waiting LOCK below, with its own error.
        if plan.target.citus_kind == "local" or not str(e).startswith(_CITUS_BUSY):
            raise
    report(Progress("waiting", 0, None, result.rows_read))
    db.execute(sql.lock(plan))


_CITUS_BUSY = "failure on connection marked as essential"


def _write(
    db, plan: Plan, source: Source, options, result, rejects, lines: LineMap, changes,
    sync=None, distributed=None,
) -> None:
    """Write the stage into the table, optimistically: the statement casts every value.
    When a value does not fit (a data exception, a CHECK, a foreign key, NOT NULL), the
    statement is rolled back to its savepoint, fit.find() names the rows to blame, they
    become rejects, and the statement runs again without them.  A distributed stage
    (`distributed`) is dropped here once written, or moved to the coordinator for
    fit.find()."""
    conn = db.cur.connection
    empty = db.execute(sql.is_empty(plan)).fetchone()[0]
    rebuild = empty and plan.target.own and _drop_own_indexes(db, plan)
    if not empty and distributed is None:
        # The planner knows nothing about a fresh temp table; a sample (about 0.1 s at 500k
        # rows) lets it hash-join the stage with the table instead of probing the index
        # once per row.  Filling an empty table joins nothing, so it skips this.
        db.execute(sql.ANALYZE_STAGE)
    for attempt in (1, 2):
        try:
            with conn.transaction():
                if sync is not None or changes is not None:
                    distinct = _feed(db, plan, result, empty, sync, changes, options)
                elif distributed is not None:
                    distinct = distributed_stage.merge(db, plan, result, empty, distributed)
                else:
                    distinct = _merge(db, plan, result, empty)
            break
        except fit.FIXABLE as e:
            if (
                sync is not None
                and isinstance(e, errors.ForeignKeyViolation)
                and e.diag.table_name != plan.target.name
            ):
                # Deleting the missing rows: another table still references one of them.
                raise sync.still_referenced(db, e, source.name) from e
            if attempt == 2:
                raise
            if distributed is not None:
                distributed_stage.localize(db, distributed)
                distributed = None
            if not _set_aside(db, plan, source, options, result, rejects, lines):
                raise translate(e, source.name) from e
        except errors.UniqueViolation as e:
            raise _unique_violation(db, plan, source, e, lines) from e
    if rebuild:
        _rebuild_own_indexes(db, plan, rebuild.primary_key)
    if distributed is not None:
        distributed_stage.drop(db, distributed)
    result.unchanged = distinct - result.inserted - result.updated - result.suppressed
    result.duplicates = result.rows_read - result.rejected - result.skipped - distinct


@dataclass(frozen=True)
class _Dropped:
    primary_key: str | None  # the primary key's constraint name, when it was dropped too


def _drop_own_indexes(db, plan: Plan) -> _Dropped | None:
    """Filling csvload's own empty products: build the indexes once over the finished
    table instead of maintaining them row by row (at 500k rows: insert + rebuild 1.6 s,
    against 2.3 s keeping them; dropping the primary key too saved another 0.25 s).  This
    needs ACCESS EXCLUSIVE, so readers wait for this import; on an empty table there is
    nothing for them to read yet.  Only while the indexes are exactly what `csvload init`
    made (schema.indexes_as_created): they are rebuilt by those definitions, so a DESC, an
    opclass, a fillfactor, a comment, the CLUSTER mark or a replica identity that a user
    set would be lost.  Otherwise None, and the rows go in through the indexes."""
    db.execute(sql.lock(plan, "ACCESS EXCLUSIVE"))
    if not schema.indexes_as_created(db, plan.target.oid):
        return None
    row = db.execute(schema.DROPPABLE_PRIMARY_KEY).fetchone()
    primary_key = row[0] if row else None
    if primary_key:
        db.execute(schema.drop_constraint(primary_key))
    for index in INDEXES:
        db.execute(index.drop())
    return _Dropped(primary_key)


def _rebuild_own_indexes(db, plan: Plan, primary_key: str | None) -> None:
    if primary_key:
        db.execute(schema.add_primary_key(primary_key))
    for index in INDEXES:
        db.execute(index.create(plan.target.name))


def _merge(db, plan: Plan, result: ImportResult, empty: bool) -> int:
    """One attempt at writing the stage; sets inserted and updated, returns the number of
    distinct keys."""
    if empty and not plan.target.triggers:
        result.inserted = db.execute(sql.insert_latest(plan)).rowcount
        result.updated = 0
        return result.inserted
    if plan.target.citus_kind != "local":
        return _upsert(db, plan, result)
    # MERGE (PostgreSQL 15+) pairs each key with its row in one join; counting it needs
    # the transaction's table statistics, so without them (or with triggers, whose own
    # writes they count too) the WITH form runs, counted by RETURNING.
    counted, *before = db.execute(sql.written(plan)).fetchone()
    if _statistics_count(plan, counted) and db.cur.connection.info.server_version >= 150000:
        return _merge_into(db, plan, result, before)[0]
    return _counted(plan, result, db.execute(sql.merge(plan)).fetchone())


def _statistics_count(plan: Plan, track_counts: bool) -> bool:
    """Whether the transaction's table statistics count exactly what the merge writes:
    not when they are off, nor when a trigger may write the table itself (an AFTER INSERT
    trigger updating its own row counts as an update) or keep a row from being written."""
    return track_counts and not plan.target.triggers


def _merge_into(
    db, plan: Plan, result: ImportResult, before, mode: str = "keep", gone: bool = False,
    changes=None,
) -> tuple[int, int]:
    """sql.merge_into(), counted: sets inserted, updated and reactivated; returns (the
    distinct keys, the rows deactivated or deleted).  `before` is what written() read."""
    # Created inside the savepoint: an attempt rolled back takes them along.
    counters = [sql.UNCHANGED]
    if plan.active is not None:
        counters.append(sql.REACTIVATED)
    if gone:
        counters.append(sql.GONE)
    for counter in counters:
        db.execute(sql.create_counter(counter))
    statement = sql.merge_into(plan, mode, gone, changes is not None)
    if changes is not None:
        changes.stream(db, plan, statement, counted=False)
    else:
        db.execute(statement)
    inserted, updated, unchanged, *more = db.execute(sql.merge_counts(plan, counters)).fetchone()
    if plan.active is not None:
        result.reactivated = more.pop(0)
    missing = more.pop(0) if gone else 0
    result.inserted = inserted - before[0]
    # Deactivating a row updates it; deleting one is no update.
    result.updated = updated - before[1] - (missing if mode == "deactivate" else 0)
    return result.inserted + result.updated + unchanged, missing


def _counted(plan: Plan, result: ImportResult, row) -> int:
    """Take sql.merge()'s counts; return the distinct keys.  The rows it meant to insert
    or update but did not were kept back by a trigger (a BEFORE trigger returning NULL)."""
    distinct, result.updated, result.inserted, reactivated, _, inserting, updating = row
    result.suppressed = inserting - result.inserted + updating - result.updated
    if plan.active is not None:
        result.reactivated = reactivated
    return distinct


def _feed(db, plan: Plan, result: ImportResult, empty: bool, sync, changes, options) -> int:
    """A full feed's (--missing, --changes) attempt at writing the stage, in one
    statement on a table that has rows: MERGE with WHEN NOT MATCHED BY SOURCE on
    PostgreSQL 17 and later (18 with --changes, for RETURNING old), else sql.merge()'s
    WITH form.  An empty table lacks no row, and all its changes are insertions."""
    if empty:
        if changes is not None:
            changes.stream(db, plan, sql.inserted_changes(plan), counted=False)
        return _merge(db, plan, result, empty)
    listed = result.rows_read - result.rejected - result.skipped
    # An empty file, or one whose rows are all rejects, never deactivates anything.
    gone = sync is not None and listed > 0
    if gone:
        sync.drop_unusable_keys(db)
        if options.missing == "delete":
            # Another table's deferred foreign key would otherwise fail the commit.
            db.execute("SET CONSTRAINTS ALL IMMEDIATE")
    counted, *before = db.execute(sql.written(plan)).fetchone()
    version = db.cur.connection.info.server_version
    if _statistics_count(plan, counted) and version >= (170000 if changes is None else 180000):
        distinct, missing = _merge_into(
            db, plan, result, before, options.missing, gone, changes
        )
    else:
        statement = sql.merge(plan, options.missing, changes is not None, gone)
        if changes is not None:
            row = changes.stream(db, plan, statement)
        else:
            row = db.execute(statement).fetchone()
        distinct, missing = _counted(plan, result, row), row[4]
    if sync is not None:
        sync.done = missing
    return distinct


def _upsert(db, plan: Plan, result: ImportResult) -> int:
    """A table Citus manages: INSERT ... ON CONFLICT, counted by its RETURNING (Citus
    refuses MERGE from the coordinator's stage and keeps no table statistics on the
    coordinator; see upsert.py).  Filling an empty one needs none of this: insert_latest()
    inserts every distinct key, and its row count is theirs."""
    fill = upsert.fill_kept(plan)
    if fill is not None:
        db.execute(fill)
    now = db.execute(upsert.NOW).fetchone()[0]
    distinct, result.inserted, result.updated = db.execute(upsert.upsert(plan, now)).fetchone()
    return distinct


def _set_aside(db, plan: Plan, source: Source, options, result, rejects, lines) -> bool:
    """Find the staged rows that do not fit, turn them into rejects and take them out of
    the stage.  False when there are none (the failure was not a row's)."""
    found = 0
    batch: list[Reject] = []
    for misfit in fit.find(db, plan):
        found += 1
        batch.append(
            Reject(lines.line(misfit.ord), misfit.reason,
                   fit.record_text(misfit.fields, source.delimiter))
        )
        if len(batch) >= 1000:
            _reject(batch, rejects)
            batch = []
    _reject(batch, rejects)
    if not found:
        return False
    if plan.active is not None or options.missing != "keep":
        db.execute(missing.KEEP_BAD)
    db.execute(fit.DELETE_BAD)
    result.rejected += found
    if result.rejected > options.max_errors:
        raise TooManyRejectsError(_too_many(result, options, rejects))
    return True


def _reject(batch: list[Reject], rejects) -> None:
    if batch and rejects is not None:
        rejects.write(batch)


def _unique_violation(db, plan: Plan, source: Source, e, lines: LineMap) -> ConstraintError:
    """The file would give two rows the same value of another unique index (a barcode,
    say): one line naming the index and, where it can be found, a line of the file."""
    index = e.diag.constraint_name or "a unique index"
    detail = e.diag.message_detail or ""
    where = source.name
    value = None
    if detail.startswith("Key (") and ")=(" in detail:
        columns, _, rest = detail[5:].partition(")=(")
        value = rest.rsplit(")", 1)[0]
        field = plan.field(columns) if "," not in columns else None
        if field is not None:
            row = db.execute(sql.find_value(plan, field), (value,)).fetchone()
            if row is not None:
                where = f"{source.name} line {lines.line(row[0])}"
        return ConstraintError(
            f"{where}: {columns} {value!r} is already used by another row of"
            f" {plan.target.display} or of the file (unique index {index}); nothing was written"
        )
    return ConstraintError(
        f"{where}: the file breaks unique index {index} of {plan.target.display};"
        " nothing was written"
    )
