"""--max-change's statements (load/guards.py): moves_too_far(), the condition the writers
hold a row back by inside their own join (counted by HELD_COUNT), and, only when they
held some, the held rows found again after the writer (create_held(), drop_repeated())
and listed as rejects (held_rows())."""

from __future__ import annotations

from decimal import Decimal

from psycopg import sql

from csvload.load.statements.stage import STAGE, stage_column
from csvload.load.statements.values import key_alias, key_join, key_parts, new_value, value
from csvload.table.binding import Plan

HELD = sql.Identifier("csvload_held")

# The rows the writer held back (a counter sequence, read like merge.UNCHANGED).
HELD_COUNT = sql.Identifier("csvload_held_count")


def _written(plan: Plan, m) -> sql.Composable:
    """The value the writer would give an existing row p, as the writers compute it
    (new_value(): an empty field that keeps the stored value, --fill, --empty), from d,
    whose column of that name holds the file's value cast to the column's type."""
    return sql.SQL("({})::numeric").format(new_value(plan, m.field, "d"))


def _moves(plan: Plan, moving, i: int) -> sql.Composable:
    """Whether the table row p's value of the i-th --max-change column would move by more
    than its share: a stored 0 or NULL never does; a value the writer would clear (an
    empty field, where the rules clear it) moves it 100%."""
    m = moving[i]
    stored = sql.SQL("p.{}").format(m.field.column.identifier)
    old = sql.SQL("{}::numeric").format(stored)
    new = _written(plan, m)
    # First whether it changes at all, in the column's own type: most rows of a re-import
    # do not, and skip the numeric arithmetic (it had cost the 500k re-import 6%).
    return sql.SQL(
        "({written} IS DISTINCT FROM {stored} AND {old} <> 0 AND CASE WHEN {new} IS NULL"
        " THEN true ELSE abs({new} - {old}) * 100 > {share} * abs({old}) END)"
    ).format(
        written=new_value(plan, m.field, "d"), stored=stored, old=old, new=new,
        share=sql.Literal(Decimal(m.share.rstrip("%"))),
    )  # fmt: skip


def moves_too_far(plan: Plan, moving) -> sql.Composable:
    """Whether the table row p's value of any --max-change column would move by more than
    its share, given d, whose columns carry the file's values cast under the column names
    (the writers' deduplicated stage, or create_held()'s subquery).  Never NULL."""
    return sql.SQL("coalesce({}, false)").format(
        sql.SQL(" OR ").join(_moves(plan, moving, i) for i in range(len(moving)))
    )


def create_held(plan: Plan, moving) -> sql.Composed:
    """csvload_held: every staged row (every occurrence, no dedupe sort) whose key is in
    the table and whose value of a --max-change column would move too far, with its key
    as the dedupe carries it, the first such column's position, and each column's stored
    and file's value as numeric text.  drop_repeated() then leaves the last occurrences."""
    parts = key_parts(plan)
    staged = sql.SQL(", ").join(
        [sql.SQL("s.ord AS csvload_ord")]
        + [sql.SQL("{} AS {}").format(carried, key_alias(i)) for i, (carried, _, _) in
           enumerate(parts)]
        + [sql.SQL("{} AS {}").format(value(plan, m.field), m.field.column.identifier)
           for m in moving]
    )  # fmt: skip
    which = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(_moves(plan, moving, i), sql.Literal(i))
        for i in range(len(moving))
    )
    values = sql.SQL(", ").join(
        sql.SQL("p.{}::numeric::text, {}::text").format(
            m.field.column.identifier, _written(plan, m)
        )
        for m in moving
    )
    return sql.SQL(
        "CREATE TEMP TABLE {held} ON COMMIT DROP AS"
        " SELECT d.csvload_ord, {keys}, CASE {which} END AS csvload_moved,"
        " ARRAY[{values}] AS csvload_values"
        # OFFSET 0: each staged value is cast once, in the subquery; flattened, the
        # planner repeated the cast in the join filter (290 against 190 ms at 200k rows).
        " FROM (SELECT {staged} FROM {stage} s OFFSET 0) d JOIN {table} p ON {join}"
        " WHERE {any}"
    ).format(
        held=HELD,
        keys=sql.SQL(", ").join(sql.SQL("d.{}").format(key_alias(i)) for i in range(len(parts))),
        which=which,
        values=values,
        staged=staged,
        stage=STAGE,
        table=plan.target.identifier,
        join=key_join(plan),
        any=moves_too_far(plan, moving),
    )


def _same_key(plan: Plan) -> sql.Composable:
    """A stage row (its columns unqualified) has the key of the held row h, as the dedupe
    groups keys."""
    return sql.SQL(" AND ").join(
        sql.SQL("{} = h.{}").format(carried, key_alias(i))
        for i, (carried, _, _) in enumerate(key_parts(plan))
    )


def drop_repeated(plan: Plan) -> sql.Composed:
    """Of csvload_held, drop the rows a later row of the same key follows in the file: the
    last occurrence is the one the import would write."""
    return sql.SQL(
        "DELETE FROM {held} h USING {stage} s WHERE s.ord > h.csvload_ord AND {same}"
    ).format(held=HELD, stage=STAGE, same=_same_key(plan))


def held_rows(plan: Plan, moving) -> sql.Composed:
    """The held rows in file order: ord, the column that moved, the values, the record."""
    record = sql.SQL(", ").join(sql.SQL("s.{}").format(stage_column(i))
                                for i in range(len(plan.header)))
    return sql.SQL(
        "SELECT h.csvload_ord, h.csvload_moved, h.csvload_values, ARRAY[{record}]"
        " FROM {held} h JOIN {stage} s ON s.ord = h.csvload_ord ORDER BY h.csvload_ord"
    ).format(record=record, held=HELD, stage=STAGE)
