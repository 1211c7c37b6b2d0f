"""Reading the database back: csvload's products, digests that say "unchanged", and plain
statements for a test's own tables.  Each call opens its own connection and closes it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import conninfo


def with_search_path(dsn: str, schema_name: str) -> str:
    return conninfo.make_conninfo(dsn, options=f"-c search_path={schema_name}")


@contextlib.contextmanager
def own_schema(server_dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_search_path(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def execute(dsn: str, statement: str, params=None) -> None:
    """Run `statement` (several, without params) and commit."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


def query(dsn: str, statement: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(statement, params).fetchall()


def fetch_products(dsn: str) -> list[tuple]:
    """(sku, name, description, active) for every product, by lower(sku)."""
    return query(
        dsn, 'SELECT sku, name, description, active FROM products ORDER BY lower(sku) COLLATE "C"'
    )


def table_checksum(dsn: str) -> str:
    """A digest of every column of every row of products: 'unchanged' means this is equal."""
    return query(
        dsn,
        "SELECT coalesce(md5(string_agg(p::text, E'\\n' ORDER BY id)), 'empty') FROM products p",
    )[0][0]


def content_checksum(dsn: str) -> str:
    """A digest of what an import decides (not ids or timestamps), by lower(sku)."""
    return query(
        dsn,
        "SELECT coalesce(md5(string_agg(concat_ws('|', sku, name, description, active),"
        " E'\\n' ORDER BY lower(sku) COLLATE \"C\")), 'empty') FROM products",
    )[0][0]


def written_checksum(dsn: str, table: str) -> str:
    """Every row of `table` and its xmin: equal means no row was written."""
    return query(
        dsn,
        f"SELECT coalesce(md5(string_agg(t::text || t.xmin::text, E'\\n' ORDER BY id)), '')"
        f" FROM {table} t",
    )[0][0]


def prefill(dsn: str) -> str:
    """Put one known row in products and return the table checksum."""
    execute(dsn, "INSERT INTO products (sku, name) VALUES ('KEEP', 'kept')")
    return table_checksum(dsn)
