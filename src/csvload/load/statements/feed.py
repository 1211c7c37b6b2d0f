"""A full feed's and --changes' statements besides the merge: the kept keys of rejected
rows, the rows in scope, the rows missing from the file, an empty table's insertions."""

from __future__ import annotations

from psycopg import sql

from csvload.load.statements.stage import STAGE, stage_column
from csvload.load.statements.values import in_scope, key_text, latest, stage_match
from csvload.table.binding import Plan


def count_in_scope(plan: Plan) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {table} p WHERE {scope}").format(
        table=plan.target.identifier, scope=in_scope(plan)
    )


KEPT = sql.Identifier("csvload_kept")


# The keys of rejected rows: present in the file, so never deactivated or deleted.
CREATE_KEPT = sql.SQL(
    "CREATE TEMP TABLE {kept} ON COMMIT DROP AS SELECT * FROM {stage} WITH NO DATA"
).format(kept=KEPT, stage=STAGE)


def copy_kept(columns: list[int]) -> sql.Composed:
    return sql.SQL("COPY {kept} ({columns}) FROM STDIN").format(
        kept=KEPT, columns=sql.SQL(", ").join(stage_column(i) for i in columns)
    )


def _missing(plan: Plan) -> sql.Composable:
    return sql.SQL(
        "{scope} AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {in_stage})"
        " AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE {in_kept})"
    ).format(
        scope=in_scope(plan),
        stage=STAGE,
        in_stage=stage_match(plan, "s"),
        kept=KEPT,
        in_kept=stage_match(plan, "k"),
    )


def table_key(plan: Plan) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("p.{}").format(f.column.identifier) for f in plan.key_fields)


def count_missing(plan: Plan) -> sql.Composed:
    """For verify: the rows in scope the file does not list that an import with --missing
    would still have to change (active ones under deactivate, any under delete), and up
    to %(examples)s of their keys."""
    still = sql.SQL("p.{} AND ").format(plan.active.identifier) if plan.active else sql.SQL("")
    return sql.SQL(
        "WITH m AS MATERIALIZED (SELECT {key} AS key FROM {table} p WHERE {still}{missing})"
        " SELECT (SELECT count(*) FROM m), ARRAY(SELECT key FROM m ORDER BY key"
        " LIMIT %(examples)s)"
    ).format(
        key=key_text(plan, "p"), table=plan.target.identifier, still=still,
        missing=_missing(plan),
    )


def inserted_changes(plan: Plan) -> sql.Composed:
    """Filling an empty table: every distinct key of the file is inserted, so those are
    the changes file's rows (with_statement() and merge_statement() list a filled table's changes
    themselves), COPY'd out in the same columns."""
    return sql.SQL(
        "COPY (SELECT {keys}, {change}, '' FROM ({latest}) d) TO STDOUT (FORMAT csv)"
    ).format(
        # An update-only feed creates none of them: each is not found.
        change=sql.Literal("not_found" if plan.control.mode == "update" else "inserted"),
        keys=sql.SQL(", ").join(
            sql.SQL("d.{}::text").format(f.column.identifier) for f in plan.key_fields
        ),
        latest=latest(plan),
    )
