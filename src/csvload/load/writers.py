"""The writers: one attempt at writing the stage into the table, each counting what it
wrote.  choose() is the one place that picks among them, per attempt:

    writer            runs when
    ----------------  ------------------------------------------------------------------
    ShardLocalUpsert  the stage is distributed with the Citus table (distributed_stage)
    FillEmpty         the table is empty and has no triggers
    CitusUpsert       Citus manages the table
    MergeInto         the table statistics count exactly (track_counts on, no triggers)
                      and the server has MERGE: 15+, 17+ for a full feed's rows the file
                      lacks, 18+ for --changes (RETURNING old); not for --mode update,
                      nor --changes with --mode insert (see choose())
    WithStatement     otherwise: one WITH statement counted by RETURNING

--changes on an empty table lists its insertions first (every distinct key is one).
Each write() returns the number of distinct keys and sets inserted and updated.  With
--max-change, MergeInto and WithStatement hold back the rows that would move too far in
their own join and set job.held to their number (their keys are not among the distinct
ones); the other writers never run with it (an empty table, Citus).
"""

from __future__ import annotations

from dataclasses import dataclass

from csvload.load import distributed_stage, statements, upsert


def choose(db, job):
    """The writer of this attempt: reads the table statistics (one statement) when the
    choice is between MERGE and the WITH statement, whose counts they are."""
    caps, changes = job.caps, job.changes
    if job.distributed is not None:
        return ShardLocalUpsert()
    if caps.empty and changes is not None:
        changes.stream(db, job.plan, statements.inserted_changes(job.plan), counted=False)
    # MERGE cannot count the keys an update-only feed does not create: PostgreSQL plans a
    # MERGE whose NOT MATCHED actions all DO NOTHING as an inner join (seen on 18), so their
    # condition never runs.  Nor does its RETURNING list a row it passes over, which
    # --changes lists.
    mode = job.plan.control.mode
    merges = mode == "upsert" or (mode == "insert" and changes is None)
    # A full feed's statement runs on a table with rows: an empty one lacks no row, and all
    # its changes are insertions.
    full = (job.feed.full or changes is not None) and not caps.empty
    if full:
        gone = _prepare_gone(db, job)
    elif caps.empty and not caps.triggers:
        return FillEmpty()
    elif caps.citus:
        return CitusUpsert()
    counted, *before = db.execute(statements.written(job.plan)).fetchone()
    server = caps.server
    if full and changes is not None:
        has_merge = server.merge_returning_old
    else:
        has_merge = server.merge_by_source if full else server.merge
    # An undo record needs MERGE's RETURNING old and new (undo_log.UndoLog.merges()),
    # else the WITH statement records it.
    records = job.undo is None or (changes is None and job.undo.merges(server))
    if caps.statistics_count(counted) and has_merge and merges and records:
        return MergeInto(before, full and gone, full)
    return WithStatement(full and gone, full)


def _prepare_gone(db, job) -> bool:
    """Whether the full feed's statement also deactivates or deletes the rows the file
    lacks: not for an empty file, or one whose rows are all rejects."""
    result = job.result
    gone = job.feed.full and result.rows_read - result.rejected - result.skipped > 0
    if gone:
        job.feed.drop_unusable_keys(db)
        if job.options.missing == "delete":
            # Another table's deferred foreign key would otherwise fail the commit.
            db.execute(SET_CONSTRAINTS_IMMEDIATE)
    return gone


SET_CONSTRAINTS_IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE"


class FillEmpty:
    """An empty table: INSERT every distinct key of the stage; its row count is theirs."""

    def write(self, db, job) -> int:
        result = job.result
        result.updated = 0
        if job.plan.control.mode == "update":
            # An update-only feed creates no row: every key it lists is not found.
            result.inserted = 0
            result.not_found = db.execute(statements.count_latest(job.plan)).fetchone()[0]
            return result.not_found
        result.inserted = db.execute(statements.insert_latest(job.plan)).rowcount
        if job.undo is not None:
            job.undo.record_fill(db, result.inserted)
        return result.inserted


