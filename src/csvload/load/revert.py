"""Taking one recorded import back (the SQL of `csvload undo`): read its record
(undo_log.py), find the rows that changed since (conflicts), and revert the others, in the
caller's transaction, under the import's table lock.

Every record row is matched with the table's row of its key (undo_log.key_text()) into a
temp table, csvload_revert, with the reason it conflicts, if any:

    change  the row now                                   conflict when
    ------  --------------------------------------------  ---------------------------------
    i       inserted by the run: deleted                  it is no longer the row the run
                                                          inserted, or another table's
                                                          foreign key references it
    F       inserted by an empty table's fill: deleted    written since (its xmin is not
                                                          the fill's, nor stamped as its),
                                                          or referenced, as for i
    u       updated/deactivated: the columns the run      one of them no longer holds the
            changed get their previous values back        value the run wrote, or it is gone
    d       deleted by the run: inserted again, whole     a row with its key is back

A row the run inserted that is gone already needs nothing.  The statements are set-based:
one join of the record with the table, then one DELETE, one UPDATE, one INSERT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from csvload.errors import TargetError
from csvload.load.statements import set_local
from csvload.load.undo_log import (
    EXACT_FLOATS,
    STAMPS,
    UNDO,
    UNDO_RUNS,
    key_text,
    row_columns,
    texts,
)
from csvload.table.catalog import Column, Target

REVERT = sql.Identifier("csvload_revert")
EXAMPLES = 5  # conflicting keys named in the message


@dataclass(frozen=True)
class Record:
    """A row of csvload_undo_runs: what one import recorded."""

    run_id: str
    target: str
    table_oid: int
    key: list[str]
    columns: list[str]
    row_columns: list[str]
    active: str | None
    settings: dict
    xid: int
    filled: bool
    undone_by: str | None
    size: int = 0  # bytes of its rows in csvload_undo


def read_record(conn: psycopg.Connection, run_id: str, lock: bool = False) -> Record | None:
    """The record of run_id, or None; with `lock`, held FOR UPDATE (two undos of one run
    serialise, and the second sees the first's undone_by)."""
    query = sql.SQL(
        "SELECT run_id::text, target, table_oid::bigint, key, columns, row_columns, active,"
        " settings, xid::text::bigint AS xid, filled, undone_by::text FROM {}"
        " WHERE run_id = %s{}"
    ).format(sql.Identifier(UNDO_RUNS), sql.SQL(" FOR UPDATE" if lock else ""))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, (run_id,)).fetchone()
    return Record(**row) if row else None


@dataclass
class Reverted:
    """What an undo did (or, dry, would do)."""

    records: int = 0  # record rows read
    deleted: int = 0  # rows the run inserted, deleted
    restored: int = 0  # rows the run updated or deactivated, their columns restored
    reactivated: int = 0  # of those, made active again
    reinserted: int = 0  # rows the run deleted, inserted again
    already_gone: int = 0  # rows the run inserted that are gone already
    conflicts: int = 0
    examples: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)


