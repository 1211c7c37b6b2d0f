"""What the full-feed tests share: a user's table several suppliers share under a
composite key (with a price column for value rejects), and small helpers to run the CLI
and look at a table."""

from __future__ import annotations

from pathlib import Path

import psycopg
from click.testing import CliRunner

from csvload.cli import main

# active and updated_at as a shop would declare them.
ITEM_DDL = """
CREATE TABLE feed_item (
    id serial PRIMARY KEY,
    supplier text NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    price numeric(10, 2),
    active boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feed_item_supplier_sku UNIQUE (supplier, sku)
)
"""


def cli(dsn: str, *args: str):
    return CliRunner().invoke(main, [*args, "--dsn", dsn], catch_exceptions=False)


def put(tmp_path: Path, text: str, name: str = "feed.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def execute(dsn: str, statement: str, params=None) -> None:
    with psycopg.connect(dsn) as c:
        c.execute(statement, params)


def checksum(dsn: str, table: str) -> str:
    """Every row and its xmin: equal means no row was written."""
    with psycopg.connect(dsn) as c:
        return c.execute(
            f"SELECT coalesce(md5(string_agg(t::text || t.xmin::text, E'\\n' ORDER BY id)), '')"
            f" FROM {table} t"
        ).fetchone()[0]
