"""The DDL csvload owns: the products table and its indexes.

The index definitions live here once, because the loader drops and rebuilds the secondary
indexes when it fills an empty table (building an index over sorted rows is much cheaper
than maintaining it row by row).
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

PRODUCTS = "products"

PRODUCTS_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text        NOT NULL,
    name        text        NOT NULL,
    description text,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 70)
"""
# fillfactor 70: pages are filled to 70 %, so that a re-import can write a changed row's
# new version on the same page (a HOT update), which skips the entries in all five
# indexes.  Measured at 500k rows with half the names changed: the merge took 1.7 s
# against 3.0 s at the default 100, and the fresh import 0.04 s longer.  See docs/tuning.md
# for tables csvload did not create.


@dataclass(frozen=True)
class Index:
    name: str
    unique: bool
    expression: str  # trusted text: written here, never taken from input

    def create(self, table: str) -> sql.Composed:
        return sql.SQL("CREATE {unique}INDEX IF NOT EXISTS {name} ON {table} ({expr})").format(
            unique=sql.SQL("UNIQUE " if self.unique else ""),
            name=sql.Identifier(self.name),
            table=sql.Identifier(table),
            expr=sql.SQL(self.expression),
        )

    def drop(self) -> sql.Composed:
        return sql.SQL("DROP INDEX IF EXISTS {name}").format(name=sql.Identifier(self.name))


# SKUs are case-insensitive: the merge matches on lower(sku), and this index both enforces
# that and serves the match.  The other three are the indexes of the system csvload replaces.
SKU_INDEX = Index("products_lower_sku_key", True, "lower(sku)")
INDEXES = (
    SKU_INDEX,
    Index("products_active_idx", False, "active"),
    Index("products_created_at_idx", False, "created_at"),
    Index("products_active_created_at_idx", False, "active, created_at"),
)


# The name of products' primary key constraint, unless a foreign key elsewhere refers to
# products (that would stop the key from being dropped and rebuilt).
DROPPABLE_PRIMARY_KEY = sql.SQL(
    "SELECT c.conname FROM pg_constraint c WHERE c.conrelid = {table}::regclass"
    " AND c.contype = 'p' AND NOT EXISTS"
    " (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.conrelid AND f.contype = 'f')"
).format(table=sql.Literal(PRODUCTS))


def drop_constraint(name: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
        sql.Identifier(PRODUCTS), sql.Identifier(name)
    )


def add_primary_key(name: str) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (id)").format(
        sql.Identifier(PRODUCTS), sql.Identifier(name)
    )


# Serialises csvload's own DDL (products, csvload_runs): the first 64 bits of
# sha256("csvload_runs ddl"), the key csvload_runs' DDL has always been serialised with, so
# that an older csvload's import waits for this one's init too.
DDL_LOCK = int.from_bytes(hashlib.sha256(b"csvload_runs ddl").digest()[:8], "big", signed=True)


@contextmanager
def ddl_transaction(conn: psycopg.Connection) -> Iterator[psycopg.Cursor]:
    """A transaction (a savepoint inside one already open) that holds DDL_LOCK until the
    outer transaction ends.  CREATE TABLE / INDEX IF NOT EXISTS is not safe against a
    concurrent twin: both pass the check, and one then fails on a catalog's unique index
    (pg_type's, pg_class's); two `csvload init` at once did in 4 of 14 rounds."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
        yield cur


def create_products(conn: psycopg.Connection) -> None:
    """Create the products table and its indexes if missing; never touches existing rows.
    Safe when several sessions run it at once."""
    with ddl_transaction(conn) as cur:
        cur.execute(sql.SQL(PRODUCTS_DDL).format(table=sql.Identifier(PRODUCTS)))
        for index in INDEXES:
            cur.execute(index.create(PRODUCTS))


PRIMARY_KEY_INDEX = f"{PRODUCTS}_pkey"

# Everything about products' indexes that dropping and rebuilding them would reset, one row
# an index: its definition (DESC, opclass, collation, WITH options, a WHERE, INCLUDE all
# show there), the CLUSTER mark, the replica identity, a comment on the index or on its
# constraint, a tablespace, a per-column statistics target, a deferrable constraint, and
# whether it is ready.  Along with the table's replica identity setting.
_INDEX_STATE = """
SELECT c.relname, pg_get_indexdef(i.indexrelid),
       i.indisclustered OR i.indisreplident OR NOT i.indisvalid OR NOT i.indisready
       OR c.reltablespace <> 0 OR c.reloptions IS NOT NULL
       OR obj_description(c.oid, 'pg_class') IS NOT NULL
       OR EXISTS (SELECT 1 FROM pg_attribute a
                  WHERE a.attrelid = c.oid AND coalesce(a.attstattarget, -1) <> -1)
       OR EXISTS (SELECT 1 FROM pg_constraint k
                  WHERE k.conindid = c.oid AND k.conrelid = i.indrelid
                    AND (k.condeferrable OR obj_description(k.oid, 'pg_constraint') IS NOT NULL)),
       (SELECT t.relreplident FROM pg_class t WHERE t.oid = i.indrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s
"""


def _created_definition(name: str) -> tuple[str, str]:
    """How pg_get_indexdef() begins and ends for the index `csvload init` made; the middle
    is the table's name, qualified as the server sees fit."""
    if name == PRIMARY_KEY_INDEX:
        return f"CREATE UNIQUE INDEX {name} ON ", " USING btree (id)"
    index = next(i for i in INDEXES if i.name == name)
    unique = "UNIQUE " if index.unique else ""
    return f"CREATE {unique}INDEX {name} ON ", f" USING btree ({index.expression})"


def indexes_as_created(conn_or_cursor, oid: int) -> bool:
    """Whether products' indexes are exactly those `csvload init` made, with nothing a user
    set on them since: only then may filling the empty table drop and rebuild them, since
    the rebuild restores exactly what init made and nothing else."""
    rows = conn_or_cursor.execute(_INDEX_STATE, (oid,)).fetchall()
    expected = {i.name for i in INDEXES} | {PRIMARY_KEY_INDEX}
    if {name for name, *_ in rows} != expected:
        return False
    for name, definition, changed, replica_identity in rows:
        head, tail = _created_definition(name)
        if changed or replica_identity != "d":
            return False
        if not (definition.startswith(head) and definition.endswith(tail)):
            return False
    return True