class CitusUpsert:
    """A table Citus manages: INSERT ... ON CONFLICT, counted by its RETURNING (Citus
    refuses MERGE from the coordinator's stage and keeps no table statistics on the
    coordinator; see upsert.py)."""

    def write(self, db, job) -> int:
        plan, result = job.plan, job.result
        fill = upsert.fill_kept(plan)
        if fill is not None:
            db.execute(fill)
        now = db.execute(upsert.NOW).fetchone()[0]
        distinct, result.inserted, result.updated = db.execute(
            upsert.upsert(plan, now)
        ).fetchone()
        return distinct


class ShardLocalUpsert:
    """The stage distributed with the table: the upsert runs shard by shard."""

    def write(self, db, job) -> int:
        return distributed_stage.merge(db, job.plan, job.result, job.caps.empty, job.distributed)


@dataclass(frozen=True)
class MergeInto:
    """statements.merge_statement(), counted through the transaction's table statistics
    (`before`: what written() read) and the counters of the rows MERGE cannot return."""

    before: list
    gone: bool = False  # also deactivate or delete the rows the file lacks
    feed: bool = False  # the full feed's statement (its mode, its changes)

    def write(self, db, job) -> int:
        plan, result = job.plan, job.result
        mode = job.options.missing if self.feed else "keep"
        changes = job.changes if self.feed else None
        # Created inside the savepoint: an attempt rolled back takes them along.
        insert = plan.control.mode == "insert"
        # An insert-only feed's matched rows are existing, never unchanged.
        counters = [statements.EXISTING if insert else statements.UNCHANGED]
        if plan.active is not None:
            counters.append(statements.REACTIVATED)
        if self.gone:
            counters.append(statements.GONE)
        moving = job.guards.moving
        if moving:
            counters.append(statements.HELD_COUNT)
        for counter in counters:
            db.execute(statements.create_counter(counter))
        statement = statements.merge_statement(
            plan, mode, self.gone, changes is not None, moving
        )
        if changes is not None:
            changes.stream(db, plan, statement, counted=False)
        elif job.undo is not None:
            db.execute(job.undo.around_merge(statement))
        else:
            db.execute(statement)
        counts = db.execute(statements.merge_counts(plan, counters)).fetchone()
        inserted, updated, unchanged, *more = counts
        if insert:
            result.existing = unchanged
        if plan.active is not None:
            result.reactivated = more.pop(0)
        missing = more.pop(0) if self.gone else 0
        job.held = more.pop(0) if moving else 0
        result.inserted = inserted - self.before[0]
        # Deactivating a row updates it; deleting one is no update.
        result.updated = updated - self.before[1] - (missing if mode == "deactivate" else 0)
        if self.feed:
            job.feed.done = missing
        return result.inserted + result.updated + unchanged


@dataclass(frozen=True)
class WithStatement:
    """statements.with_statement(): one WITH statement, counted by its RETURNING.  The
    rows it meant to insert or update but did not were kept back by a trigger (a BEFORE
    trigger returning NULL): suppressed."""

    gone: bool = False
    feed: bool = False

    def write(self, db, job) -> int:
        plan, result = job.plan, job.result
        changes = job.changes if self.feed else None
        moving = job.guards.moving
        if self.feed:
            statement = statements.with_statement(
                plan, job.options.missing, changes is not None, self.gone, moving, job.undo
            )
        else:
            statement = statements.with_statement(plan, moving=moving, undo=job.undo)
        if changes is not None:
            row = changes.stream(db, plan, statement)
        else:
            row = db.execute(statement).fetchone()
        distinct, result.updated, result.inserted, reactivated, missing, inserting, updating = (
            row[:7]
        )
        if plan.control.passed is not None:
            # --mode insert or update: the keys it passed over, last.
            setattr(result, plan.control.passed, row[7])
        job.held = row[-1] if moving else 0
        result.suppressed = inserting - result.inserted + updating - result.updated
        if plan.active is not None:
            result.reactivated = reactivated
        if self.feed:
            job.feed.done = missing
        return distinct
