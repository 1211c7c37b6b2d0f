"""The undo record: what an import keeps, in its own transaction, so that `csvload undo`
can take it back.  It owns csvload's three tables for it and the SQL that fills them:

  csvload_undo_runs  one row per recorded import: its table, key, the columns it wrote,
                     the table's whole-row columns, its transaction id, whether it filled
                     an empty table, and (later) the undo that took it back;
  csvload_undo       one row per key the import changed: 'i' inserted (the key and the
                     whole row), 'u' updated, deactivated or reactivated (the key, and the
                     previous value and the value written of each column that changed),
                     'd' deleted (the whole row); and 'F', the keys of an empty table's
                     fill packed many to a row, exact with the xid its rows carry;
  csvload_undo_stamps  rows an undo put back as an earlier transaction wrote them, for a
                     fill's undo (load/revert.py).

Values are kept as their text (every type's output and input functions round-trip it), and
the settings that text depends on with them (KEPT_SETTINGS): the undo compares a row's
current text with the text written, and restores text, under the same ones.  Of a column
that kept its value, neither text is stored (undo_log.changed()).

The record is written by the writer's own statement (RETURNING of the WITH statement, or
of MERGE on PostgreSQL 18 where RETURNING has old and new), never by a second pass over
the stage; an empty table's fill keeps its keys packed, read back from the new table.
Unchanged rows cost nothing.  The user's table is never touched by any of this.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from csvload.load.statements import compared_fields, set_local
from csvload.table.binding import Plan
from csvload.table.catalog import CITEXT, LOWER, Column, Target
from csvload.table.schema import ddl_transaction

UNDO = "csvload_undo"
UNDO_RUNS = "csvload_undo_runs"
STAMPS = "csvload_undo_stamps"

UNDO_DDL = (
    """CREATE TABLE IF NOT EXISTS {runs} (
    run_id       uuid        PRIMARY KEY,
    target       text        NOT NULL,
    table_oid    oid         NOT NULL,
    key          text[]      NOT NULL,
    columns      text[]      NOT NULL,
    row_columns  text[]      NOT NULL,
    active       text,
    settings     jsonb       NOT NULL,
    xid          xid         NOT NULL,
    filled       boolean     NOT NULL DEFAULT false,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    undone_by    uuid
)""",
    """CREATE TABLE IF NOT EXISTS {undo} (
    run_id  uuid   NOT NULL,
    change  "char" NOT NULL,
    key     text,
    keys    text[],
    old     text[],
    new     text[],
    was     xid
)""",
    """CREATE TABLE IF NOT EXISTS {stamps} (
    table_oid  oid  NOT NULL,
    key        text NOT NULL,
    xid        xid  NOT NULL,
    was        xid  NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS {stamps_index} ON {stamps} (table_oid, key)",
    "CREATE INDEX IF NOT EXISTS {index} ON {undo} (run_id)",
    # A fill's packed keys are stored as they are: compressing them cost more than
    # reading them.
    "ALTER TABLE {undo} ALTER COLUMN key SET STORAGE EXTERNAL",
)

# The settings a value's text depends on.  The import keeps the session's own (changing
# DateStyle or TimeZone would change how it reads the file's dates and what now() is in a
# timestamp column) in its record, and the undo reads and compares under the same ones:
# each type's output is read back exactly under the settings it was written with.
# extra_float_digits only shapes output, so both set it: > 0 is the shortest exact float
# (at 0 or below a float's text is rounded).
KEPT_SETTINGS = ("DateStyle", "IntervalStyle", "TimeZone", "bytea_output")
EXACT_FLOATS = {"extra_float_digits": "3"}

# Retention: the records of the newest KEEP imports into a table are kept; each recorded
# import drops the one that falls out (UndoLog.finish()), `csvload runs prune` any.
KEEP = 10

# An empty table's fill keeps its keys about this many to a row (a text of some 30 MB
# for keys of a dozen bytes, far below the 1 GB a value may take).
PACKED = 2_000_000


