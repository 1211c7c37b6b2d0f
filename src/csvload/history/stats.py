"""What is in a table (products by default): row counts, sizes on disk, how the indexes
are used, and the last successful import.  Read only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import psycopg
from psycopg import sql

from csvload.errors import NoTableError
from csvload.history.runs import RunInfo, last_successful
from csvload.server.database import translate
from csvload.table.catalog import describe_columns
from csvload.table.schema import PRODUCTS


@dataclass
class IndexStats:
    name: str
    bytes: int
    scans: int  # idx_scan: index scans started on it
    tuples_read: int  # idx_tup_read: index entries returned by those scans
    tuples_fetched: int  # idx_tup_fetch: live rows fetched through it by simple scans


@dataclass
class Stats:
    table: str
    rows: int
    active: int | None  # rows whose boolean active is true; None without such a column
    total_bytes: int  # pg_total_relation_size: heap, TOAST and indexes
    table_bytes: int  # heap and TOAST, without indexes
    indexes_bytes: int  # pg_indexes_size
    indexes: list[IndexStats] = field(default_factory=list)
    last_import: RunInfo | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["last_import"] = self.last_import.as_dict() if self.last_import else None
        return d


_SIZES = """
SELECT pg_total_relation_size(t.oid), pg_table_size(t.oid), pg_indexes_size(t.oid)
FROM (SELECT to_regclass(%s) AS oid) t
"""

# The statistics views count scans since the last stats reset; they are per server and
# may lag a moment behind (PostgreSQL 15 flushes them at transaction end at the latest).
_INDEXES = """
SELECT s.indexrelname, pg_relation_size(s.indexrelid), s.idx_scan, s.idx_tup_read,
       s.idx_tup_fetch
FROM pg_stat_user_indexes s
WHERE s.relid = to_regclass(%s)
ORDER BY s.indexrelname
"""


def collect(conn: psycopg.Connection, table: str = PRODUCTS) -> Stats:
    """Statistics for a table.  Raises NoTableError when it does not exist."""
    try:
        row = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
        if row is None or row[0] is None:
            hint = "run 'csvload init' first" if table == PRODUCTS else "check --table"
            raise NoTableError(f"{table}: the table does not exist ({hint})")
        oid = row[0]
        schema, name, columns = describe_columns(conn, oid)
        identifier = sql.Identifier(schema, name)
        has_active = any(c.name == "active" and c.type_name == "bool" for c in columns)
        counts = conn.execute(
            sql.SQL("SELECT count(*), {} FROM {}").format(
                sql.SQL("count(*) FILTER (WHERE active)" if has_active else "NULL::bigint"),
                identifier,
            )
        ).fetchone()
        sizes = conn.execute(_SIZES, (table,)).fetchone()
        indexes = [IndexStats(*r) for r in conn.execute(_INDEXES, (table,)).fetchall()]
    except psycopg.Error as e:
        raise translate(e, table) from e
    assert counts is not None and sizes is not None
    return Stats(
        table=table,
        rows=counts[0],
        active=counts[1],
        total_bytes=sizes[0],
        table_bytes=sizes[1],
        indexes_bytes=sizes[2],
        indexes=indexes,
        last_import=last_successful(conn, table),
    )
