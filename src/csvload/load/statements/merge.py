"""The statements that write the stage into a filled table: insert_latest() for an empty
one, merge_statement() (MERGE, counted by the table statistics) and with_statement() (one
WITH statement counted by RETURNING), with the full feed's rows the file lacks."""

from __future__ import annotations

from psycopg import sql

from csvload.load.statements.feed import KEPT, table_key
from csvload.load.statements.guards import HELD_COUNT, moves_too_far
from csvload.load.statements.stage import STAGE
from csvload.load.statements.unchanged import changed_only
from csvload.load.statements.values import (
    comparable,
    compared_fields,
    in_scope,
    insert_lists,
    key_alias,
    key_join,
    latest,
    new_active,
    new_value,
    row_differs,
    stage_match,
    touch_value,
    update_assignments,
    updates_rows,
)
from csvload.table.binding import Plan


def insert_latest(plan: Plan) -> sql.Composed:
    """Fill an empty table straight from the deduplicated stage."""
    names, values = insert_lists(plan, "d")
    return sql.SQL("INSERT INTO {table} ({names}) SELECT {values} FROM ({latest}) d").format(
        table=plan.target.identifier, names=names, values=values, latest=latest(plan)
    )


def count_latest(plan: Plan) -> sql.Composed:
    """The number of distinct keys of the stage (an update-only feed into an empty table)."""
    return sql.SQL("SELECT count(*) FROM ({}) d").format(latest(plan))


# Count what MERGE did that the table statistics do not tell apart: the rows it matched
# and left alone (MERGE has no RETURNING before PostgreSQL 17), those it made active
# again, and those a full feed deactivated or deleted.  Owned by the stage's ord column,
# so they go when the stage does (and with a savepoint rolled back).
UNCHANGED = sql.Identifier("csvload_unchanged")


REACTIVATED = sql.Identifier("csvload_reactivated")


GONE = sql.Identifier("csvload_gone")


# The matched rows an insert-only feed leaves as they are.
EXISTING = sql.Identifier("csvload_existing")


def create_counter(seq: sql.Identifier) -> sql.Composed:
    return sql.SQL("CREATE TEMP SEQUENCE {seq} OWNED BY {stage}.ord").format(seq=seq, stage=STAGE)


def _take(seq: sql.Identifier) -> sql.Composed:
    return sql.SQL("nextval({}) > 0").format(sql.Literal(seq.as_string(None)))


def written(plan: Plan) -> sql.Composed:
    """Whether the server counts table writes (track_counts, on unless an administrator
    turned it off), and what this transaction has inserted into and updated in the table
    so far."""
    return sql.SQL(
        "SELECT current_setting('track_counts')::boolean,"
        " pg_stat_get_xact_tuples_inserted({oid}::oid),"
        " pg_stat_get_xact_tuples_updated({oid}::oid)"
    ).format(oid=sql.Literal(plan.target.oid))


def merge_counts(plan: Plan, counters: list[sql.Identifier]) -> sql.Composed:
    """After merge_statement(): what this transaction has inserted into and updated in the
    table so far, then the number each of `counters` has given out (0 if none)."""
    return sql.SQL(
        "SELECT pg_stat_get_xact_tuples_inserted({oid}::oid),"
        " pg_stat_get_xact_tuples_updated({oid}::oid), {counted}"
    ).format(
        oid=sql.Literal(plan.target.oid),
        counted=sql.SQL(", ").join(
            sql.SQL("(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {})").format(c)
            for c in counters
        ),
    )