def create_undo_tables(conn: psycopg.Connection) -> None:
    """Create csvload_undo and csvload_undo_runs if missing (idempotent; safe when two
    imports start at once)."""
    with ddl_transaction(conn) as cur:
        for ddl in UNDO_DDL:
            cur.execute(
                sql.SQL(ddl).format(
                    runs=sql.Identifier(UNDO_RUNS), undo=sql.Identifier(UNDO),
                    index=sql.Identifier(f"{UNDO}_run_id_idx"), stamps=sql.Identifier(STAMPS),
                    stamps_index=sql.Identifier(f"{STAMPS}_key_idx"),
                )
            )  # fmt: skip


def undo_tables_exist(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL"
        " AND to_regclass(%s) IS NOT NULL",
        (UNDO, UNDO_RUNS, STAMPS),
    ).fetchone()
    return bool(row and row[0])


def _settings() -> sql.Composable:
    """The session's KEPT_SETTINGS, as a jsonb object."""
    return sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(
            sql.SQL("{}, current_setting({})").format(sql.Literal(k), sql.Literal(k))
            for k in KEPT_SETTINGS
        )
    )


def key_text(target: Target, key: tuple[str, ...] | list[str], row: str | None) -> sql.Composable:
    """One text per key, equal for two rows exactly when the key's unique index says they
    are one: the column's text (lower() of it for a key matched case-insensitively), or a
    row of them for a composite key.  A later import that only re-spells a key still
    finds its row (and sees that it changed)."""
    parts = []
    for name, match in zip(key, target.matches, strict=True):
        column = target.column(name)
        text = sql.SQL("{}::text").format(_col(row, column))
        if match in (LOWER, CITEXT):
            text = sql.SQL("lower({})").format(text)
        elif column.collation is not None:
            # A nondeterministic collation (case-insensitive ICU) allows no strpos(), and
            # its = would meet the record's text in another collation: compare bytes.
            text = sql.SQL('({}) COLLATE "C"').format(text)
        parts.append(text)
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(parts))


def texts(columns, row: str | None) -> sql.Composable:
    """ARRAY[row.c::text, ...] of `columns`."""
    return sql.SQL("ARRAY[{}]::text[]").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(_col(row, c)) for c in columns)
    )


def changed(columns, old: str, new: str | None, array: str | None = None) -> tuple:
    """(old, new) text arrays of `columns` that keep only what changed: where a column's
    old and new text are the same, both hold NULL, which undo reads as "not changed" (it
    restores a column where old IS DISTINCT FROM new).  Unchanged text is never stored
    twice: a re-import that renames half the products keeps names, not descriptions.
    New values are row `new`'s, or elements of the text array `array`."""
    olds, news = [], []
    for i, c in enumerate(columns, 1):
        before = sql.SQL("{}::text").format(_col(old, c))
        after = (
            sql.SQL("{}[{}]").format(sql.SQL(array), sql.Literal(i))
            if array is not None
            else sql.SQL("{}::text").format(_col(new, c))
        )
        differs = sql.SQL("{} IS DISTINCT FROM {}").format(before, after)
        olds.append(sql.SQL("CASE WHEN {} THEN {} END").format(differs, before))
        news.append(sql.SQL("CASE WHEN {} THEN {} END").format(differs, after))
    return (
        sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(olds)),
        sql.SQL("ARRAY[{}]::text[]").format(sql.SQL(", ").join(news)),
    )


def _col(row: str | None, column: Column) -> sql.Composable:
    if row is None:
        return column.identifier
    return sql.SQL("{}.{}").format(sql.Identifier(row), column.identifier)


def written_columns(plan: Plan) -> list[Column]:
    """Every column an import may write on an existing row: the file's compared columns,
    the active column and the touch column.  The record keeps old and new of each; undo
    restores only those whose old and new differ, the ones the run really changed."""
    names: list[str] = [f.column.name for f in compared_fields(plan)]
    for extra in (plan.active, plan.touch):
        if extra is not None and extra.name not in names:
            names.append(extra.name)
    return [plan.target.column(n) for n in names]


