"""The core loader: init, fresh import, re-import, upsert semantics, the ledger, the CLI."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import psycopg
import pytest
from helpers.cli import LEDGER, assert_balanced, cli
from helpers.db import fetch_products, table_checksum
from helpers.files import write_file
from helpers.library import import_file

from csvload.errors import MissingColumnError
from csvload.read.source import Source, SourceOptions
from csvload.server.database import COPY_SEND_BUFFER, widen_send_buffer
from csvload.table import schema


def index_names(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'products'"
            " AND schemaname = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


# -- init ---------------------------------------------------------------------------------


def test_init_creates_table_and_indexes_idempotently(dsn):
    assert cli(dsn, "init").exit_code == 0
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO products (sku, name) VALUES ('A-1', 'kept')")
        conn.commit()
    assert cli(dsn, "init").exit_code == 0
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT sku, name, active FROM products").fetchall()
    assert {i.name for i in schema.INDEXES} <= index_names(dsn)
    assert rows == [("A-1", "kept", True)]


def test_sku_index_is_case_insensitive_unique(products):
    with psycopg.connect(products) as conn:
        conn.execute("INSERT INTO products (sku, name) VALUES ('Ab-1', 'x')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO products (sku, name) VALUES ('aB-1', 'y')")


# -- import -------------------------------------------------------------------------------


def test_fresh_import_then_reimport_is_all_unchanged(products, tmp_path):
    path = write_file(tmp_path,
                      "name,sku,description\nOak table,T-1,Solid oak\nPine chair,C-2,Pine\n")
    first = cli(products, "import", path, "--json", "--quiet")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["status"] == "succeeded"
    assert (summary["inserted"], summary["rows_read"]) == (2, 2)
    assert_balanced(summary)
    before = table_checksum(products)

    second = json.loads(cli(products, "import", path, "--json", "--quiet").stdout)
    assert (second["inserted"], second["updated"], second["unchanged"]) == (0, 0, 2)
    assert_balanced(second)
    assert table_checksum(products) == before  # untouched: not even updated_at moved


def test_json_summary_has_exactly_the_documented_keys(products, tmp_path):
    path = write_file(tmp_path, "sku,name\nA,a\n")
    result = cli(products, "import", path, "--json", "--quiet")
    summary = json.loads(result.stdout)
    for key in ("status", "file", "rows_read", *LEDGER, "seconds", "rows_per_second", "statements"):
        assert key in summary
    assert summary["file"] == path
    assert result.stderr == ""  # --quiet: nothing for a person


def test_case_insensitive_upsert_updates_and_keeps_unchanged_rows(products, tmp_path):
    import_file(products, write_file(tmp_path, "sku,name\nAB-1,old\nCD-2,same\n"))
    with psycopg.connect(products) as conn:
        stamps = dict(conn.execute("SELECT sku, updated_at FROM products").fetchall())
    result = import_file(products,
                         write_file(tmp_path, "SKU,Name\nab-1,new\nCD-2,same\nEF-3,added\n",
                                    "b.csv"))
    assert (result.inserted, result.updated, result.unchanged) == (1, 1, 1)
    rows = fetch_products(products)
    assert rows == [
        ("ab-1", "new", None, True),
        ("CD-2", "same", None, True),
        ("EF-3", "added", None, True),
    ]
    with psycopg.connect(products) as conn:
        after = dict(conn.execute("SELECT lower(sku), updated_at FROM products").fetchall())
    assert after["cd-2"] == stamps["CD-2"]  # unchanged row keeps updated_at
    assert after["ab-1"] > stamps["AB-1"]


@pytest.mark.parametrize("prefill", [False, True], ids=["empty-table", "filled-table"])
def test_last_occurrence_wins_within_a_file(products, tmp_path, prefill):
    if prefill:
        import_file(products, write_file(tmp_path, "sku,name\nzz,other\ndup,older\n", "pre.csv"))
    path = write_file(
        tmp_path, "sku,name,description\ndup,first,1\nDUP,second,2\nx,only,x\nDuP,third,3\n"
    )
    result = import_file(products, path)
    assert result.duplicates == 2
    assert ("DuP", "third", "3", True) in fetch_products(products)
    assert_balanced(result.as_dict())
    assert result.inserted + result.updated + result.unchanged == 2


def test_header_is_matched_case_insensitively_in_any_order(products, tmp_path):
    path = write_file(tmp_path, "Colour,DESCRIPTION,Name,SKU\nred,d1,n1,s1\n")
    result = cli(products, "import", path)
    assert result.exit_code == 0
    assert "ignoring unknown columns: Colour" in result.stderr
    assert result.stderr.count("Warning") == 1
    assert fetch_products(products) == [("s1", "n1", "d1", True)]


def test_missing_key_column_fails_before_writing(products, tmp_path):
    import_file(products, write_file(tmp_path, "sku,name\nkeep,me\n", "pre.csv"))
    before = table_checksum(products)
    path = write_file(tmp_path, "name,description\na,b\n")
    result = cli(products, "import", path)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path} line 1: no sku column in the header (found 'name', 'description';"
        " use --map 'Your Column=sku')\n"
    )
    assert table_checksum(products) == before
    with pytest.raises(MissingColumnError), Source(SourceOptions(path)) as source:
        source.find_keys(("sku",))


def test_missing_not_null_column_fails_before_writing(products, tmp_path):
    """products.name is NOT NULL without a default: a file without it can add no row."""
    import_file(products, write_file(tmp_path, "sku,name\nkeep,me\n", "pre.csv"))
    before = table_checksum(products)
    path = write_file(tmp_path, "sku,description\na,b\n")
    result = cli(products, "import", path)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: products.name is NOT NULL and has no default; add --default name=VALUE\n"
    )
    assert table_checksum(products) == before


def test_values_are_stored_byte_exact(products, tmp_path):
    text = (
        "\ufeffsku,name,description\n"
        'q-1,"Comma, inside","He said ""hi"""\n'
        'n-2,"Two\nlines","crlf\r\ninside"\n'
        "u-3,Ünïcödé 東京,emoji 🚀\n"
        "e-4,empty description,\n"
        'e-5,"",""\n'
    )
    result = import_file(products, write_file(tmp_path, text))
    assert result.inserted == 5
    assert fetch_products(products) == [
        ("e-4", "empty description", "", True),
        ("e-5", "", "", True),
        ("n-2", "Two\nlines", "crlf\r\ninside", True),
        ("q-1", "Comma, inside", 'He said "hi"', True),
        ("u-3", "Ünïcödé 東京", "emoji 🚀", True),
    ]


