"""One import as an object: Import holds its state (source, options, plan, result, feed,
outputs) and runs it in one transaction: configure, stage, lock, write (setting aside the
rows that do not fit), commit.  prepare() binds a source to its target before that.

Nothing here prints: progress goes to a callback and the outcome is an ImportResult.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg
from psycopg import errors

from csvload import files
from csvload.errors import TargetError, TooManyRejectsError
from csvload.load import (
    distributed_stage,
    fit,
    guards,
    layout,
    missing,
    rebuild,
    statements,
    undo_log,
    writers,
)  # fmt: skip
from csvload.load.capabilities import Capabilities, Server
from csvload.load.changes import ChangesWriter
from csvload.load.guards import Guards
from csvload.load.result import ImportResult, Progress, ProgressCallback
from csvload.load.staging import DEFAULT_BATCH_SIZE, LineMap, Staging, Statements, stage
from csvload.load.timing import Timings
from csvload.load.violations import unique_violation
from csvload.read.presets import PRESETS
from csvload.read.rejects import RejectsWriter
from csvload.read.source import Reject, Source
from csvload.server.database import translate
from csvload.table import control, schema
from csvload.table.binding import Binding, Plan, bind
from csvload.table.catalog import describe
from csvload.table.schema import INDEXES, PRODUCTS

__all__ = ["DEFAULT_BATCH_SIZE", "Import", "ImportOptions", "import_source", "prepare"]


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
    guards: Guards = field(default_factory=Guards)  # --min-rows, --max-updated, --max-change
    no_undo: bool = False  # --no-undo: keep no record for `csvload undo` (undo_log.py)


def prepare(
    conn: psycopg.Connection, source: Source, options: ImportOptions, writing: bool = True
) -> Plan:
    """Read the target's definition and bind the source's header to it; tells the source
    where its key columns are.  Raises CsvloadError before anything is read or written.
    Several inputs (read.inputs.Inputs) are bound one by one, and laid out like the
    first (layout.py), whose plan is the import's."""
    sources = getattr(source, "sources", None)
    if sources is None:
        return _prepare(conn, source, options, writing)
    plans = [_prepare(conn, s, options, writing) for s in sources]
    layout.lay_out(sources, plans)
    # The headers no column takes, of every input: each is warned about once.
    ignored = dict.fromkeys(name for plan in plans for name in plan.ignored)
    return replace(plans[0], ignored=tuple(ignored))


