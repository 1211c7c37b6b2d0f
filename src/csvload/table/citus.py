"""What csvload knows about Citus: whether the database is a Citus one, how a table is
stored (local, distributed, reference...), and the distributed form of csvload's own
products table (``csvload init --distributed``: sku is a citext distribution column and the
primary key; docs/citus.md says why).  Tried on Citus 14.0.1 over PostgreSQL 18, by
tests/citus/test_citus_module.py against a real coordinator and two workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import psycopg
from psycopg import sql

from csvload.errors import CitusError, NoTableError
from csvload.table.schema import INDEXES, PRODUCTS

SKU = "sku"
# pg_advisory_xact_lock key for init --distributed, so that two concurrent inits do not both
# find no table and both try to create it.  Any fixed bigint: 'csvload' in ASCII.
_INIT_LOCK = 0x637376_6C6F6164


class Kind(StrEnum):
    """How Citus stores a table (pg_dist_partition), as a loader must treat it."""

    DISTRIBUTED = "distributed"  # hash-distributed by a column: unique keys must include it
    SINGLE_SHARD = "single_shard"  # distributed without a column (schema-based sharding)
    REFERENCE = "reference"  # one shard, replicated to every node
    APPEND = "append"  # legacy append/range distribution: no unique keys across shards
    RANGE = "range"
    # A Citus local table (citus_add_local_table_to_metadata): its one shard is on the
    # coordinator, but Citus plans its statements, with the distributed tables' limits.
    CITUS_LOCAL = "citus_local"
    LOCAL = "local"  # a plain PostgreSQL table that Citus does not manage


@dataclass(frozen=True)
class TableKind:
    """What ``table_kind`` found; ``distribution_column`` is set for hash/append/range."""

    kind: Kind
    distribution_column: str | None = None
    shard_count: int | None = None

    @property
    def is_distributed(self) -> bool:
        """Rows are spread over shards on the workers (not local, reference or citus-local)."""
        return self.kind not in (Kind.LOCAL, Kind.CITUS_LOCAL, Kind.REFERENCE)

    @property
    def citus_plans(self) -> bool:
        """Citus plans writes to it: no MERGE from a local table, no now() in ON CONFLICT DO
        UPDATE, no pg_stat_get_xact_tuples_* counts (tried on Citus 14.0.1)."""
        return self.kind != Kind.LOCAL


LOCAL = TableKind(Kind.LOCAL)

# partmethod 'n' (none) is a reference table when replicated to all nodes (repmodel 't'),
# a single-shard distributed table when it has a colocation group, else a Citus local table.
# A table missing from pg_dist_partition is a plain local one.
_TABLE_KIND = """
SELECT CASE p.partmethod
         WHEN 'h' THEN 'distributed'
         WHEN 'a' THEN 'append'
         WHEN 'r' THEN 'range'
         ELSE CASE WHEN p.repmodel = 't' THEN 'reference'
                   WHEN p.colocationid <> 0 THEN 'single_shard'
                   ELSE 'citus_local' END
       END,
       CASE WHEN p.partmethod IN ('h', 'a', 'r')
            THEN pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) END,
       (SELECT count(*) FROM pg_catalog.pg_dist_shard s WHERE s.logicalrelid = p.logicalrelid)