def test_active_column_is_optional_and_kept_when_absent(products, tmp_path):
    import_file(products, write_file(tmp_path, "sku,name,active\na,x,no\nb,y,TRUE\n", "a.csv"))
    assert [r[3] for r in fetch_products(products)] == [False, True]
    # A file without 'active' leaves it alone on existing rows.
    result = import_file(products, write_file(tmp_path, "sku,name\na,x2\nc,z\n", "b.csv"))
    assert (result.updated, result.inserted) == (1, 1)
    assert fetch_products(products) == [
        ("a", "x2", None, False),
        ("b", "y", None, True),
        ("c", "z", None, True),
    ]


def test_absent_description_keeps_existing_description(products, tmp_path):
    import_file(products, write_file(tmp_path, "sku,name,description\na,x,kept\n", "a.csv"))
    import_file(products, write_file(tmp_path, "sku,name\na,renamed\n", "b.csv"))
    assert fetch_products(products) == [("a", "renamed", "kept", True)]


def test_import_without_table_says_to_run_init(dsn, tmp_path):
    result = cli(dsn, "import", write_file(tmp_path, "sku,name\na,b\n"))
    assert result.exit_code == 1
    assert "run 'csvload init' first" in result.stderr


def test_generated_style_file_ledger_and_one_row_per_sku(products, tmp_path):
    lines = ["name,sku,description"]
    for i in range(3000):
        lines.append(f"Name {i},SKU-{i % 2500},desc {i}")
        if i % 7 == 0:
            lines.append(f"Again {i},sku-{i % 2500},changed {i}")
    path = write_file(tmp_path, "\n".join(lines) + "\n")
    # One streaming COPY for all chunks: the statement count does not grow with the rows.
    small = import_file(products, path, batch_size=100, dry_run=True)
    large = import_file(products, path, batch_size=1000, dry_run=True)
    assert small.statements == large.statements < 20
    result = import_file(products, path, batch_size=500)
    assert_balanced(result.as_dict())
    with psycopg.connect(products) as conn:
        count, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT lower(sku)) FROM products"
        ).fetchone()
    assert count == distinct == 2500 == result.inserted


def test_dry_run_counts_but_changes_nothing(products, tmp_path):
    import_file(products, write_file(tmp_path, "sku,name\na,x\n", "a.csv"))
    before = table_checksum(products)
    result = cli(products, "import", write_file(tmp_path, "sku,name\na,y\nb,z\n"), "--dry-run",
                 "--json")
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["updated"], summary["inserted"]) == ("dry_run", 1, 1)
    assert table_checksum(products) == before