class Revert:
    """One run's revert into `target`, in the caller's transaction (conn)."""

    def __init__(self, conn: psycopg.Connection, target: Target, record: Record):
        self.conn, self.target, self.record = conn, target, record
        missing = [n for n in (*record.columns, *record.row_columns) if n not in _names(target)]
        if missing:
            raise TargetError(
                f"{record.target}: column {missing[0]} is no longer in the table; run"
                f" {record.run_id} cannot be undone"
            )
        self.columns = [target.column(n) for n in record.columns]
        self.whole = [target.column(n) for n in record.row_columns]

    def find(self) -> Reverted:
        """Match the record with the table (csvload_revert) and count; conflicts first."""
        conn, record, t = self.conn, self.record, self.target
        # The text of a value depends on these: compare and restore under the import's.
        conn.execute(set_local(record.settings | EXACT_FLOATS))
        changed = sql.SQL(" OR ").join(
            sql.SQL(
                "(r.old[{i}] IS DISTINCT FROM r.new[{i}] AND t.{c}::text IS DISTINCT FROM"
                " r.new[{i}])"
            ).format(i=sql.Literal(i), c=c.identifier)
            for i, c in enumerate(self.columns, 1)
        ) if self.columns else sql.SQL("false")  # fmt: skip
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {revert} ON COMMIT DROP AS"
                " SELECT r.change, r.key, r.old, r.new, r.was, t.ctid AS at, t.xmin AS now,"
                " {shown} AS shown,"
                " CASE r.change"
                "  WHEN 'i' THEN CASE WHEN t.ctid IS NOT NULL AND {whole} IS DISTINCT FROM r.new"
                "   THEN 'changed since the run' END"
                "  WHEN 'F' THEN CASE WHEN t.ctid IS NOT NULL AND NOT {fill_xmin}"
                "   THEN 'written since the run' END"
                "  WHEN 'u' THEN CASE WHEN t.ctid IS NULL THEN 'deleted since the run'"
                "   WHEN {changed} THEN 'changed since the run' END"
                "  WHEN 'd' THEN CASE WHEN t.ctid IS NOT NULL THEN 'inserted again since the run'"
                "   END END AS reason"
                " FROM (SELECT change, key, old, new, was FROM {undo} WHERE run_id = {run}"
                "  AND change <> 'F'"
                "  UNION ALL SELECT 'F', string_to_table(key, E'\\n'), NULL, NULL, NULL"
                "  FROM {undo} WHERE run_id = {run} AND change = 'F' AND key IS NOT NULL"
                "  UNION ALL SELECT 'F', unnest(keys), NULL, NULL, NULL FROM {undo}"
                "  WHERE run_id = {run} AND change = 'F' AND keys IS NOT NULL) r"
                " LEFT JOIN {table} t ON {key} = r.key"
            ).format(
                revert=REVERT,
                undo=sql.Identifier(UNDO),
                run=sql.Literal(record.run_id),
                changed=changed,
                whole=texts(self.whole, "t"),
                fill_xmin=self._as_written("t.xmin", "r.key"),
                table=t.identifier,
                key=key_text(t, record.key, "t"),
                shown=_shown(t, record.key),
            )  # fmt: skip
        )
        conn.execute(sql.SQL("ANALYZE {}").format(REVERT))
        self._referenced()
        counts = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE reason IS NOT NULL),"
                " count(*) FILTER (WHERE reason IS NULL AND change IN ('i', 'F')"
                "  AND at IS NOT NULL),"
                " count(*) FILTER (WHERE reason IS NULL AND change IN ('i', 'F') AND at IS NULL),"
                " count(*) FILTER (WHERE reason IS NULL AND change = 'u'),"
                " count(*) FILTER (WHERE reason IS NULL AND change = 'u' AND {back}),"
                " count(*) FILTER (WHERE reason IS NULL AND change = 'd') FROM {revert}"
            ).format(back=self._reactivating(), revert=REVERT)
        ).fetchone()
        done = Reverted(*counts[:1])
        (done.conflicts, done.deleted, done.already_gone, done.restored, done.reactivated,
         done.reinserted) = counts[1:]  # fmt: skip
        done.examples = self.conflicting(EXAMPLES)
        return done

    def _as_written(self, xmin: str, key: str) -> sql.Composable:
        """Whether a row whose xmin is `xmin` is as this run wrote it: written by it, or
        put back to that by an undo of a later run (csvload_undo_stamps)."""
        return sql.SQL(
            "({xmin} = {xid}::xid OR EXISTS (SELECT 1 FROM {stamps} s WHERE s.table_oid = {oid}"
            " AND s.key = {key} AND s.xid = {xmin} AND s.was = {xid}::xid))"
        ).format(
            xmin=sql.SQL(xmin), key=sql.SQL(key), xid=sql.Literal(str(self.record.xid)),
            stamps=sql.Identifier(STAMPS), oid=sql.Literal(self.target.oid),
        )  # fmt: skip

    def _reactivating(self) -> sql.Composable:
        """A 'u' row the run deactivated: undo makes it active again."""
        if self.record.active is None or self.record.active not in self.record.columns:
            return sql.SQL("false")
        i = sql.Literal(self.record.columns.index(self.record.active) + 1)
        return sql.SQL("old[{i}] = 'true' AND new[{i}] = 'false'").format(i=i)

    def _referenced(self) -> None:
        """A row to delete that another table's row references (any foreign key, whatever
        its ON DELETE: a cascade would delete rows written since) is a conflict, named by
        the constraint."""
        t = self.target
        fks = self.conn.execute(
            "SELECT c.conname, c.conrelid::regclass::text, c.conrelid,"
            " ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)"
            "  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),"
            " ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)"
            "  JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)"
            " FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = %s ORDER BY c.conname",
            (t.oid,),
        ).fetchall()
        for name, child, child_oid, columns, referenced in fks:
            match = sql.SQL(" AND ").join(
                sql.SQL("c.{} = t.{}").format(sql.Identifier(a), sql.Identifier(b))
                for a, b in zip(columns, referenced, strict=True)
            )
            self.conn.execute(
                sql.SQL(
                    "UPDATE {revert} r SET reason = {reason} FROM {table} t"
                    " WHERE r.change IN ('i', 'F') AND r.reason IS NULL AND t.ctid = r.at"
                    " AND EXISTS (SELECT 1 FROM {child} c WHERE {match})"
                ).format(
                    revert=REVERT,
                    table=t.identifier,
                    reason=sql.Literal(f"referenced by {child} (foreign key {name})"),
                    child=_regclass(child_oid, self.conn),
                    match=match,
                )  # fmt: skip
            )

    def conflicting(self, limit: int | None = None) -> list[tuple[str, str]]:
        """(key, reason) of the conflicting rows, by key."""
        query = sql.SQL(
            "SELECT shown, reason FROM {} WHERE reason IS NOT NULL ORDER BY key{}"
        ).format(REVERT, sql.SQL(f" LIMIT {int(limit)}" if limit is not None else ""))
        return [(k, r) for k, r in self.conn.execute(query)]

    def conflict_rows(self):
        """(key, change, reason) of every conflicting row, as a cursor."""
        return self.conn.execute(
            sql.SQL(
                "SELECT shown, CASE WHEN change IN ('i', 'F') THEN 'inserted' WHEN change = 'u'"
                " THEN 'updated'"
                " ELSE 'deleted' END, reason FROM {} WHERE reason IS NOT NULL ORDER BY key"
            ).format(REVERT)
        )

    def apply(self, done: Reverted) -> None:
        """Revert the rows without a conflict: delete, restore, insert again.  Sets the
        counts to what the statements wrote (a trigger may keep a row from changing)."""
        conn, t = self.conn, self.target
        done.deleted = conn.execute(
            sql.SQL(
                "DELETE FROM {table} t USING {revert} r WHERE t.ctid = r.at"
                " AND r.change IN ('i', 'F') AND r.reason IS NULL"
            ).format(table=t.identifier, revert=REVERT)
        ).rowcount
        if self.columns:
            assignments = sql.SQL(", ").join(
                sql.SQL(
                    "{c} = CASE WHEN r.old[{i}] IS DISTINCT FROM r.new[{i}]"
                    " THEN {restored} ELSE t.{c} END"
                ).format(c=c.identifier, i=sql.Literal(i), restored=_typed(c, "old", i))
                for i, c in enumerate(self.columns, 1)
            )
            done.restored = conn.execute(
                sql.SQL(
                    "UPDATE {table} t SET {assignments} FROM {revert} r WHERE t.ctid = r.at"
                    " AND r.change = 'u' AND r.reason IS NULL"
                ).format(table=t.identifier, assignments=assignments, revert=REVERT)
            ).rowcount
        if self.whole:
            names = sql.SQL(", ").join(c.identifier for c in self.whole)
            values = sql.SQL(", ").join(_typed(c, "old", i) for i, c in enumerate(self.whole, 1))
            done.reinserted = conn.execute(
                sql.SQL(
                    "INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE SELECT {values}"
                    " FROM {revert} r WHERE r.change = 'd' AND r.reason IS NULL"
                ).format(table=t.identifier, names=names, values=values, revert=REVERT)
            ).rowcount
        self._stamp()

    def _stamp(self) -> None:
        """The rows put back exactly as they were before the run (re-inserted whole, or
        restored while untouched since the run) are, for an empty table's fill recorded by
        its transaction, as the writer of that version left them: csvload_undo_stamps says
        so, resolved to the first writer, so undoing the fill after this undo finds them
        unchanged."""
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {stamps} (table_oid, key, xid, was)"
                " SELECT {oid}, r.key, xid(pg_current_xact_id()), coalesce((SELECT s.was"
                " FROM {stamps} s WHERE s.table_oid = {oid} AND s.key = r.key"
                " AND s.xid = r.was LIMIT 1), r.was)"
                " FROM {revert} r WHERE r.reason IS NULL AND r.was IS NOT NULL"
                " AND (r.change = 'd' OR (r.change = 'u' AND {untouched}))"
            ).format(
                stamps=sql.Identifier(STAMPS),
                oid=sql.Literal(self.target.oid),
                revert=REVERT,
                untouched=self._as_written("r.now", "r.key"),
            )  # fmt: skip
        )


def _typed(column: Column, array: str, i: int) -> sql.Composable:
    return sql.SQL("CAST(r.{}[{}] AS {})").format(
        sql.Identifier(array), sql.Literal(i), sql.SQL(column.type)
    )


def _shown(target: Target, key: list[str]) -> sql.Composable:
    """A key as the table spells it now (else as recorded): joined with commas."""
    parts = [sql.SQL("t.{}::text").format(target.column(k).identifier) for k in key]
    now = (
        parts[0]
        if len(parts) == 1
        else sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(parts))
    )
    return sql.SQL("coalesce({}, r.key)").format(now)


def _regclass(oid: int, conn) -> sql.Composable:
    schema, name = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.oid = %s",
        (oid,),
    ).fetchone()
    return sql.Identifier(schema, name)


def _names(target: Target) -> set[str]:
    return {c.name for c in target.columns}


__all__ = ["Record", "Revert", "Reverted", "read_record", "row_columns"]
