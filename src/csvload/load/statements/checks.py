"""verify's statement: the deduplicated stage compared with the table in one pass."""

from __future__ import annotations

from psycopg import sql

from csvload.load.statements.values import (
    comparable,
    keeps_stored,
    key_alias,
    key_join,
    key_text,
    latest,
)
from csvload.table.binding import Plan
from csvload.table.catalog import EXACT


def verify_counts(plan: Plan) -> sql.Composed:
    """Compare the deduplicated stage with the table in one pass over the stage.

    Returns one row: keys, missing, different, then up to %(examples)s examples of each
    (missing: the file's key; different: the file's key and the columns that differ).  The
    columns compared are those the file has, key columns excepted; an empty field in a NOT
    NULL non-text column means "keep what is stored", so it never differs.
    """
    compared = [f for f in plan.fields if f.column.name not in plan.target.key]
    differs = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {cond} THEN {name} END").format(
            cond=(
                sql.SQL("d.{f} IS NOT NULL AND {d} IS DISTINCT FROM {p}")
                if keeps_stored(f.column)
                else sql.SQL("{d} IS DISTINCT FROM {p}")
            ).format(
                f=f.column.identifier,
                d=comparable(f.column, sql.SQL("d.{}").format(f.column.identifier)),
                p=comparable(f.column, sql.SQL("p.{}").format(f.column.identifier)),
            ),
            name=sql.Literal(f.column.name),
        )
        for f in compared
    ) if compared else sql.SQL("NULL")
    order = sql.SQL(", ").join(
        sql.SQL('{} COLLATE "C"').format(key_alias(i)) if f.column.is_text or m != EXACT
        else key_alias(i)
        for i, (f, m) in enumerate(zip(plan.key_fields, plan.target.matches, strict=True))
    )
    # MATERIALIZED: the four readers below share one dedupe sort and one join.
    return sql.SQL(
        "WITH checked AS MATERIALIZED ("
        " SELECT {keys}, {key} AS key, {absent} AS missing,"
        " CASE WHEN {absent} THEN '{{}}'::text[]"
        " ELSE array_remove(ARRAY[{differs}]::text[], NULL) END AS differs"
        " FROM ({latest}) d LEFT JOIN {table} p ON {join})"
        " SELECT (SELECT count(*) FROM checked),"
        " (SELECT count(*) FROM checked WHERE missing),"
        " (SELECT count(*) FROM checked WHERE differs <> '{{}}'),"
        " ARRAY(SELECT key FROM checked WHERE missing"
        "  ORDER BY {order} LIMIT %(examples)s),"
        " ARRAY(SELECT json_build_array(key, differs) FROM checked WHERE differs <> '{{}}'"
        "  ORDER BY {order} LIMIT %(examples)s)"
    ).format(
        keys=sql.SQL(", ").join(sql.SQL("d.{}").format(key_alias(i))
                                for i in range(len(plan.target.key))),
        key=key_text(plan, "d"),
        differs=differs,
        absent=absent(plan),
        latest=latest(plan),
        table=plan.target.identifier,
        join=key_join(plan),
        order=order,
    )


def absent(plan: Plan) -> sql.Composed:
    """After a LEFT JOIN of the table p on the key: no row of p matched.  A key column
    rather than p.ctid, which Citus cannot plan in a join of a distributed table with the
    coordinator's stage ("no relation entry for relid"); a matched row's key is never
    NULL, as it equals the file's."""
    return sql.SQL("p.{} IS NULL").format(plan.key_fields[0].column.identifier)
