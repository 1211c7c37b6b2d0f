"""Hardening (issue 19): the merge's own findings.

- filling an empty products keeps every index property a user set (finding 5);
- counts stay exact whatever triggers do (finding 7);
- a full feed treats an empty active field as "listed, so active" (finding 9);
- rejected keys with bytes no database text can hold (finding 14);
- verify --missing on a table with NULL keys (finding 15).
"""

from __future__ import annotations

import json

import psycopg
import pytest
from helpers.cli import assert_balanced, cli
from helpers.files import write_file

from csvload.table import schema


def summary(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])




# -- 5: the fast path of an empty products never resets what a user changed ------------------

# Everything about products' indexes a user can see, and the replica identity.
INDEX_STATE = """
SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisclustered, i.indisreplident,
       obj_description(c.oid, 'pg_class'), c.reloptions,
       (SELECT obj_description(k.oid, 'pg_constraint') FROM pg_constraint k
        WHERE k.conindid = c.oid AND k.conrelid = i.indrelid),
       (SELECT array_agg(coalesce(a.attstattarget, -1) ORDER BY a.attnum)
        FROM pg_attribute a WHERE a.attrelid = c.oid),
       (SELECT t.relreplident FROM pg_class t WHERE t.oid = i.indrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'products'::regclass ORDER BY 1
"""

USER_CHANGES = {
    "desc": ["DROP INDEX products_created_at_idx",
             "CREATE INDEX products_created_at_idx ON products (created_at DESC)"],
    "opclass": ["DROP INDEX products_lower_sku_key",
                "CREATE UNIQUE INDEX products_lower_sku_key ON products"
                " (lower(sku) text_pattern_ops)"],
    "fillfactor": ["ALTER INDEX products_active_idx SET (fillfactor = 50)"],
    "cluster": ["CLUSTER products USING products_active_created_at_idx"],
    "index_comment": ["COMMENT ON INDEX products_active_idx IS 'kept'"],
    "constraint_comment": ["COMMENT ON CONSTRAINT products_pkey ON products IS 'kept'"],
    "statistics": ["ALTER INDEX products_lower_sku_key ALTER COLUMN 1 SET STATISTICS 500"],
    "replica_identity": ["ALTER TABLE products REPLICA IDENTITY USING INDEX products_pkey"],
}