def row_columns(target: Target) -> list[Column]:
    """The columns a deleted row is re-inserted with: all but generated ones."""
    return [c for c in target.columns if not c.generated]


@dataclass
class UndoLog:
    """What one import records, for `run_id`, into `plan`'s table."""

    plan: Plan
    run_id: str
    filled: bool = False  # record_fill() kept an empty table's fill

    @property
    def target(self) -> Target:
        return self.plan.target

    @property
    def columns(self) -> list[Column]:
        return written_columns(self.plan)

    def before(self, db) -> None:
        """In the import's transaction, before it writes."""
        db.execute(set_local(EXACT_FLOATS))

    def merges(self, server) -> bool:
        """Whether MERGE can record (RETURNING old and new: PostgreSQL 18); otherwise the
        WITH statement writes and records."""
        return server.merge_returning_old

    # -- the WITH statement (merge.with_statement) --------------------------------------

    def updated_returning(self) -> sql.Composable:
        """The updated rows: their row before (ctid), key and the values written."""
        return sql.SQL(
            "m.csvload_row AS csvload_was, {key} AS csvload_key, {new} AS csvload_new"
        ).format(key=key_text(self.target, self.target.key, "p"), new=texts(self.columns, "p"))

    def updated_none(self) -> sql.Composable:
        return sql.SQL(
            "SELECT NULL::tid AS csvload_was, NULL::text AS csvload_key,"
            " NULL::text[] AS csvload_new"
        )

    def inserted_returning(self) -> sql.Composable:
        """The inserted rows: key and the whole row (undo deletes it only as it was)."""
        return sql.SQL("{} AS csvload_key, {} AS csvload_new").format(
            key_text(self.target, self.target.key, None), texts(row_columns(self.target), None)
        )

    def inserted_none(self) -> sql.Composable:
        return sql.SQL("SELECT NULL::text AS csvload_key, NULL::text[] AS csvload_new")

    def gone_returning(self, mode: str) -> sql.Composable:
        key = key_text(self.target, self.target.key, "p")
        if mode == "delete":
            return sql.SQL(
                ", {key} AS csvload_key, {whole} AS csvload_whole, p.xmin AS csvload_xmin"
            ).format(key=key, whole=texts(row_columns(self.target), "p"))
        return sql.SQL(
            ", m.csvload_row AS csvload_was, {key} AS csvload_key, {new} AS csvload_new"
        ).format(key=key, new=texts(self.columns, "p"))

    def with_part(self, mode: str, gone: bool) -> sql.Composable:
        """The WITH statement's last part: the record of what updated, inserted and gone
        wrote.  The table read here (o) is seen with the statement's snapshot, so the row
        at an updated row's old ctid is its version before the update (measured: a hash
        join with the table, or a TID scan per row)."""
        run = sql.Literal(self.run_id)
        table = self.target.identifier
        old, new = changed(self.columns, "o", None, "u.csvload_new")
        parts = [
            sql.SQL(
                "SELECT {run}::uuid, 'u', u.csvload_key, {old}, {new}, o.csvload_xmin"
                " FROM updated u JOIN {before} ON o.csvload_at = u.csvload_was"
            ).format(run=run, old=old, new=new, before=_before(table, "updated")),
            sql.SQL(
                "SELECT {}::uuid, 'i', csvload_key, NULL, csvload_new, NULL FROM inserted"
            ).format(run),
        ]
        if gone and mode == "delete":
            parts.append(
                sql.SQL(
                    "SELECT {}::uuid, 'd', csvload_key, csvload_whole, NULL, csvload_xmin FROM gone"
                ).format(run)
            )
        elif gone and mode == "deactivate":
            old, new = changed(self.columns, "o", None, "g.csvload_new")
            parts.append(
                sql.SQL(
                    "SELECT {run}::uuid, 'u', g.csvload_key, {old}, {new}, o.csvload_xmin"
                    " FROM gone g JOIN {before} ON o.csvload_at = g.csvload_was"
                ).format(run=run, old=old, new=new, before=_before(table, "gone"))
            )
        return sql.SQL(
            ", csvload_recorded AS (INSERT INTO {undo} (run_id, change, key, old, new, was) {rows})"
        ).format(undo=sql.Identifier(UNDO), rows=sql.SQL(" UNION ALL ").join(parts))

    # -- MERGE on PostgreSQL 18 ------------------------------------------------------------

    def around_merge(self, merge: sql.Composable) -> sql.Composed:
        """merge_statement() inside a WITH, its RETURNING (old and new) recorded."""
        target = self.target
        whole = row_columns(target)
        old, new = changed(self.columns, "old", "new")
        returning = sql.SQL(
            " RETURNING merge_action() AS csvload_action, {new_key} AS csvload_new_key,"
            " {old_key} AS csvload_old_key, old.xmin AS csvload_xmin,"
            " CASE merge_action() WHEN 'UPDATE' THEN {old} WHEN 'DELETE' THEN {old_whole}"
            " END AS csvload_old,"
            " CASE merge_action() WHEN 'UPDATE' THEN {new} WHEN 'INSERT' THEN {new_whole}"
            " END AS csvload_new"
        ).format(
            new_key=key_text(target, target.key, "new"),
            old_key=key_text(target, target.key, "old"),
            old=old, new=new, old_whole=texts(whole, "old"), new_whole=texts(whole, "new"),
        )  # fmt: skip
        return sql.SQL(
            "WITH m AS ({merge}{returning})"
            " INSERT INTO {undo} (run_id, change, key, old, new, was)"
            " SELECT {run}::uuid, CASE csvload_action WHEN 'INSERT' THEN 'i' WHEN 'UPDATE'"
            " THEN 'u' ELSE 'd' END::\"char\","
            " CASE WHEN csvload_action = 'DELETE' THEN csvload_old_key ELSE csvload_new_key END,"
            " csvload_old, csvload_new, csvload_xmin FROM m"
        ).format(
            merge=merge, returning=returning, undo=sql.Identifier(UNDO),
            run=sql.Literal(self.run_id),
        )  # fmt: skip

    # -- an empty table's fill ---------------------------------------------------------------

    def record_fill(self, db, rows: int) -> None:
        """The table was empty: every row in it now is the fill's.  Its keys, packed into
        one text (split by newlines) per PACKED of them; with the transaction id the rows
        carry (kept by finish()) that is exact: a row still at the fill's xmin is untouched
        since.  Read back from the table once: at 500k rows a text of 6.5 MB (stored
        uncompressed: pglz took three times as long as the aggregate), where array_agg()
        took four times as long as string_agg().  Keys holding a newline (rare) are
        packed as a text[] instead."""
        if not rows:
            return
        chunks = rows // PACKED + 1
        group = sql.SQL(" GROUP BY abs(hashtext(k)) % {}").format(sql.Literal(chunks))
        query = sql.SQL(
            "INSERT INTO {undo} (run_id, change, {column}) SELECT {run}::uuid, 'F', {packed}"
            " FROM (SELECT {key} AS k FROM {table} t) s{group}{having} RETURNING 1"
        )
        values = dict(
            undo=sql.Identifier(UNDO), run=sql.Literal(self.run_id),
            key=key_text(self.target, self.target.key, "t"), table=self.target.identifier,
            group=group if chunks > 1 else sql.SQL(""),
        )  # fmt: skip
        packed = db.execute(
            query.format(
                column=sql.Identifier("key"),
                packed=sql.SQL("string_agg(k, E'\\n')"),
                having=sql.SQL(" HAVING NOT bool_or(strpos(k, E'\\n') > 0)"),
                **values,
            )  # fmt: skip
        ).rowcount
        if packed < chunks:
            db.execute(sql.SQL("DELETE FROM {} WHERE run_id = %s").format(values["undo"]),
                       (self.run_id,))  # fmt: skip
            db.execute(
                query.format(
                    column=sql.Identifier("keys"),
                    packed=sql.SQL("array_agg(k)"),
                    having=sql.SQL(""),
                    **values,
                )
            )
        self.filled = True

    def finish(self, db) -> None:
        """The run's row, last, before the import commits.  Its xid is the one the rows
        it wrote carry as xmin: the writer's savepoint's (a subtransaction has an xid of
        its own), read off the record's own rows, which the same statement wrote."""
        target = self.target
        db.execute(
            sql.SQL(
                "INSERT INTO {runs} (run_id, target, table_oid, key, columns, row_columns,"
                " active, settings, xid, filled) VALUES (%s, %s, %s, %s, %s, %s, %s, {settings},"
                " coalesce((SELECT xmin FROM {undo} WHERE run_id = %s LIMIT 1),"
                " xid(pg_current_xact_id())), %s)"
            ).format(
                runs=sql.Identifier(UNDO_RUNS), undo=sql.Identifier(UNDO), settings=_settings()
            ),
            (
                self.run_id, target.display, target.oid, list(target.key),
                [c.name for c in self.columns], [c.name for c in row_columns(target)],
                self.plan.active.name if self.plan.active is not None else None,
                self.run_id, self.filled,
            ),
        )  # fmt: skip
        db.execute(prune_statement(KEEP, None, target.oid))


