"""Finding the staged rows that do not fit the target, and saying why.

The import first writes optimistically: the merge casts every staged value to its
column's type in the same statement (work the hand-written floor does too), so a clean
file pays nothing for checking.  Only when that statement fails on a value (a data
exception, a CHECK, a partition's bound, a foreign key or NOT NULL) is it rolled back to
its savepoint and this module asked which rows are to blame: set-based queries, one per
column or constraint, over the stage.  Those rows become rejects with their line, column
and reason; the rest is written.

Per-value validity comes from pg_input_is_valid()/pg_input_error_info() on PostgreSQL 16
and later.  PostgreSQL 15 has neither, so a temp function (pg_temp, gone with the session)
catches the cast's error in PL/pgSQL instead; only columns whose whole-column cast fails
are checked value by value that way.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from psycopg import errors, sql

from csvload.load import statements
from csvload.load.capabilities import Server
from csvload.table.binding import Field, Plan
from csvload.table.catalog import Column, PartitionBound

# The SQLSTATEs after which the merge is retried without the rows found here: data
# exceptions (class 22: bad input syntax, out of range, too long), and the integrity
# errors that one row can cause: NOT NULL, foreign keys and CHECK constraints (a row
# outside the partition that is the target is a CheckViolation too, with no constraint
# name: "new row for relation ... violates partition constraint").
FIXABLE = (errors.DataError, errors.NotNullViolation, errors.ForeignKeyViolation,
           errors.CheckViolation)

INPUT_ERROR_BEFORE_16 = sql.SQL(
    "CREATE OR REPLACE FUNCTION pg_temp.csvload_input_error(value text, type text) RETURNS text"
    " LANGUAGE plpgsql AS $$"
    " BEGIN EXECUTE format('SELECT %L::' || type, value); RETURN NULL;"
    " EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$"
)

CREATE_BAD = sql.SQL(
    "CREATE TEMP TABLE {bad} (ord bigint, field int, kind text, code text, name text)"
    " ON COMMIT DROP"
).format(bad=statements.BAD)


@dataclass(frozen=True)
class Misfit:
    ord: int
    reason: str
    fields: list[str]  # the staged record


def find(db, plan: Plan) -> Iterator[Misfit]:
    """Record in csvload_bad every staged row that does not fit, and yield them in file
    order with their reasons (the first problem of each row).  The caller deletes them
    from the stage with DELETE_BAD."""
    conn = db.cur.connection
    modern = Server.of(conn).input_error_info
    db.execute(CREATE_BAD)
    if not modern:
        db.execute(INPUT_ERROR_BEFORE_16)
    _find_bad_values(db, plan, modern)
    # OFFSET 0 keeps the subquery from being flattened: the casts in its select list must
    # only ever see the rows its WHERE let through.
    fitting = sql.SQL(
        # The stage's ord as csvload_ord: a table column named ord is among the values,
        # and the CHECK expressions below must see that one, unambiguously.
        "(SELECT s.ord AS csvload_ord, {values} FROM {stage} s WHERE NOT EXISTS"
        " (SELECT 1 FROM {bad} b WHERE b.ord = s.ord) OFFSET 0)"
    ).format(
        values=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(statements.value(plan, f), f.column.identifier)
            for f in plan.fields
        ),
        stage=statements.STAGE,
        bad=statements.BAD,
    )
    mapped = {f.column.name: i for i, f in enumerate(plan.fields)}
    # A partition's bounds before its CHECKs, the outermost first: each statement reads
    # only the rows none before it blamed, so a row outside the partition is told so once,
    # by the outermost bound it is outside of.  A bound is stored by its position.
    for n, bound in enumerate(plan.target.bounds):
        _violating(db, fitting, mapped, bound.columns, bound.keys, bound.expression,
                   "partition", str(n))
    for check in plan.target.checks:
        _violating(db, fitting, mapped, check.columns, check.columns, check.expression,
                   "check", check.name)
    for fk in plan.target.foreign_keys:
        if all(c in mapped for c in fk.columns):
            db.execute(_unreferenced(fk, fitting, mapped))
    yield from _misfits(db, plan)


def _find_bad_values(db, plan: Plan, modern: bool) -> None:
    """Each field's values that its column's type does not take: too long, no value of
    the type, too precise, empty where a new row needs one."""
    for i, f in enumerate(plan.fields):
        column = f.column
        if column.is_text:
            if column.length is not None and column.category == "S":
                db.execute(_too_long(plan, i, f))
            continue
        if modern or not _casts_cleanly(db, plan, f):
            db.execute(_bad_input(plan, i, f, modern))
        if column.type_name == "numeric" and column.scale is not None:
            db.execute(_too_precise(plan, i, f, modern))
        rows = _empty_rows(plan, column)
        if rows is not None:
            db.execute(_empty_for_new_rows(plan, i, f, rows))


def _empty_rows(plan: Plan, column) -> sql.Composable | None:
    """Which rows an empty field fails in this NOT NULL non-text column (after a LEFT JOIN
    of the table p): new ones, when nothing else fills it and the feed creates rows;
    existing ones, under --empty clear.  None: no row."""
    if not column.not_null:
        return None
    control = plan.control
    new = (
        plan.default_for(column) is None and column.default is None
        and control.mode != "update"
    )
    cleared = (
        control.empty_rule(column) == "clear"
        and any(f.column.name == column.name for f in statements.compared_fields(plan))
    )
    if new and cleared:
        return sql.SQL("true")
    if new:
        return statements.absent(plan)
    if cleared:
        return sql.SQL("NOT {}").format(statements.absent(plan))
    return None


def _unreferenced(fk, rows: sql.Composable, mapped: dict[str, int]) -> sql.Composed:
    """Record the rows whose foreign key names no row of the referenced table."""
    present = sql.SQL(" AND ").join(
        sql.SQL("d.{} IS NOT NULL").format(sql.Identifier(c)) for c in fk.columns
    )
    equal = sql.SQL(" AND ").join(
        sql.SQL("r.{} = d.{}").format(sql.Identifier(r), sql.Identifier(c))
        for c, r in zip(fk.columns, fk.referenced, strict=True)
    )
    return sql.SQL(
        "INSERT INTO {bad} SELECT csvload_ord, {field}, 'fk', NULL, {name}"
        " FROM {rows} d"
        " WHERE {present} AND NOT EXISTS (SELECT 1 FROM {ref} r WHERE {equal})"
    ).format(
        bad=statements.BAD,
        field=sql.Literal(mapped[fk.columns[0]]),
        name=sql.Literal(fk.name),
        rows=rows,
        present=present,
        ref=fk.table_identifier,
        equal=equal,
    )


def _misfits(db, plan: Plan) -> Iterator[Misfit]:
    """The rows csvload_bad holds, in file order, each with its first problem, read
    through a server-side cursor."""
    ncols = len(plan.header)
    record = sql.SQL(", ").join(statements.stage_column(i) for i in range(ncols))
    named = db.cur.connection.cursor(name="csvload_misfits")
    named.itersize = 2000
    db.count += 1
    named.execute(
        sql.SQL(
            "SELECT b.ord, b.field, b.kind, b.code, b.name, ARRAY[{record}]"
            " FROM (SELECT DISTINCT ON (ord) * FROM {bad} ORDER BY ord, field) b"
            " JOIN {stage} s USING (ord) ORDER BY b.ord"
        ).format(record=record, bad=statements.BAD, stage=statements.STAGE)
    )
    by_index = {i: f for i, f in enumerate(plan.fields)}
    try:
        for ord_, i, kind, code, name, fields in named:
            yield Misfit(ord_, _reason(plan, by_index.get(i), kind, code, name, fields), fields)
    finally:
        named.close()


def _violating(db, rows: sql.Composable, mapped: dict[str, int], columns: tuple[str, ...],
               blamed: tuple[str, ...], expression: str, kind: str, name: str) -> None:
    """Record the rows for which a CHECK expression or a partition constraint over
    `columns` is false (NULL passes, as it does for both in PostgreSQL), blaming the
    column when `blamed` is one.  Skipped unless the file gives every one of `columns`:
    a row keeps its other columns' values, which passed."""
    if not columns or not all(c in mapped for c in columns):
        return
    db.execute(
        sql.SQL(
            "INSERT INTO {bad} SELECT csvload_ord, {field}, {kind}, NULL, {name}"
            " FROM {rows} d"
            " WHERE NOT coalesce(({expression}), true)"
        ).format(
            bad=statements.BAD,
            field=sql.Literal(mapped[blamed[0]] if len(blamed) == 1 else -1),
            kind=sql.Literal(kind),
            name=sql.Literal(name),
            rows=rows,
            expression=sql.SQL(expression),
        )
    )