def merge_statement(
    plan: Plan, mode: str = "keep", gone: bool = False, changes: bool = False, moving=()
) -> sql.Composed:
    """Merge the deduplicated stage into a filled table with MERGE (PostgreSQL 15 and
    later): one join of the stage's keys with the table drives both the UPDATE of the
    changed rows and the INSERT of the new keys, with no per-row conflict check.

    MERGE cannot return counts before PostgreSQL 17.  A matched row that is the same
    fails the first WHEN and meets the second, whose condition takes a number from
    UNCHANGED, exactly once per row (no other writer can make MERGE recheck a row: the
    caller holds a lock that keeps them out); the caller reads inserted and updated from
    the transaction's table statistics (written() before, merge_counts() after).
    On the 500k re-import this ran in 1.55-1.7 s, against 1.8-1.9 s for the WITH
    statement of with_statement() (both on the fillfactor-70 table).  A plain upsert
    leaves the unchanged rows out of MERGE's source, counting them there
    (unchanged.changed_only()).

    A full feed on PostgreSQL 17 and later (`gone`): WHEN NOT MATCHED BY SOURCE
    deactivates or deletes (mode) the rows in scope the file no longer lists, and not
    those a rejected row names (csvload_kept), each counted by GONE; the join becomes a
    full one.  With `changes` (PostgreSQL 18: RETURNING old and new) the statement is
    COPY'd out, one row per key it changed, in the changes file's columns.
    """
    names, values = insert_lists(plan, "d")
    differs = row_differs(plan, "d")
    if plan.active is not None:
        # Counts the rows coming back to active: whenever this CASE takes a number the row
        # differs (its active changes), so it is updated, exactly once.
        differs = sql.SQL(
            "{differs} AND CASE WHEN NOT p.{active} AND {new} THEN {take}"
            " ELSE true END"
        ).format(
            differs=differs,
            active=plan.active.identifier,
            new=new_active(plan, "d"),
            take=_take(REACTIVATED),
        )
    update = (
        sql.SQL(" WHEN MATCHED AND {differs} THEN UPDATE SET {assignments}").format(
            differs=differs, assignments=update_assignments(plan, "d")
        )
        if updates_rows(plan)
        else sql.SQL("")
    )
    if moving:
        # A CASE, so that a NULL (a stored NULL) never reaches the counter.
        update = sql.SQL(
            " WHEN MATCHED AND CASE WHEN {moves} THEN {take} ELSE false END"
            " THEN DO NOTHING{update}"
        ).format(moves=moves_too_far(plan, moving), take=_take(HELD_COUNT), update=update)
    # An insert-only feed counts its matched rows as existing, not unchanged.  (An
    # update-only feed is the WITH statement's: see writers.choose().)
    assert plan.control.mode != "update"
    source, join = latest(plan), key_join(plan)
    if not (gone or changes) and plan.active is None and plan.control.mode == "upsert" and (
        updates_rows(plan)
    ):
        source, join = changed_only(plan, _take(UNCHANGED))  # statements/unchanged.py
    parts = [
        sql.SQL(
            "MERGE INTO {table} p USING ({latest}) d ON {join}{update}"
            " WHEN MATCHED AND {take} THEN DO NOTHING"
            " WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        ).format(
            take=_take(EXISTING if plan.control.mode == "insert" else UNCHANGED),
            names=names,
            values=values,
            latest=source,
            table=plan.target.identifier,
            join=join,
            update=update,
        )
    ]
    if gone:
        parts.append(_by_source(plan, mode))
    if not changes:
        return sql.Composed(parts)
    parts.append(_returning_changes(plan, mode))
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.Composed(parts))


def _by_source(plan: Plan, mode: str) -> sql.Composed:
    """merge_statement()'s clause for the rows the file no longer lists."""
    still = sql.SQL(" AND p.{}").format(plan.active.identifier) if mode == "deactivate" else (
        sql.SQL(""))
    condition = sql.SQL(
        "CASE WHEN {scope}{still} AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE {in_kept})"
        " THEN {take} ELSE false END"
    ).format(
        scope=in_scope(plan), still=still, kept=KEPT, in_kept=stage_match(plan, "k"),
        take=_take(GONE),
    )
    if mode == "delete":
        return sql.SQL(" WHEN NOT MATCHED BY SOURCE AND {} THEN DELETE").format(condition)
    assert mode == "deactivate" and plan.active is not None
    return sql.SQL(
        " WHEN NOT MATCHED BY SOURCE AND {condition} THEN UPDATE SET {active} = false{touch}"
    ).format(condition=condition, active=plan.active.identifier, touch=_and_touch(plan))


def _and_touch(plan: Plan) -> sql.Composable:
    """Deactivating a row touches it too (with a touch column): ", touched = now()"."""
    if plan.touch is None:
        return sql.SQL("")
    return sql.SQL(", {} = {}").format(plan.touch.identifier, touch_value(plan))