def _before(table: sql.Composable, part: str) -> sql.Composed:
    """The rows `part` of the WITH statement wrote, as they were before (alias o): the
    statement's snapshot still sees the old versions.  Fetched by their ctids in one TID
    scan; a join by ctid had the planner hash the whole table (1.9 s of a 1% daily feed's
    10 s on a loaded machine, PostgreSQL 15)."""
    return sql.SQL(
        "(SELECT o.*, o.ctid AS csvload_at, o.xmin AS csvload_xmin FROM {table} o"
        " WHERE o.ctid = ANY (ARRAY(SELECT csvload_was FROM {part}))) o"
    ).format(table=table, part=sql.Identifier(part))


def prune_statement(
    keep: int | None, days: float | None, table_oid: int | None = None
) -> sql.Composed | None:
    """Drop the records of all but the newest `keep` recorded imports per table (of
    table_oid's only, when given), and (with `days`) of those recorded longer ago.  A run
    undone already has no rows left; its row (which says it was undone) stays."""
    conditions = []
    if keep is not None:
        conditions.append(sql.SQL("n > {}").format(sql.Literal(keep)))
    if days is not None:
        conditions.append(
            sql.SQL("recorded_at < now() - make_interval(secs => {})").format(
                sql.Literal(days * 86400)
            )
        )
    if not conditions:
        return None
    table = (
        sql.SQL(" WHERE table_oid = {}").format(sql.Literal(table_oid))
        if table_oid is not None
        else sql.SQL("")
    )
    return sql.SQL(
        "WITH old AS (SELECT run_id FROM (SELECT run_id, recorded_at, undone_by, row_number()"
        " OVER (PARTITION BY table_oid ORDER BY recorded_at DESC) AS n FROM {runs}{table}) s"
        " WHERE undone_by IS NULL AND ({cond})),"
        " dropped AS (DELETE FROM {undo} WHERE run_id IN (SELECT run_id FROM old))"
        " DELETE FROM {runs} WHERE run_id IN (SELECT run_id FROM old)"
    ).format(
        runs=sql.Identifier(UNDO_RUNS), undo=sql.Identifier(UNDO), table=table,
        cond=sql.SQL(" OR ").join(conditions),
    )  # fmt: skip


def for_import(
    conn: psycopg.Connection, plan: Plan, run_id: str | None, keep: bool
) -> UndoLog | None:
    """The import's UndoLog, its tables made if missing (before its transaction); None
    when it keeps no record: --no-undo, a dry run, no run id, or a table Citus manages
    (its writers are upserts on the workers; `csvload undo` refuses such a table)."""
    if not keep or run_id is None or plan.target.citus_kind != "local":
        return None
    with conn.transaction():
        exist = undo_tables_exist(conn)
    if not exist:
        create_undo_tables(conn)
    return UndoLog(plan, run_id)