DELETE_BAD = sql.SQL("DELETE FROM {stage} s USING {bad} b WHERE s.ord = b.ord").format(
    stage=statements.STAGE, bad=statements.BAD
)


def _casts_cleanly(db, plan: Plan, f: Field) -> bool:
    """Whether every value of the column casts (PostgreSQL 15: spares the per-value
    PL/pgSQL check for the columns that are fine)."""
    conn = db.cur.connection
    try:
        with conn.transaction():
            db.execute(
                sql.SQL("SELECT count(NULLIF({text}, '')::{type}) FROM {stage}").format(
                    text=statements.number_text(plan, f), type=sql.SQL(f.column.type),
                    stage=statements.STAGE,
                )
            )
    except errors.DataError:
        return False
    return True


def input_error_code(text: sql.Composable, column: Column, modern: bool) -> sql.Composable:
    type_ = sql.Literal(column.type)
    if modern:
        return sql.SQL(
            "CASE WHEN pg_input_is_valid({t}, {type}) THEN NULL"
            " ELSE (pg_input_error_info({t}, {type})).sql_error_code END"
        ).format(t=text, type=type_)
    return sql.SQL("pg_temp.csvload_input_error({}, {})").format(text, type_)


def _bad_input(plan: Plan, i: int, f: Field, modern: bool) -> sql.Composed:
    text = statements.number_text(plan, f)
    return sql.SQL(
        "INSERT INTO {bad} SELECT ord, {i}, 'type', code, NULL FROM"
        " (SELECT ord, {code} AS code FROM {stage} WHERE {raw} <> '') e WHERE code IS NOT NULL"
    ).format(
        bad=statements.BAD,
        i=sql.Literal(i),
        code=input_error_code(text, f.column, modern),
        stage=statements.STAGE,
        raw=statements.stage_column(f.index),
    )


