"""Issue 22, `csvload undo` on csvload's own products: a bad file taken back, the fill of an
empty table taken back, refusals (twice, an undo, --no-undo), --dry-run, the run history
and the webhook.  Each case compares the whole table with a snapshot."""

from __future__ import annotations

import json

import pytest
from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.db import execute, query, table_checksum
from helpers.files import write_file


@pytest.fixture
def dsn(major_dsn, products):
    """products on PostgreSQL 15 and 18: the WITH statement records on 15, MERGE's
    RETURNING old and new on 18."""
    return products


@pytest.fixture
def products(major_dsn):
    from csvload.table import schema
    import psycopg

    with psycopg.connect(major_dsn) as c:
        schema.create_products(c)
    return major_dsn


def csv(rows: dict[str, str]) -> str:
    return "sku,name,description\n" + "".join(f"{k},{v},d {k}\n" for k, v in rows.items())


def undo(dsn, *args):
    return quiet_cli(dsn, "undo", *args, "--json")


def test_a_bad_file_is_taken_back_and_the_fill_too(dsn, tmp_path):
    empty = table_checksum(dsn)
    good = imported(dsn, write_file(tmp_path, csv({f"A-{i}": f"n{i}" for i in range(50)})))
    before = table_checksum(dsn)
    bad = {f"A-{i}": f"swapped {i}" for i in range(0, 50, 5)} | {"NEW-1": "x", "NEW-2": "y"}
    summary = imported(dsn, write_file(tmp_path, csv(bad), "bad.csv"))
    assert (summary["inserted"], summary["updated"]) == (2, 10)
    assert table_checksum(dsn) != before

    result = undo(dsn, summary["run_id"])
    assert result.exit_code == 0, result.stderr
    done = json.loads(result.stdout)
    assert (done["deleted"], done["restored"], done["conflicts"]) == (2, 10, 0)
    assert table_checksum(dsn) == before

    result = undo(dsn, good["run_id"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["deleted"] == 50
    assert table_checksum(dsn) == empty
