"""What the run history says about undo: which runs can be taken back and how much their
records take (`csvload runs`), the newest import of a table (`csvload undo --last`), and
the retention of the records (`csvload runs prune`).  The records themselves are
load/undo_log.py's."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from csvload.history.runs import RUNS, runs_table_exists
from csvload.load.undo_log import KEEP, UNDO, UNDO_RUNS, prune_statement, undo_tables_exist
from csvload.server.database import translate


@dataclass(frozen=True)
class Undoable:
    """One run's undo record, as `csvload runs` shows it."""

    undoable: bool  # recorded, not undone yet
    size: int  # bytes its rows take in csvload_undo
    undone_by: str | None


def undo_state(conn: psycopg.Connection, run_ids: list[str]) -> dict[str, Undoable]:
    """The record of each of run_ids that has one."""
    if not run_ids or not undo_tables_exist(conn):
        return {}
    try:
        rows = conn.execute(
            sql.SQL(
                "SELECT r.run_id::text, r.undone_by::text, (SELECT coalesce(sum("
                "pg_column_size(u.*)), 0) FROM {undo} u WHERE u.run_id = r.run_id)"
                " FROM {runs} r WHERE r.run_id = ANY(%s::uuid[])"
            ).format(undo=sql.Identifier(UNDO), runs=sql.Identifier(UNDO_RUNS)),
            (run_ids,),
        ).fetchall()
    except psycopg.Error as e:
        raise translate(e, UNDO_RUNS) from e
    return {r: Undoable(by is None, int(size), by) for r, by, size in rows}


def last_import(conn: psycopg.Connection, table: str | None) -> str | None:
    """The newest import that succeeded (into `table`, when given), undone or not."""
    if not runs_table_exists(conn):
        return None
    where = sql.SQL(" AND target = %s") if table else sql.SQL("")
    row = conn.execute(
        sql.SQL(
            "SELECT run_id::text FROM {} WHERE status = 'succeeded' AND kind = 'import'{}"
            " ORDER BY finished_at DESC LIMIT 1"
        ).format(sql.Identifier(RUNS), where),
        (table,) if table else (),
    ).fetchone()
    return row[0] if row else None


def prune(conn: psycopg.Connection, keep: int | None = KEEP, days: float | None = None) -> int:
    """Drop the undo records of all but the newest `keep` recorded imports per table, and
    (with `days`) of those recorded longer ago; return how many runs lost theirs.  Their
    runs stay in the history, no longer undoable."""
    if not undo_tables_exist(conn):
        return 0
    query = prune_statement(keep, days)
    if query is None:
        return 0
    try:
        with conn.transaction():
            return conn.execute(query).rowcount
    except psycopg.Error as e:
        raise translate(e, UNDO_RUNS) from e