def _too_precise(plan: Plan, i: int, f: Field, modern: bool) -> sql.Composed:
    text = statements.number_text(plan, f)
    return sql.SQL(
        "INSERT INTO {bad} SELECT ord, {i}, 'scale', NULL, NULL FROM {stage} s"
        " WHERE CASE WHEN {raw} = '' OR EXISTS (SELECT 1 FROM {bad} b WHERE b.ord = s.ord"
        " AND b.field = {i}) THEN false ELSE scale({text}::numeric) > {scale} END"
    ).format(
        bad=statements.BAD,
        i=sql.Literal(i),
        stage=statements.STAGE,
        raw=statements.stage_column(f.index),
        text=text,
        scale=sql.Literal(f.column.scale),
    )


def _too_long(plan: Plan, i: int, f: Field) -> sql.Composed:
    raw = statements.stage_column(f.index)
    # char(n) takes trailing spaces past n (it pads to n anyway); varchar(n) does too.
    return sql.SQL(
        "INSERT INTO {bad} SELECT ord, {i}, 'length', NULL, NULL FROM {stage}"
        " WHERE char_length({raw}) > {n} AND char_length(rtrim({raw}, ' ')) > {n}"
    ).format(
        bad=statements.BAD, i=sql.Literal(i), stage=statements.STAGE, raw=raw,
        n=sql.Literal(f.column.length),
    )  # fmt: skip


def _empty_for_new_rows(plan: Plan, i: int, f: Field, rows: sql.Composable) -> sql.Composed:
    """An empty field in a NOT NULL column with nothing to fall back on: fine for a row
    that exists (it keeps its value, unless --empty clear), a reject for a new one
    (`rows`: which, from _empty_rows())."""
    return sql.SQL(
        # A LEFT JOIN, not NOT EXISTS: Citus refuses a correlated subquery on a
        # distributed table from the coordinator's stage ("direct joins between
        # distributed and local tables are not supported").
        "INSERT INTO {bad} SELECT s.ord, {i}, 'empty', NULL, NULL FROM {stage} s"
        " LEFT JOIN {table} p ON {match} WHERE s.{raw} = '' AND {absent}"
    ).format(
        absent=rows,
        bad=statements.BAD,
        i=sql.Literal(i),
        stage=statements.STAGE,
        raw=statements.stage_column(f.index),
        table=plan.target.identifier,
        match=statements.stage_match(plan, "s"),
    )


# -- reasons -------------------------------------------------------------------------------