FROM pg_catalog.pg_dist_partition p
WHERE p.logicalrelid = %s::regclass
"""


def is_citus(conn: psycopg.Connection) -> bool:
    """True when the citus extension is installed in the connected database.

    ``shared_preload_libraries = citus`` alone is not enough: the catalog tables (and the
    planner hooks' work) exist only in databases that ran ``CREATE EXTENSION citus``.
    """
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')"
    ).fetchone()
    return bool(row and row[0])


def table_kind(conn: psycopg.Connection, table: str) -> TableKind:
    """How ``table`` (a name as ``regclass`` reads it, search_path applies) is stored.

    Reads pg_catalog.pg_dist_partition, not the ``citus_tables`` view: that view lives in
    ``public`` and disappears from a search_path without it.  A database without Citus has
    only local tables.  Raises NoTableError when there is no such table.
    """
    row = conn.execute("SELECT pg_catalog.to_regclass(%s)::oid", (table,)).fetchone()
    oid = row[0] if row else None
    if oid is None:
        raise NoTableError(f"table {table} does not exist")
    if not is_citus(conn):
        return LOCAL
    found = conn.execute(_TABLE_KIND, (oid,)).fetchone()
    if found is None:
        return LOCAL
    kind, column, shards = found
    return TableKind(Kind(kind), column, shards)


def citext_schema(conn: psycopg.Connection) -> str | None:
    """The schema the citext extension is installed in, or None if it is not installed."""
    row = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e"
        " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'citext'"
    ).fetchone()
    return row[0] if row else None


_DISTRIBUTED_PRODUCTS = """
CREATE TABLE {table} (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    sku         {citext} NOT NULL,
    name        text        NOT NULL,
    description text,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT {pkey} PRIMARY KEY (sku)
) WITH (fillfactor = 70)
"""


def distributed_products_ddl(citext: str, shards: int | None) -> list[sql.Composed]:
    """The statements that create products distributed by sku: the local table's columns
    but a citext sku as the primary key, id without an index, and the secondary indexes of
    schema.py.  ``citext`` is the schema holding the citext type.  Executes nothing.
    """
    table = sql.Identifier(PRODUCTS)
    statements = [
        sql.SQL(_DISTRIBUTED_PRODUCTS).format(
            table=table,
            citext=sql.Identifier(citext, "citext"),
            pkey=sql.Identifier(f"{PRODUCTS}_pkey"),
        )
    ]
    statements += [index.create(PRODUCTS) for index in INDEXES if not index.unique]
    shard_count = sql.SQL("") if shards is None else sql.SQL(", shard_count => {}").format(shards)
    statements.append(
        sql.SQL("SELECT pg_catalog.create_distributed_table({table}, {column}{shards})").format(
            table=sql.Literal(PRODUCTS), column=sql.Literal(SKU), shards=shard_count
        )
    )
    return statements


def create_distributed_products(conn: psycopg.Connection, shards: int | None = None) -> bool:
    """Create products distributed by sku over ``shards`` shards, in one transaction.

    Returns True when it created the table, False when products was already distributed by
    sku (then nothing is changed, ``shards`` included: as ``csvload init`` keeps an existing
    table's settings).  A products in another form is never converted: distributing a
    table rewrites it into shards, which is the user's call.  Raises CitusError when the database
    is not Citus or products exists in another form.  Database errors are psycopg's.
    """
    if shards is not None and not 1 <= shards <= 64000:
        # Citus's own limit for shard_count.
        raise ValueError(f"shards must be between 1 and 64000, not {shards}")
    with conn.transaction():
        if not is_citus(conn):
            raise CitusError(
                "cannot create a distributed products table: the citus extension is not"
                " installed in this database (connect to a Citus coordinator)"
            )
        conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (_INIT_LOCK,))
        try:
            existing = table_kind(conn, PRODUCTS)
        except NoTableError:
            existing = None
        if existing is not None:
            if existing.kind == Kind.DISTRIBUTED and existing.distribution_column == SKU:
                return False
            how = (
                f"distributed by {existing.distribution_column}"
                if existing.kind == Kind.DISTRIBUTED
                else f"a {existing.kind.value.replace('_', '-')} table"
            )
            raise CitusError(
                f"products already exists as {how}, not distributed by sku (csvload never"
                " converts a table; use create_distributed_table() or drop it first)"
            )
        schema = citext_schema(conn)
        if schema is None:
            schema = _schema_for_citext(conn)
            conn.execute(
                sql.SQL("CREATE EXTENSION citext SCHEMA {}").format(sql.Identifier(schema))
            )
        for statement in distributed_products_ddl(schema, shards):
            conn.execute(statement)
    return True


def _schema_for_citext(conn: psycopg.Connection) -> str:
    # public, where extensions usually live and where a DROP SCHEMA of a user's schema cannot
    # take citext (and every citext column) with it; the current schema if there is no public.
    row = conn.execute(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public')"
        " THEN 'public' ELSE current_schema() END"
    ).fetchone()
    if row is None or row[0] is None:
        raise CitusError("cannot create the citext extension: the search_path names no schema")
    return row[0]