def _returning_changes(plan: Plan, mode: str) -> sql.Composed:
    """merge_statement()'s RETURNING with changes: the key, the change and, for an update,
    the columns whose old and new values differ.  A row the file does not list (d's key
    is NULL) was deactivated or deleted."""
    listed = sql.SQL("d.{} IS NOT NULL").format(key_alias(0))
    keys = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {listed} THEN d.{c}::text ELSE old.{c}::text END").format(
            listed=listed, c=f.column.identifier
        )
        for f in plan.key_fields
    )
    back = (
        sql.SQL(" WHEN NOT old.{a} AND new.{a} THEN 'reactivated'").format(
            a=plan.active.identifier
        )
        if plan.active is not None
        else sql.SQL("")
    )
    names = [
        sql.SQL("CASE WHEN {old} IS DISTINCT FROM {new} THEN {name} END").format(
            old=comparable(f.column, sql.SQL("old.{}").format(f.column.identifier)),
            new=comparable(f.column, sql.SQL("new.{}").format(f.column.identifier)),
            name=sql.Literal(f.column.name),
        )
        for f in compared_fields(plan)
    ]
    columns = (
        sql.SQL(
            "CASE WHEN merge_action() = 'UPDATE' AND {listed} THEN"
            " array_to_string(ARRAY[{names}]::text[], ' ') ELSE '' END"
        ).format(listed=listed, names=sql.SQL(", ").join(names))
        if names
        else sql.SQL("''")
    )
    return sql.SQL(
        " RETURNING {keys}, CASE WHEN NOT {listed} THEN {gone}"
        " WHEN merge_action() = 'INSERT' THEN 'inserted'{back} ELSE 'updated' END, {columns}"
    ).format(
        keys=keys,
        listed=listed,
        gone=sql.Literal("deactivated" if mode == "deactivate" else "deleted"),
        back=back,
        columns=columns,
    )


def with_statement(
    plan: Plan, mode: str = "keep", changes: bool = False, gone: bool = False, moving=(),
    undo=None,
) -> sql.Composed:
    """Merge the deduplicated stage into a filled table in ONE statement, and return
    (distinct keys, updated, inserted, reactivated, deactivated or deleted, keys it
    meant to insert, rows it meant to update).  For servers
    without MERGE (before 15) or whose table statistics are off (see merge_statement()), and
    for full feeds: with `gone`, what the file no longer lists is deactivated or deleted
    (mode), and with `changes` the statement is COPY'd out, its rows the changes file's.

    `pairs` matches each key with its row (one hash join; a FULL JOIN when the rows the
    file lacks matter) and says whether it differs; the UPDATE reaches the changed rows
    by ctid and the INSERT takes the unmatched keys, so there is no per-row conflict
    check.  All parts run on one snapshot; that is safe because the caller holds a lock
    that keeps every other writer out of the table, and no row is touched twice (keys are
    unique).  Against a temp table of pairs followed by a separate UPDATE and INSERT this
    saved 0.5 s of 3.9 s on the 500k re-import; for a full feed, separate statements (a
    join for the changes, MERGE, an anti-join for the missing rows) took 1.7 + 1.9 + 1.5 s
    against 3.9-4.4 s.  Rows in scope that a rejected row names (csvload_kept) are never
    missing.

    `moving` (--max-change): a listed pair whose value would move too far is held
    (csvload_held): not updated, not counted among the distinct keys nor listed as a
    change, and counted last.  Its key is listed, so it is never missing.

    `undo` (load.undo_log.UndoLog): the parts return what they wrote, and a last part
    records it in csvload_undo.
    """
    parts = [
        _pairs(plan, gone, changes, moving), _updated(plan, moving, undo),
        _inserted(plan, undo), _gone(plan, mode, gone, undo),
    ]  # fmt: skip
    if undo is not None:
        parts.append(undo.with_part(mode, gone))
    counts = _with_counts(plan, moving)
    if not changes:
        parts.append(sql.SQL(" SELECT {}").format(counts))
        return sql.Composed(parts)
    parts.append(_changes_rows(plan, mode, counts, moving))
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.Composed(parts))


def _not_held(moving, row: str = "") -> sql.Composable:
    """ AND NOT csvload_held, with --max-change."""
    if not moving:
        return sql.SQL("")
    return sql.SQL(" AND NOT {}csvload_held").format(sql.SQL(f"{row}." if row else ""))