def test_python_dash_m_runs_the_cli():
    import re
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "csvload", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "import" in out.stdout
    assert out.stderr == ""
    assert out.stdout.startswith("Usage: python -m csvload [OPTIONS] COMMAND [ARGS]...\n")
    # The whole group: every command, each with its one-line help.
    commands = out.stdout.split("\nCommands:\n", 1)[1]
    listed = re.findall(r"^  (\w+) +(\S.*)$", commands, re.M)
    assert [name for name, _ in listed] == [
        "db", "generate", "import", "init", "runs", "stats", "status", "verify", "watch", "webhook",
    ]
    assert all(help_text for _, help_text in listed)


def constraints(dsn: str) -> set[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT conname, contype::text FROM pg_constraint WHERE conrelid = 'products'::regclass"
        ).fetchall()
    return set(rows)


def test_filling_an_empty_table_rebuilds_every_index_and_the_primary_key(products, tmp_path):
    before = constraints(products)
    assert ("products_pkey", "p") in before
    import_file(products, write_file(tmp_path, "sku,name\na,1\nb,2\n"))
    assert constraints(products) == before
    with psycopg.connect(products) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO products (id, sku, name) OVERRIDING SYSTEM VALUE"
            " SELECT id, 'other', 'x' FROM products LIMIT 1"
        )
    assert index_names(products) == {"products_pkey", *(i.name for i in schema.INDEXES)}


def test_a_referenced_primary_key_is_left_in_place(products, tmp_path):
    with psycopg.connect(products) as conn:
        conn.execute("CREATE TABLE orders (product_id bigint REFERENCES products (id))")
    result = import_file(products, write_file(tmp_path, "sku,name\na,1\nb,2\n"))
    assert result.inserted == 2
    assert ("products_pkey", "p") in constraints(products)


def test_init_leaves_room_on_each_page_for_updates(products):
    with psycopg.connect(products) as conn:
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = 'products'::regclass"
        ).fetchone()[0]
    assert options == ["fillfactor=70"]


def _superuser(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        query = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        return conn.execute(query).fetchone()[0]


@pytest.mark.parametrize("track_counts", ["on", "off"], ids=["merge", "with-statement"])
def test_both_merge_statements_give_the_same_table_and_counts(products, tmp_path, track_counts):
    """MERGE (counted through the transaction's table statistics) and the WITH statement
    that runs when those statistics are off, or before PostgreSQL 15, agree row for row."""
    if not _superuser(products):
        pytest.skip("setting track_counts needs a superuser")
    import_file(products,
                write_file(tmp_path, "sku,name,description\nA-1,a,x\nB-2,b,y\nC-3,c,z\n", "1.csv"))
    path = write_file(
        tmp_path,
        "sku,name,description\nb-2,b,y\nA-1,a2,x\nD-4,d,w\nd-4,d2,w\nC-3,c,z\nE-5,e,\n",
        "2.csv",
    )
    result = import_file(products, path, track_counts)
    assert (result.inserted, result.updated, result.unchanged, result.duplicates) == (2, 2, 1, 1)
    assert fetch_products(products) == [
        ("A-1", "a2", "x", True),
        ("b-2", "b", "y", True),
        ("C-3", "c", "z", True),
        ("d-4", "d2", "w", True),
        ("E-5", "e", "", True),
    ]
    # MERGE needs three more statements (the counter, and the statistics before and after).
    assert result.statements == (10 if track_counts == "on" else 8)


@pytest.mark.parametrize("track_counts", ["on", "off"], ids=["merge", "with-statement"])
def test_header_only_file_into_a_filled_table_changes_nothing(products, tmp_path, track_counts):
    if not _superuser(products):
        pytest.skip("setting track_counts needs a superuser")
    import_file(products, write_file(tmp_path, "sku,name\nA-1,a\n", "1.csv"))
    before = table_checksum(products)
    result = import_file(products, write_file(tmp_path, "sku,name\n", "2.csv"), track_counts)
    assert (result.rows_read, result.inserted, result.updated, result.unchanged) == (0, 0, 0, 0)
    assert table_checksum(products) == before


def test_copy_send_buffer_is_widened_on_unix_sockets_only(products):
    """A unix socket gets a bigger send buffer for COPY (the kernel caps the request at
    net.core.wmem_max); a TCP socket keeps the size the kernel manages."""
    with psycopg.connect(products) as c:
        sock = socket.socket(fileno=c.pgconn.socket)
        try:
            before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            widen_send_buffer(c)
            after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            if sock.family == socket.AF_UNIX:
                cap = int(Path("/proc/sys/net/core/wmem_max").read_text())
                assert after >= min(COPY_SEND_BUFFER, cap) > 0
                assert after > before
            else:
                assert after == before
        finally:
            sock.detach()
        # The connection still works after the socket object let go of it.
        assert c.execute("SELECT 1").fetchone() == (1,)