def state(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(INDEX_STATE).fetchall()


@pytest.mark.parametrize("change", sorted(USER_CHANGES))
def test_filling_empty_products_keeps_index_changes(products, tmp_path, change):
    with psycopg.connect(products, autocommit=True) as conn:
        for statement in USER_CHANGES[change]:
            conn.execute(statement)
    before = state(products)
    path = write_file(tmp_path, "sku,name\nA-1,a\nB-2,b\n")
    result = cli(products, "import", path, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["inserted"] == 2
    assert state(products) == before


def test_replica_identity_and_publication_survive_a_fill(products, tmp_path):
    """The finding's case: after one import into the empty table every UPDATE failed, and so
    did every later import."""
    with psycopg.connect(products, autocommit=True) as conn:
        conn.execute("ALTER TABLE products REPLICA IDENTITY USING INDEX products_pkey")
        schema_name = conn.execute("SELECT current_schema()").fetchone()[0]
        publication = f"pub_{schema_name}"
        conn.execute(f'CREATE PUBLICATION "{publication}" FOR TABLE products')
    try:
        assert cli(products, "import", write_file(tmp_path, "sku,name\nA-1,a\n"),
                   "-q").exit_code == 0
        with psycopg.connect(products) as conn:
            conn.execute("UPDATE products SET name = 'by hand'")
        again = cli(products, "import", write_file(tmp_path, "sku,name\nA-1,b\n", "q.csv"),
                    "--json",
                    "-q")
        assert again.exit_code == 0, again.stderr
        assert summary(again)["updated"] == 1
    finally:
        with psycopg.connect(products, autocommit=True) as conn:
            conn.execute(f'DROP PUBLICATION "{publication}"')


def test_as_created_products_still_takes_the_fast_path(products):
    with psycopg.connect(products) as conn:
        oid = conn.execute("SELECT 'products'::regclass::oid").fetchone()[0]
        assert schema.indexes_as_created(conn, oid)
        conn.execute("COMMENT ON INDEX products_active_idx IS 'mine'")
        assert not schema.indexes_as_created(conn, oid)


# -- 7: counts stay exact whatever triggers do ------------------------------------------------

TRIGGERED = """
CREATE TABLE items (sku text PRIMARY KEY, name text NOT NULL, touched int NOT NULL DEFAULT 0);
CREATE FUNCTION touch_own_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE items SET touched = touched + 1 WHERE sku = NEW.sku; RETURN NULL; END $$;
CREATE FUNCTION refuse_x() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.name LIKE 'x%' THEN RETURN NULL; END IF; RETURN NEW; END $$;
"""


def triggered_table(dsn: str, kind: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(TRIGGERED)
        if kind == "after_insert_updates_own_row":
            conn.execute("CREATE TRIGGER t AFTER INSERT ON items FOR EACH ROW"
                         " EXECUTE FUNCTION touch_own_row()")
        else:
            conn.execute("CREATE TRIGGER t BEFORE INSERT OR UPDATE ON items FOR EACH ROW"
                         " EXECUTE FUNCTION refuse_x()")


def items(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT sku, name FROM items ORDER BY sku").fetchall()


def test_after_insert_trigger_updating_its_own_row(major_dsn, tmp_path):
    """Was: inserted 3, updated 3, duplicates -3 for three new rows on a filled table."""
    triggered_table(major_dsn, "after_insert_updates_own_row")
    first = cli(major_dsn, "import", write_file(tmp_path, "sku,name\nA,a\n"), "--table", "items",
                "--json", "-q")
    assert summary(first)["inserted"] == 1
    result = cli(major_dsn, "import",
                 write_file(tmp_path, "sku,name\nA,a\nB,b\nC,c\nD,d\n", "q.csv"),
                 "--table", "items", "--json", "-q")
    s = summary(result)
    assert (s["inserted"], s["updated"], s["unchanged"], s["duplicates"], s["suppressed"]) == (
        3, 0, 1, 0, 0)
    assert_balanced(s)


@pytest.mark.parametrize("fill_first", [False, True], ids=["empty", "filled"])
def test_before_trigger_suppressing_rows_is_counted_and_named(major_dsn, tmp_path, fill_first):
    """Was: the rows a BEFORE trigger returned NULL for were reported as duplicates."""
    triggered_table(major_dsn, "before_refuses")
    if fill_first:
        cli(major_dsn, "import", write_file(tmp_path, "sku,name\nA,a\nB,b\n", "first.csv"),
            "--table", "items", "-q")
    # A and B exist when filled: A changes to a refused name, B to an accepted one.
    text = "sku,name\nA,xa\nB,b2\nC,c\nD,xd\nE,xe\n"
    result = cli(major_dsn, "import", write_file(tmp_path, text), "--table", "items", "--json")
    s = summary(result)
    assert_balanced(s)
    if fill_first:
        assert (s["inserted"], s["updated"], s["unchanged"], s["suppressed"]) == (1, 1, 0, 3)
        assert items(major_dsn) == [("A", "a"), ("B", "b2"), ("C", "c")]
    else:
        assert (s["inserted"], s["updated"], s["unchanged"], s["suppressed"]) == (2, 0, 0, 3)
        assert items(major_dsn) == [("B", "b2"), ("C", "c")]
    assert s["duplicates"] == 0
    assert "3 suppressed by a trigger" in result.stderr


def test_full_feed_with_triggers_counts_exactly(major_dsn, tmp_path):
    with psycopg.connect(major_dsn) as conn:
        conn.execute(TRIGGERED)
        conn.execute("ALTER TABLE items ADD COLUMN active boolean NOT NULL DEFAULT true")
        conn.execute("CREATE TRIGGER t AFTER INSERT OR UPDATE OF name ON items FOR EACH ROW"
                     " EXECUTE FUNCTION touch_own_row()")
    cli(major_dsn, "import", write_file(tmp_path, "sku,name\nA,a\nB,b\nC,c\n", "first.csv"),
        "--table", "items", "-q")
    result = cli(major_dsn, "import", write_file(tmp_path, "sku,name\nA,a2\nB,b\nD,d\n"),
                 "--table", "items", "--missing", "deactivate", "--max-missing", "100%",
                 "--json", "-q")
    s = summary(result)
    assert (s["inserted"], s["updated"], s["unchanged"], s["deactivated"], s["suppressed"]) == (
        1, 1, 1, 1, 0)
    assert_balanced(s)


# -- 9: a full feed reads an empty active field as "listed, so active" ------------------------


def test_full_feed_reactivates_a_row_whose_active_field_is_empty(major_dsn, tmp_path):
    with psycopg.connect(major_dsn) as conn:
        schema.create_products(conn)
        conn.execute("INSERT INTO products (sku, name, active) VALUES ('A', 'a', true),"
                     " ('B', 'b', false), ('C', 'c', true)")
    path = write_file(tmp_path, "sku,name,active\nA,a,\nB,b,\nC,c,false\n")
    result = cli(major_dsn, "import", path, "--missing", "deactivate", "--json", "-q")
    s = summary(result)
    assert (s["reactivated"], s["updated"], s["deactivated"]) == (1, 2, 0)
    with psycopg.connect(major_dsn) as conn:
        rows = conn.execute("SELECT sku, active FROM products ORDER BY sku").fetchall()
    assert rows == [("A", True), ("B", True), ("C", False)]


def test_plain_import_keeps_stored_active_for_an_empty_field(major_dsn, tmp_path):
    """Outside a full feed an empty field in a NOT NULL boolean still keeps what is stored."""
    with psycopg.connect(major_dsn) as conn:
        schema.create_products(conn)
        conn.execute("INSERT INTO products (sku, name, active) VALUES ('B', 'b', false)")
    result = cli(major_dsn, "import", write_file(tmp_path, "sku,name,active\nB,b,\n"), "--json",
                 "-q")
    assert summary(result)["unchanged"] == 1
    with psycopg.connect(major_dsn) as conn:
        assert conn.execute("SELECT active FROM products").fetchone() == (False,)


# -- 14: a rejected row's key with bytes no stored value holds --------------------------------


@pytest.mark.parametrize("bad", [b"T-\xff\xfe", b"T-\x00"], ids=["invalid-utf8", "nul"])
def test_full_feed_with_a_rejected_key_no_row_can_hold(major_dsn, tmp_path, bad):
    with psycopg.connect(major_dsn) as conn:
        schema.create_products(conn)
        conn.execute("INSERT INTO products (sku, name) SELECT 'T-' || i, 'n'"
                     " FROM generate_series(1, 20) i")
    body = b"sku,name\n" + b"".join(b"T-%d,n\n" % i for i in range(1, 20)) + bad + b",n\n"
    result = cli(major_dsn, "import", write_file(tmp_path, body), "--missing", "deactivate",
                 "--max-errors", "1", "--json", "-q")
    assert result.exit_code == 3, result.stderr  # imported, with rejects
    s = summary(result)
    assert (s["rejected"], s["unchanged"], s["deactivated"]) == (1, 19, 1)
    with psycopg.connect(major_dsn) as conn:
        assert conn.execute("SELECT sku FROM products WHERE NOT active").fetchall() == [("T-20",)]


# -- 15: verify --missing on a table with NULL keys --------------------------------------------


def test_verify_missing_on_a_table_with_null_keys(major_dsn, tmp_path):
    with psycopg.connect(major_dsn) as conn:
        conn.execute("CREATE TABLE codes (code text UNIQUE, name text,"
                     " active boolean NOT NULL DEFAULT true)")
        conn.execute("INSERT INTO codes VALUES ('a', 'x'), (NULL, 'y'), (NULL, 'z'), ('b', 'w')")
    path = write_file(tmp_path, "code,name\na,x\n")
    result = cli(major_dsn, "verify", path, "--table", "codes", "--key", "code",
                 "--missing", "deactivate", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["stale"] == 3
    assert sorted(report["stale_examples"], key=str) == [None, None, "b"]
    assert "3 rows the file no longer lists are still active: b, (NULL key), (NULL key)" in (
        result.stderr)