# What --decimal-comma reads (statements.DECIMAL_COMMA, the SQL that reads it), and what looks
# like a decimal-comma number to suggest it.
DECIMAL_COMMA = re.compile(statements.DECIMAL_COMMA, re.ASCII)
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d{1,3}(?:\.\d{3})*,\d+\s*$|^\s*[+-]?\d+,\d+\s*$")


def _preview(value: str, limit: int = 20) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _a(type_: str) -> str:
    return ("an " if type_[:1] in "aeio" else "a ") + type_


def _reason(plan: Plan, f: Field | None, kind: str, code, name, fields: list[str]) -> str:
    if kind == "partition":
        return _outside(plan, plan.target.bounds[int(name)], fields)
    if f is None:  # a constraint over several columns
        return f"violates {name}"
    column = f.column
    raw = fields[f.index]
    if kind == "type":
        if code == "22003":
            return f"{column.name} is {_preview(raw)}, out of range for {column.type}"
        if code == "22001":
            return f"{column.name} is {len(raw)} characters, longer than {column.type}"
        reason = f"{column.name} is {_preview(raw)}, not {_a(column.type)}"
        if column.labels:
            reason = (
                f"{column.name} is {_preview(raw)}, not a label of {column.type} "
                f"({', '.join(column.labels[:10])}{', ...' if len(column.labels) > 10 else ''})"
            )
        elif column.type_name == "bool":
            reason += " (use true/false, t/f, 1/0 or yes/no)"
        elif column.category == "N" and plan.decimal_comma and not DECIMAL_COMMA.match(raw):
            reason = (
                f"{column.name} {_preview(raw)} is not a decimal-comma number (like 1.234,56)"
            )
        elif (
            column.category == "N" and not plan.decimal_comma and _DECIMAL_COMMA.match(raw)
        ):
            reason += " (use --decimal-comma)"
        elif column.type_name in ("int2", "int4", "int8") and re.match(
            r"^\s*[+-]?\d*\.\d+\s*$", raw
        ):
            reason += " (a whole number is needed)"
        return reason
    if kind == "scale":
        return f"{column.name} is {_preview(raw)}, more decimals than {column.type} holds"
    if kind == "length":
        return f"{column.name} is {len(raw)} characters, longer than {column.type}"
    if kind == "empty" and plan.control.empty_rule(column) == "clear":
        return (
            f"{column.name} is empty, and --empty clear cannot clear"
            f" {plan.target.name}.{column.name}: it is NOT NULL"
        )
    if kind == "empty":
        return (
            f"{column.name} is empty, and {plan.target.name}.{column.name} is NOT NULL with no"
            f" default for a new row (add --default {column.name}=VALUE)"
        )
    if kind == "check":
        return f"{column.name} {raw} violates {name}"
    if kind == "fk":
        fk = next(k for k in plan.target.foreign_keys if k.name == name)
        return f"{column.name} {raw} has no row in {fk.table}"
    raise AssertionError(kind)


def _outside(plan: Plan, bound: PartitionBound, fields: list[str]) -> str:
    """Why a row is outside `bound`: "region 'us' is outside partition cat_eu (FOR VALUES
    IN ('eu'))", or, for an ancestor's bound, "... outside partition cat_eu_2024: it lies
    within cat_eu (FOR VALUES IN ('eu'))"."""
    values = " and ".join(
        f"{key} {_preview(fields[field.index])}"
        for key in bound.keys
        if (field := plan.field(key)) is not None
    )
    verb = "is" if len(bound.keys) == 1 else "are"
    where = (
        f"DEFAULT: only what no other partition of {bound.parent} takes"
        if bound.bound == "DEFAULT" else bound.bound
    )
    # The last bound is the target's own, unless that is NULL (the only partition, a
    # DEFAULT one: describe() leaves it out).
    if bound is plan.target.bounds[-1] and bound.name == plan.target.name:
        return f"{values} {verb} outside partition {bound.name} ({where})"
    return (
        f"{values} {verb} outside partition {plan.target.name}: it lies within"
        f" {bound.name} ({where})"
    )


def record_text(fields: list[str], delimiter: str) -> str:
    """A staged record written back as one CSV record, for the rejects file."""
    out = io.StringIO()
    # With lineterminator="" the writer did not quote a field holding a line break (it
    # quotes the terminator's characters, and there were none), so a multi-line value came
    # back as several records.  "\r\n" makes it quote CR and LF; then drop the terminator.
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(fields)
    return out.getvalue()[:-2]