def _pairs(plan: Plan, gone: bool, changes: bool, moving=()) -> sql.Composed:
    """with_statement()'s first part: each key of the file with its row of the table, and
    whether it is listed, the same, coming back to active, (with changes) which columns
    differ."""
    file_row = sql.SQL("d.{} IS NOT NULL").format(key_alias(0))
    same = (
        sql.SQL("p.ctid IS NOT NULL AND NOT ({})").format(row_differs(plan, "d"))
        if updates_rows(plan)
        else sql.SQL("true")
    )
    back = (
        sql.SQL("{} AND p.ctid IS NOT NULL AND NOT p.{} AND {}").format(
            file_row, plan.active.identifier, new_active(plan, "d")
        )
        if plan.active is not None
        else sql.SQL("false")
    )
    names_list = (
        sql.SQL(", ").join(
            sql.SQL("CASE WHEN {mine} IS DISTINCT FROM {theirs} THEN {name} END").format(
                mine=comparable(f.column, new_value(plan, f, "d")),
                theirs=comparable(f.column, sql.SQL("p.{}").format(f.column.identifier)),
                name=sql.Literal(f.column.name),
            )
            for f in compared_fields(plan)
        )
        if compared_fields(plan)
        else sql.SQL("NULL")
    )
    columns = (
        sql.SQL(
            ", CASE WHEN p.ctid IS NULL THEN '' ELSE"
            " array_to_string(ARRAY[{}]::text[], ' ') END AS csvload_columns"
        ).format(names_list)
        if changes
        else sql.SQL("")
    )
    if moving:
        columns = sql.SQL(
            "{columns}, coalesce(p.ctid IS NOT NULL AND {file_row} AND {moves}, false)"
            " AS csvload_held"
        ).format(columns=columns, file_row=file_row, moves=moves_too_far(plan, moving))
    return sql.SQL(
        "WITH pairs AS MATERIALIZED ("
        " SELECT d.*, p.ctid AS csvload_row, {file_row} AS csvload_listed,"
        " {same} AS csvload_same, {back} AS csvload_back{columns}"
        " FROM ({latest}) d {kind} JOIN {table} p ON {join})"
    ).format(
        # Only the missing rows need the table's unmatched rows too.
        kind=sql.SQL("FULL" if gone else "LEFT"),
        file_row=file_row, same=same, back=back, columns=columns,
        latest=latest(plan), table=plan.target.identifier, join=key_join(plan),
    )  # fmt: skip


def _updated(plan: Plan, moving=(), undo=None) -> sql.Composed:
    if not updates_rows(plan):
        return sql.SQL(", updated AS ({} WHERE false)").format(
            _returned(undo and undo.updated_none()))
    return sql.SQL(
        ", updated AS (UPDATE {table} p SET {assignments} FROM pairs m"
        " WHERE p.ctid = m.csvload_row AND m.csvload_listed AND NOT m.csvload_same{held}"
        " RETURNING {returning})"
    ).format(
        table=plan.target.identifier, assignments=update_assignments(plan, "m"),
        held=_not_held(moving, "m"), returning=_returning(undo and undo.updated_returning()),
    )  # fmt: skip


def _returning(columns) -> sql.Composable:
    """RETURNING 1, or what the undo record needs (undo_log.UndoLog)."""
    return sql.SQL("1") if columns is None else columns


def _returned(columns) -> sql.Composable:
    """An empty part's SELECT, shaped like what it would return."""
    return sql.SQL("SELECT 1") if columns is None else columns


def _inserted(plan: Plan, undo=None) -> sql.Composed:
    if plan.control.mode == "update":
        return sql.SQL(", inserted AS ({} WHERE false)").format(
            _returned(undo and undo.inserted_none()))
    names, values = insert_lists(plan, "d")
    keys = sql.SQL(", ").join(key_alias(i) for i in range(len(plan.target.key)))
    # New keys in key order, so the key's index fills left to right.
    return sql.SQL(
        ", inserted AS (INSERT INTO {table} ({names}) SELECT {values} FROM pairs d"
        " WHERE d.csvload_row IS NULL ORDER BY {keys} RETURNING {returning})"
    ).format(
        table=plan.target.identifier, names=names, values=values, keys=keys,
        returning=_returning(undo and undo.inserted_returning()),
    )  # fmt: skip


def _gone(plan: Plan, mode: str, gone: bool, undo=None) -> sql.Composed:
    """The rows in scope the file does not list, deactivated or deleted (`gone`), and not
    those a rejected row names (csvload_kept); else none."""
    missing_row = sql.SQL(
        "p.ctid = m.csvload_row AND NOT m.csvload_listed AND {scope}"
        " AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE {in_kept})"
    ).format(scope=in_scope(plan), kept=KEPT, in_kept=stage_match(plan, "k"))
    returning = table_key(plan)
    if gone and undo is not None:
        returning = sql.Composed([returning, undo.gone_returning(mode)])
    if gone and mode == "deactivate":
        assert plan.active is not None
        return sql.SQL(
            ", gone AS (UPDATE {table} p SET {active} = false{touch} FROM pairs m"
            " WHERE {missing} AND p.{active} RETURNING {returning})"
        ).format(
            table=plan.target.identifier, active=plan.active.identifier,
            touch=_and_touch(plan), missing=missing_row, returning=returning,
        )  # fmt: skip
    if gone and mode == "delete":
        return sql.SQL(
            ", gone AS (DELETE FROM {table} p USING pairs m WHERE {missing}"
            " RETURNING {returning})"
        ).format(table=plan.target.identifier, missing=missing_row, returning=returning)
    return sql.SQL(", gone AS (SELECT {} FROM {} p WHERE false)").format(
        returning, plan.target.identifier
    )