def _prepare(
    conn: psycopg.Connection, source: Source, options: ImportOptions, writing: bool
) -> Plan:
    control.check_combination(options.binding.mode, options.missing, options.binding)
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
                conn.execute(statements.set_local(settings))
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
    if target.citus_kind != "local" and _controls(options.binding):
        # The Citus upserts are INSERT ... ON CONFLICT, shard by shard, and were never run
        # with these rules: refuse rather than guess.
        raise TargetError(
            f"{options.table}: is a {target.citus_kind} table of Citus; --mode, --update,"
            " --keep, --fill and --empty do not work on tables Citus manages yet"
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
    guards.check(plan, options.guards)
    if options.preset is None:
        source.use_keys(
            tuple((f.index, f.column.name) for f in plan.key_fields if f.index < len(source.header))
        )
    # A character the database encoding cannot store is a reject, not a failed COPY.
    source.use_server_encoding(conn.info.parameter_status("server_encoding"))
    return plan


def _controls(binding: Binding) -> bool:
    """Whether the import limits what it may change (--mode and the column rules)."""
    return binding.mode != "upsert" or any(
        (binding.update is not None, binding.keep, binding.fill, binding.empty)
    )


def _binding(source: Source, options: ImportOptions) -> Binding:
    """--map lives in SourceOptions (the reader looks for the key before connecting)."""
    mapping = source.options.mapping
    return replace(options.binding, mapping=mapping) if mapping else options.binding


def _where(source: Source) -> str:
    return source.place(getattr(source, "header_line", 1))


def outputs(options: ImportOptions) -> list[tuple[str, Path]]:
    """The files an import writes, under their options."""
    paths = (("--rejects", options.rejects_path), ("--changes", options.changes_path))
    return [(option, path) for option, path in paths if path is not None]


def check_outputs(options: ImportOptions, input: str | int | None) -> None:
    """Refuse output paths that are the input (a path, or stdin's descriptor), each other,
    or not a regular file or a new path: files.check_outputs().  Raises OutputPathError."""
    files.check_outputs(input, outputs(options))


class Import:
    """One import of an open Source into its target table, atomically.  run() raises
    CsvloadError on failure; the transaction is then rolled back, the rejects file still
    written, and .result keeps the counts reached so far.

    `before_commit` runs in the import's transaction once everything is written, just
    before COMMIT (never for a dry run): what it writes commits with the import, or not
    at all.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        source: Source,
        options: ImportOptions,
        progress: ProgressCallback | None = None,
        before_commit: Callable[[psycopg.Connection, ImportResult], None] | None = None,
        run_id: str | None = None,
    ):
        self.conn, self.source, self.options = conn, source, options
        self.report = progress or (lambda p: None)
        self.before_commit = before_commit
        self.result = ImportResult(
            status="failed", file=source.options.path, table=options.table,
            key=list(options.key), run_id=run_id,
        )  # fmt: skip
        self.plan: Plan | None = None
        self.db = Statements(conn)
        self.lines = LineMap()
        self.rejects: RejectsWriter | None = None
        self.changes: ChangesWriter | None = None
        self.feed: missing.NoFeed = missing.NoFeed()
        self.guards: guards.NoGuards = guards.NoGuards()
        self.distributed: distributed_stage.DistributedStage | None = None
        self.held = 0  # the rows the writer held back for --max-change (writers.py)
        self.caps: Capabilities | None = None
        self.undo: undo_log.UndoLog | None = None  # what the import records for undo
        self.timings = Timings()
        self._committing: float | None = None  # when COMMIT began

    def prepare(self) -> Plan:
        """Bind the source to the target (prepare()); run() does it when not done yet."""
        with self.timings.phase("prepare"):
            self.plan = prepare(self.conn, self.source, self.options)
        return self.plan

    def run(self) -> ImportResult:
        started = time.monotonic()
        source, options, result = self.source, self.options, self.result
        for path in source.paths:
            check_outputs(options, path)
        plan = self.plan or self.prepare()
        result.status, result.file = "running", source.name
        result.table, result.key = plan.target.display, list(plan.target.key)
        result.ignored_columns = list(plan.ignored)
        if options.rejects_path:
            self.rejects = RejectsWriter(options.rejects_path, source.encoding, source.labelled)
        if options.changes_path:
            self.changes = ChangesWriter(options.changes_path)
        self.feed = missing.feed_for(plan, options)
        self.guards = guards.guards_for(plan, options.guards)
        keep = not (options.no_undo or options.dry_run)
        self.undo = undo_log.for_import(self.conn, plan, result.run_id, keep)
        try:
            with self.conn.transaction():
                self._transaction()
            if self._committing is not None:
                self.timings.add("commit", time.perf_counter() - self._committing)
        except psycopg.Error as e:
            self._discard_changes()
            raise translate(e, source.name) from e
        except BaseException:
            self._discard_changes()
            raise
        finally:
            result.statements = self.db.count
            result.seconds = round(time.monotonic() - started, 3)
            result.timings = self.timings.as_dict()
            if self.rejects is not None:
                # Committed or not: the rejects say why an import failed.  One that could
                # not be written whole is removed, its error raised (here, or where it
                # happened).
                path = self.rejects.finish()
                result.rejects_file = str(path) if path else None
        self._finish_changes()
        result.status = "dry_run" if options.dry_run else "succeeded"
        result.rows_per_second = round(result.rows_read / result.seconds) if result.seconds else 0
        self.report(Progress("done", 0, None, result.rows_read))
        return result

    def _transaction(self) -> None:
        db, plan, result, options = self.db, self.plan, self.result, self.options
        _configure(db, options)
        if plan.target.deferrable:
            # Deferred foreign keys (Django declares every one DEFERRABLE INITIALLY
            # DEFERRED) would otherwise be checked at COMMIT, where a bad row fails the
            # whole import; checked at the end of the merge, a violation is a reject.
            db.execute(writers.SET_CONSTRAINTS_IMMEDIATE)
        self._stage()
        if result.rejected > options.max_errors:
            raise TooManyRejectsError(self._too_many())
        _lock(db, plan, self.report, result)
        self.feed.before(db)
        self.guards.before(db)
        if self.undo is not None:
            self.undo.before(db)
        self.report(Progress("merging", 0, None, result.rows_read))
        self._write()
        self.guards.after(result, self.source.name)
        self.feed.after(result, self.source.name)
        if options.dry_run:
            raise psycopg.Rollback()
        if self.undo is not None:
            self.undo.finish(db)
        self._committing = time.perf_counter()
        # The files on disk before the COMMIT: a full disk then rolls the import back
        # instead of failing it after its rows are in.
        for output in (self.rejects, self.changes):
            if output is not None:
                output.ready()
        if self.before_commit is not None:
            self.before_commit(self.conn, result)
        self.report(Progress("committing", 0, None, result.rows_read))

    def _stage(self) -> None:
        """Stage the source: into a stage co-located with a hash-distributed Citus target
        when distributed_stage allows, else into the coordinator's temp stage."""
        constants = tuple(value for _, value in self.plan.scope)
        staging = Staging(
            self.source, self.result, self.options.batch_size, self.options.max_errors,
            self.report, self.rejects, self.lines, self.feed, constants, self.timings,
        )  # fmt: skip
        self.distributed = distributed_stage.create(
            self.db, self.plan, staging.ncols, constants, self.result.run_id
        )
        stage(self.db, staging, created=self.distributed is not None)
        self.result.files = self.source.listing(self.result.rows_read)

    def _write(self) -> None:
        """Write the stage into the table, optimistically: the statement casts every
        value.  When a value does not fit (a data exception, a CHECK, a foreign key, NOT
        NULL), the statement is rolled back to its savepoint, fit.find() names the rows to
        blame, they become rejects, and the statement runs again without them.  A
        distributed stage is dropped here once written, or moved to the coordinator for
        fit.find()."""
        db, plan, result, timings = self.db, self.plan, self.result, self.timings
        with timings.phase("analyze"):
            self.caps = caps = Capabilities.read(db, plan)
        # An update-only feed inserts nothing: no index to rebuild.
        own = dropped = None
        if caps.empty and plan.target.own and plan.control.mode != "update":
            with timings.phase("indexes"):
                own = _drop_own_indexes(db, plan)
        elif caps.empty and self._fills_empty():
            with timings.phase("indexes"):
                dropped = rebuild.drop(db, plan)
        if not caps.empty and self.distributed is None:
            # The planner knows nothing about a fresh temp table; a sample (about 0.1 s at
            # 500k rows) lets it hash-join the stage with the table instead of probing the
            # index once per row.  Filling an empty table joins nothing, so it skips this.
            with timings.phase("analyze"):
                db.execute(statements.ANALYZE_STAGE)
        self.held = 0
        for attempt in (1, 2):
            try:
                with self.conn.transaction():
                    with timings.phase("write"):
                        distinct = writers.choose(db, self).write(db, self)
                    if dropped is not None:
                        # In the attempt: a row failing a foreign key is a reject.
                        with timings.phase("indexes"):
                            dropped.restore(db)
                break
            except fit.FIXABLE as e:
                referenced = self.feed.still_referenced(db, e, self.source.name)
                if referenced is not None:
                    raise referenced from e
                if attempt == 2:
                    raise
                if self.distributed is not None:
                    distributed_stage.localize(db, self.distributed)
                    self.distributed = None
                if not self._set_aside():
                    raise translate(e, self.source.name) from e
            except errors.UniqueViolation as e:
                raise unique_violation(db, plan, e, self.source.name, self.lines) from e
        if self.held:
            self._hold_back()
        if own:
            with timings.phase("indexes"):
                _rebuild_own_indexes(db, plan, own.primary_key)
        if self.distributed is not None:
            distributed_stage.drop(db, self.distributed)
        result.unchanged = (
            distinct - result.inserted - result.updated - result.suppressed - result.existing
            - result.not_found
        )
        result.duplicates = result.rows_read - result.rejected - result.skipped - distinct

    def _fills_empty(self) -> bool:
        """Whether the writer will be FillEmpty's plain INSERT into a user's table (the
        conditions of writers.choose()), which may drop and rebuild its secondary indexes
        and foreign keys (rebuild.py).  Not for a dry run: it would take their locks for
        nothing."""
        caps, plan = self.caps, self.plan
        return (
            not caps.triggers and not caps.citus and self.distributed is None
            and plan.control.mode != "update" and not self.options.dry_run
        )

    def _set_aside(self) -> bool:
        """Find the staged rows that do not fit, turn them into rejects and take them out
        of the stage.  False when there are none (the failure was not a row's)."""
        found = 0
        batch: list[Reject] = []
        for misfit in fit.find(self.db, self.plan):
            found += 1
            batch.append(
                Reject(self.lines.line(misfit.ord), misfit.reason,
                       fit.record_text(misfit.fields, self.source.delimiter),
                       file=self.lines.file(misfit.ord))
            )  # fmt: skip
            if len(batch) >= 1000:
                self._reject(batch)
                batch = []
        self._reject(batch)
        if not found:
            return False
        self.feed.keep_bad(self.db)
        self.db.execute(fit.DELETE_BAD)
        self.result.rejected += found
        if self.result.rejected > self.options.max_errors:
            raise TooManyRejectsError(self._too_many())
        return True

    def _hold_back(self) -> None:
        """--max-change: the writer held back self.held rows whose values would move too
        far (not written, their keys listed, so --missing never touches them); they become
        rejects (guards.py).  Found again in the stage joined with the table: their stored
        values are unchanged, while a row the writer updated now holds its new value, so
        only held rows (the last occurrence of a key, each once) match."""
        db, plan, moving = self.db, self.plan, self.guards.moving
        guards.find_held(db, plan, moving)
        batch: list[Reject] = []
        for reject in guards.held(db, plan, moving, self.lines, self.source.delimiter):
            batch.append(reject)
            if len(batch) >= 1000:
                self._reject(batch)
                batch = []
        self._reject(batch)
        # The writer's count: its distinct keys left exactly these out.
        self.result.rejected += self.held
        if self.result.rejected > self.options.max_errors:
            raise TooManyRejectsError(self._too_many())

    def _reject(self, batch: list[Reject]) -> None:
        if batch and self.rejects is not None:
            self.rejects.write(batch)

    def _too_many(self) -> str:
        where = f" (see {self.rejects.path})" if self.rejects is not None else ""
        return (
            f"{self.result.rejected} rows rejected, more than --max-errors"
            f" {self.options.max_errors}; nothing was imported{where}"
        )

    def _discard_changes(self) -> None:
        if self.changes is not None:
            self.changes.discard()

    def _finish_changes(self) -> None:
        """Only a committed import has changed anything: a dry run lists its changes in
        the counts alone."""
        if self.changes is None:
            return
        if self.options.dry_run:
            self.changes.discard()
        else:
            path = self.changes.finish()
            self.result.changes_file = str(path) if path else None


def import_source(
    conn: psycopg.Connection,
    source: Source,
    options: ImportOptions,
    progress: ProgressCallback | None = None,
    before_commit: Callable[[psycopg.Connection, ImportResult], None] | None = None,
) -> ImportResult:
    """Import an open Source into the target table, atomically (Import.run())."""
    return Import(conn, source, options, progress, before_commit).run()


def _configure(db: Statements, options: ImportOptions) -> None:
    """Settings for this transaction only, in one statement."""
    settings = {
        "work_mem": options.work_mem,
        # ANALYZE of the stage samples 3,000 rows instead of 30,000: 0.01 s against
        # 0.08 s at 500k rows, and enough for the one thing the merge's plan needs from
        # it (that there are many keys, so the join hashes).
        "default_statistics_target": "10",
    }
    if Server.of(db.cur.connection).connection_check:
        # If csvload dies (kill -9) mid-merge, the server otherwise finishes the statement
        # before noticing, holding the products lock; this makes it notice within a second.
        settings["client_connection_check_interval"] = "1s"
    if options.lock_timeout is not None:
        settings["lock_timeout"] = _milliseconds(options.lock_timeout)
    if options.statement_timeout is not None:
        settings["statement_timeout"] = _milliseconds(options.statement_timeout)
    db.execute(statements.set_local(settings))


def _milliseconds(seconds: float) -> str:
    # PostgreSQL reads 0 as "no limit"; a user who asks for 0 s means "do not wait".
    return f"{max(1, round(seconds * 1000))}ms"


def _lock(db: Statements, plan: Plan, report: ProgressCallback, result: ImportResult) -> None:
    """Serialise imports into the table: SHARE ROW EXCLUSIVE conflicts with itself and with
    writers, but not with plain readers."""
    try:
        with db.cur.connection.transaction():
            db.execute(statements.lock(plan, nowait=True))
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
    db.execute(statements.lock(plan))


_CITUS_BUSY = "failure on connection marked as essential"


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
    db.execute(statements.lock(plan, "ACCESS EXCLUSIVE"))
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


