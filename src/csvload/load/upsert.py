"""The statements of the writer for tables that Citus manages (writers.CitusUpsert):
INSERT ... ON CONFLICT on the key's unique index, counted by RETURNING.  Builders only."""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from csvload.load import statements
from csvload.table.binding import Plan
from csvload.table.catalog import LOWER

# Measured on Citus 14.0.1 over PostgreSQL 18, from the coordinator's temp stage:
# - MERGE into a distributed, reference or Citus local table is refused, so this is
#   INSERT ... SELECT ... ON CONFLICT DO UPDATE (Citus pulls the SELECT to the coordinator
#   and routes the rows to the shards).
# - now() is refused in DO UPDATE SET, and server-side parameters are lost in DO UPDATE
#   and RETURNING: the touch timestamp is a literal, read once with NOW.
# - pg_stat_get_xact_tuples_* read 0 (the shards write) and the command tag counts the
#   source rows: inserted and updated come from RETURNING (xmax = 0 for an insert).
# The arbiter is the key's unique index, named by its columns (lower(col) for a lower()
# index), which on a distributed table includes the distribution column.
NOW = sql.SQL("SELECT now()")


def _arbiter(plan: Plan) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("lower({})").format(f.column.identifier) if match == LOWER
        else f.column.identifier
        for f, match in zip(plan.key_fields, plan.target.matches, strict=True)
    )


def upsert(plan: Plan, now: datetime) -> sql.Composed:
    """Merge the deduplicated stage into the table in ONE statement; returns one row:
    (distinct keys, inserted, updated).  `now` is the transaction's timestamp for the
    touch column of updated rows.

    The deduplicated stage is materialized once: the INSERT reads it and the count of
    distinct keys is taken from it, without a second dedupe sort.
    """
    names, values = statements.insert_lists(plan, "d")
    return counted(
        plan,
        now,
        sql.SQL("INSERT INTO {table} AS p ({names}) SELECT {values} FROM d").format(
            table=plan.target.identifier, names=names, values=values
        ),
        distinct=sql.SQL("SELECT count(*) FROM d"),
        ctes=sql.SQL("d AS MATERIALIZED ({}), ").format(statements.latest(plan)),
    )


def counted(
    plan: Plan,
    now: datetime,
    insert: sql.Composable,
    distinct: sql.Composable,
    ctes: sql.Composable | None = None,
) -> sql.Composed:
    """`insert` (an INSERT ... SELECT into the table p) ON CONFLICT on the key, counted:
    one row of (the scalar query `distinct`, inserted, updated), read from RETURNING
    (xmax = 0): true for a row inserted, false for one updated."""
    return sql.SQL(
        "WITH {ctes}w AS ({insert} ON CONFLICT ({arbiter}) {action}"
        " RETURNING (xmax = 0) AS inserted)"
        " SELECT ({distinct}), count(*) FILTER (WHERE inserted),"
        " count(*) FILTER (WHERE NOT inserted) FROM w"
    ).format(
        ctes=ctes or sql.SQL(""),
        insert=insert,
        arbiter=_arbiter(plan),
        action=action(plan, now),
        distinct=distinct,
    )


def action(plan: Plan, now: datetime) -> sql.Composed:
    """ON CONFLICT's action: update the rows that differ, the touch column set to `now`."""
    touch = None
    if plan.touch is not None:
        touch = sql.SQL("CAST({} AS {})").format(sql.Literal(now), statements.type_of(plan.touch))
    if not statements.updates_rows(plan):
        return sql.SQL("DO NOTHING")
    return sql.SQL("DO UPDATE SET {assignments} WHERE {differs}").format(
        assignments=statements.update_assignments(plan, "excluded", touch),
        differs=statements.row_differs(plan, "excluded"),
    )


def kept_fields(plan: Plan) -> list:
    """The fields whose empty value means "keep what the row holds" (NOT NULL, not text)."""
    return [f for f in statements.compared_fields(plan) if statements.keeps_stored(f.column)]


def fill_kept(plan: Plan) -> sql.Composed | None:
    """Before upsert(): give every staged row whose key is in the table the stored value of
    each such field it leaves empty.

    INSERT ... ON CONFLICT checks NOT NULL before it looks for the conflicting row, so an
    empty field in a NOT NULL column would fail the statement even for a row that exists;
    MERGE and the local statements only ever insert new keys.  None when the plan has no
    such field.  The join only reads the stage's rows that have an empty field.
    """
    kept = kept_fields(plan)
    if not kept:
        return None
    sets = sql.SQL(", ").join(
        sql.SQL("{raw} = CASE WHEN s.{raw} = '' THEN {stored} ELSE s.{raw} END").format(
            raw=statements.stage_column(f.index), stored=_as_staged(plan, f.column)
        )
        for f in kept
    )
    empty = sql.SQL(" OR ").join(
        sql.SQL("s.{} = ''").format(statements.stage_column(f.index)) for f in kept
    )
    return sql.SQL("UPDATE {stage} s SET {sets} FROM {table} p WHERE ({empty}) AND {match}").format(
        stage=statements.STAGE,
        sets=sets,
        table=plan.target.identifier,
        empty=empty,
        match=statements.stage_match(plan, "s"),
    )


def _as_staged(plan: Plan, column) -> sql.Composable:
    """The stored value as the file would spell it, to be cast back like the file's."""
    text = sql.SQL("p.{}::text").format(column.identifier)
    if plan.decimal_comma and column.category == "N":
        return sql.SQL("replace({}, '.', ',')").format(text)
    return text