def _with_counts(plan: Plan, moving=()) -> sql.Composed:
    """with_statement()'s counts.  The sixth and seventh: the rows it means to insert and
    to update.  RETURNING lists only those really written, so a row a trigger suppressed
    is the difference.  Then, under --mode insert or update, the keys it passed over;
    last, with --max-change, the rows it held back."""
    mode = plan.control.mode
    held = _not_held(moving)
    counts = sql.SQL(
        "(SELECT count(*) FROM pairs WHERE csvload_listed{held}),"
        " (SELECT count(*) FROM updated),"
        " (SELECT count(*) FROM inserted),"
        " (SELECT count(*) FROM pairs WHERE csvload_back{held}),"
        " (SELECT count(*) FROM gone),"
        " (SELECT count(*) FROM pairs WHERE {inserting}),"
        " (SELECT count(*) FROM pairs WHERE {updating}{held})"
    ).format(
        held=held,
        inserting=sql.SQL("csvload_listed AND csvload_row IS NULL")
        if mode != "update"
        else sql.SQL("false"),
        updating=sql.SQL("csvload_listed AND csvload_row IS NOT NULL AND NOT csvload_same")
        if updates_rows(plan)
        else sql.SQL("false"),
    )
    if mode != "upsert":
        counts = sql.SQL("{}, (SELECT count(*) FROM pairs WHERE csvload_listed AND {})").format(
            counts, _passed(plan)
        )
    if moving:
        counts = sql.SQL("{}, (SELECT count(*) FROM pairs WHERE csvload_held)").format(counts)
    return counts


def _passed(plan: Plan) -> sql.SQL:
    """A listed pair this mode passes over: an existing row, or a key not in the table."""
    if plan.control.mode == "insert":
        return sql.SQL("csvload_row IS NOT NULL")
    return sql.SQL("csvload_row IS NULL")


def _changes_rows(plan: Plan, mode: str, counts: sql.Composed, moving=()) -> sql.Composed:
    """With --changes the statement is COPY'd out: its rows are the changes file's,
    written straight to it, and a last row, csvload:counts, carries the counts (a temp
    table of the changes, filled and copied out afterwards, cost 0.4 s more at 245k
    changes)."""
    change = sql.Literal("deactivated" if mode == "deactivate" else "deleted")
    # An update-only feed's new keys are listed as not_found, an insert-only feed's
    # existing rows as existing (their csvload_same is true: it updates none).
    new = sql.Literal("not_found" if plan.control.mode == "update" else "inserted")
    existing = (
        sql.SQL(" OR true") if plan.control.mode == "insert" else sql.SQL("")
    )
    kept = (
        sql.SQL(" WHEN true THEN 'existing'") if plan.control.mode == "insert" else sql.SQL("")
    )
    return sql.SQL(
        " SELECT {file_keys}, CASE WHEN csvload_row IS NULL THEN {new}{kept}"
        " WHEN csvload_back THEN 'reactivated' ELSE 'updated' END, csvload_columns"
        " FROM pairs d WHERE csvload_listed{held} AND (csvload_row IS NULL OR NOT csvload_same"
        "{existing})"
        " UNION ALL SELECT {gone_keys}, {change}, '' FROM gone g"
        " UNION ALL SELECT {nulls}, {trailer}, concat_ws(' ', {counts})"
    ).format(
        held=_not_held(moving),
        new=new,
        kept=kept,
        existing=existing,
        file_keys=sql.SQL(", ").join(
            sql.SQL("d.{}::text").format(f.column.identifier) for f in plan.key_fields
        ),
        gone_keys=sql.SQL(", ").join(
            sql.SQL("g.{}::text").format(f.column.identifier) for f in plan.key_fields
        ),
        change=change,
        nulls=sql.SQL(", ").join(sql.SQL("NULL::text") for _ in plan.key_fields),
        trailer=sql.Literal(COUNTS_ROW),
        counts=counts,
    )


COUNTS_ROW = "csvload:counts"  # the change column of with_statement()'s last row, with changes
