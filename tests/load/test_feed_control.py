"""Issue 21, which rows and which columns a feed may change: --mode insert|update (the rows
it passes over counted as existing / not_found, listed by --changes), and --update,
--keep, --fill, --empty on existing rows.  On csvload's products and on a user's table
with typed columns and a composite key, on PostgreSQL 15 and 18, through MERGE and
through the WITH statement (a trigger on the table picks it), and into an empty table."""

from __future__ import annotations

import json
from datetime import date

import psycopg
import pytest
from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.db import execute, query
from helpers.files import write_file, write_toml

from csvload import webhook
from csvload.load.result import ImportResult
from csvload.table import schema

# A shop's own table: typed columns, a composite key, updated_at as Django declares it.
CATALOG_DDL = """
CREATE TABLE catalog (
    supplier text NOT NULL,
    sku varchar(32) NOT NULL,
    name text NOT NULL,
    description text,
    price numeric(10, 2) NOT NULL,
    stock integer,
    released date,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (supplier, sku)
)
"""
# A trigger that changes nothing, but makes csvload write through the WITH statement
# (the table statistics no longer count exactly what MERGE writes).
TRIGGER_DDL = """
CREATE FUNCTION catalog_noop() RETURNS trigger LANGUAGE plpgsql AS
  'BEGIN RETURN NEW; END';
CREATE TRIGGER catalog_noop BEFORE INSERT OR UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION catalog_noop()
"""
OLD = "2001-02-03 04:05:06+00"  # the seeded rows' updated_at: a touched row moves off it
SEED = (
    "supplier,sku,name,description,price,stock,released\n"
    "S1,A,Anvil,heavy,10.00,5,2020-01-01\n"
    "S1,B,Bolt,,2.50,100,\n"
    "S1,C,Crate,wooden,7.00,,2021-06-30\n"
    "S2,A,Axe,sharp,30.00,3,2019-12-31\n"
)


@pytest.fixture(params=["merge", "with"])
def path(request):
    """Which statement writes into a filled table: MERGE, or the WITH statement."""
    return request.param


@pytest.fixture
def catalog(major_dsn, path, tmp_path):
    """The user's table, seeded, every row's updated_at set back to OLD."""
    execute(major_dsn, CATALOG_DDL)
    if path == "with":
        execute(major_dsn, TRIGGER_DDL.format(table="catalog"))
    imported(major_dsn, write_file(tmp_path, SEED, "seed.csv"), "--table", "catalog",
             "--key", "supplier,sku")  # fmt: skip
    execute(major_dsn, "UPDATE catalog SET updated_at = %s", (OLD,))
    return major_dsn


@pytest.fixture
def shop(major_dsn, path, tmp_path):
    """csvload's own products, seeded, every row's updated_at set back to OLD."""
    with psycopg.connect(major_dsn) as c:
        schema.create_products(c)
    if path == "with":
        execute(major_dsn, TRIGGER_DDL.format(table="products"))
    seed = "sku,name,description\nA1,Anvil,heavy\nB2,Bolt,\nC3,Crate,wooden\n"
    imported(major_dsn, write_file(tmp_path, seed, "seed.csv"))
    execute(major_dsn, "UPDATE products SET updated_at = %s", (OLD,))
    return major_dsn


def rows(dsn: str) -> dict:
    """The catalog by key: (name, description, price, stock, released, touched)."""
    return {
        (r[0], r[1]): (r[2], r[3], str(r[4]), r[5], r[6], r[7])
        for r in query(
            dsn,
            "SELECT supplier, sku, name, description, price, stock, released,"
            " updated_at <> %s FROM catalog",
            (OLD,),
        )
    }


def products(dsn: str) -> dict:
    """products by sku: (name, description, touched)."""
    return {
        r[0]: (r[1], r[2], r[3])
        for r in query(
            dsn, "SELECT sku, name, description, updated_at <> %s FROM products", (OLD,)
        )
    }


def catalog_import(dsn, tmp_path, text, *args, exit_codes=(0,)):
    return imported(
        dsn, write_file(tmp_path, text, "feed.csv"), "--table", "catalog",
        "--key", "supplier,sku", *args, exit_codes=exit_codes,
    )  # fmt: skip


def counts(summary: dict, *names: str) -> tuple:
    return tuple(summary[n] for n in names)


# -- which rows ---------------------------------------------------------------------------


def test_mode_insert_adds_new_keys_and_leaves_existing_rows_as_they_are(catalog, tmp_path):
    before = rows(catalog)
    s = catalog_import(
        catalog, tmp_path,
        "supplier,sku,name,price\nS1,A,Renamed,99.00\nS1,B,Bolt,2.50\nS3,Z,Zip,1.00\n",
        "--mode", "insert",
    )  # fmt: skip
    assert counts(s, "inserted", "updated", "unchanged", "existing") == (1, 0, 0, 2)
    after = rows(catalog)
    assert {k: after[k] for k in before} == before  # not touched, not renamed
    assert after[("S3", "Z")][:3] == ("Zip", None, "1.00")


def test_mode_update_changes_existing_rows_and_creates_none(catalog, tmp_path):
    # A price-and-stock feed: name is NOT NULL without a default, and needs none.
    s = catalog_import(
        catalog, tmp_path,
        "supplier,sku,price,stock\nS1,A,11.00,4\nS1,B,2.50,100\nS9,X,1.00,1\n",
        "--mode", "update",
    )  # fmt: skip
    assert counts(s, "inserted", "updated", "unchanged", "not_found") == (0, 1, 1, 1)
    after = rows(catalog)
    assert ("S9", "X") not in after
    assert after[("S1", "A")] == ("Anvil", "heavy", "11.00", 4, date(2020, 1, 1), True)
    assert after[("S1", "B")][5] is False  # the same values: not touched


def test_mode_update_with_changes_lists_the_keys_not_found(shop, tmp_path):
    changes = tmp_path / "changes.csv"
    s = imported(
        shop, write_file(tmp_path, "sku,name\nA1,Anvil 2\nB2,Bolt\nX9,Unknown\n", "f.csv"),
        "--mode", "update", "--changes", str(changes),
    )  # fmt: skip
    assert counts(s, "inserted", "updated", "unchanged", "not_found") == (0, 1, 1, 1)
    assert changes.read_text().splitlines() == [
        "sku,change,columns", "A1,updated,name", 'X9,not_found,""',
    ]  # fmt: skip
    assert "X9" not in products(shop)


def test_mode_insert_with_changes_lists_the_existing_keys(shop, tmp_path):
    changes = tmp_path / "changes.csv"
    s = imported(
        shop, write_file(tmp_path, "sku,name\nA1,Anvil 2\nN1,New\n", "f.csv"),
        "--mode", "insert", "--changes", str(changes),
    )  # fmt: skip
    assert counts(s, "inserted", "existing") == (1, 1)
    assert sorted(changes.read_text().splitlines()[1:]) == ['A1,existing,""', 'N1,inserted,""']
    assert products(shop)["A1"] == ("Anvil", "heavy", False)


def test_mode_update_deactivates_the_rows_a_full_feed_lacks(shop, tmp_path):
    s = imported(
        shop, write_file(tmp_path, "sku,name\nA1,Anvil\nB2,Bolt\nX9,Unknown\n", "f.csv"),
        "--mode", "update", "--missing", "deactivate", "--max-missing", "1",
    )  # fmt: skip
    assert counts(s, "inserted", "unchanged", "not_found", "deactivated") == (0, 2, 1, 1)
    active = dict(query(shop, "SELECT sku, active FROM products"))
    assert active == {"A1": True, "B2": True, "C3": False}


def test_mode_update_deletes_the_rows_a_full_feed_lacks(shop, tmp_path):
    s = imported(
        shop, write_file(tmp_path, "sku,name\nA1,Anvil\nB2,Bolt\nX9,Unknown\n", "f.csv"),
        "--mode", "update", "--missing", "delete", "--max-missing", "1",
    )  # fmt: skip
    assert counts(s, "inserted", "unchanged", "not_found", "deleted") == (0, 2, 1, 1)
    assert sorted(query(shop, "SELECT sku FROM products")) == [("A1",), ("B2",)]


@pytest.mark.parametrize("changes", [False, True], ids=["plain", "changes"])
def test_mode_update_into_an_empty_table_inserts_nothing(products, tmp_path, changes):
    path = tmp_path / "changes.csv"
    extra = ("--changes", str(path)) if changes else ()
    s = imported(
        products, write_file(tmp_path, "sku,name\nA1,Anvil\nB2,Bolt\nA1,Anvil\n"),
        "--mode", "update", *extra,
    )  # fmt: skip
    assert counts(s, "inserted", "not_found", "duplicates") == (0, 2, 1)
    assert query(products, "SELECT count(*) FROM products") == [(0,)]
    if changes:
        assert sorted(path.read_text().splitlines()[1:]) == [
            'A1,not_found,""', 'B2,not_found,""',
        ]  # fmt: skip


def test_the_rows_passed_over_reach_the_json_summary_and_the_run_record(shop, tmp_path):
    result = quiet_cli(
        shop, "import", str(write_file(tmp_path, "sku,name\nA1,Anvil\nX9,Unknown\n")),
        "--mode", "update",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    result = quiet_cli(
        shop, "import", str(write_file(tmp_path, "sku,name\nA1,Anvil\nX9,Unknown\n")),
        "--mode", "insert", "--json",
    )  # fmt: skip
    assert json.loads(result.stdout)["existing"] == 1
    recorded = query(
        shop, "SELECT existing, not_found, options->>'mode' FROM csvload_runs"
        " WHERE options ? 'mode' ORDER BY started_at"
    )  # fmt: skip
    assert recorded[-2:] == [(0, 1, "update"), (1, 0, "insert")]


def test_the_summary_line_names_the_keys_not_found(shop, tmp_path):
    result = cli(
        shop, "import", str(write_file(tmp_path, "sku,name\nA1,Anvil\nX9,Unknown\n")),
        "--mode", "update",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert ", 1 not found in " in result.stderr.splitlines()[-1]


# -- which columns ------------------------------------------------------------------------


def test_update_changes_only_its_columns_on_existing_rows(catalog, tmp_path):
    s = catalog_import(
        catalog, tmp_path,
        "supplier,sku,name,description,price,stock\n"
        "S1,A,Renamed,new text,12.00,5\n"  # price changes: updated, name stays
        "S1,B,Renamed,new text,2.50,100\n"  # differs only outside --update: unchanged
        "S4,N,New,fresh,1.00,1\n",  # a new row gets every column
        "--update", "price,stock",
    )  # fmt: skip
    assert counts(s, "inserted", "updated", "unchanged") == (1, 1, 1)
    after = rows(catalog)
    assert after[("S1", "A")] == ("Anvil", "heavy", "12.00", 5, date(2020, 1, 1), True)
    assert after[("S1", "B")] == ("Bolt", "", "2.50", 100, None, False)
    assert after[("S4", "N")][:4] == ("New", "fresh", "1.00", 1)


def test_keep_writes_curated_names_into_new_rows_only(shop, tmp_path):
    s = imported(
        shop, write_file(tmp_path, "sku,name,description\nA1,ANVIL XL,heavy\n"
                         "B2,BOLT,shiny\nN1,Nail,small\n"),
        "--keep", "name",
    )  # fmt: skip
    assert counts(s, "inserted", "updated", "unchanged") == (1, 1, 1)
    after = products(shop)
    assert after["A1"] == ("Anvil", "heavy", False)  # only the kept name differed
    assert after["B2"] == ("Bolt", "shiny", True)
    assert after["N1"][:2] == ("Nail", "small")


def test_fill_writes_only_where_the_stored_value_is_null_or_empty(catalog, tmp_path):
    execute(catalog, "UPDATE catalog SET description = NULL WHERE sku = 'C'")
    s = catalog_import(
        catalog, tmp_path,
        "supplier,sku,name,description,price,stock,released\n"
        "S1,A,Anvil,pim text,10.00,5,2020-01-01\n"  # stored heavy: kept, unchanged
        "S1,B,Bolt,pim text,2.50,100,2022-02-02\n"  # '' and NULL: filled
        "S1,C,Crate,pim text,7.00,8,2021-06-30\n"  # NULL text and int: filled
        "S2,A,Axe,,30.00,,2019-12-31\n",  # an empty field fills nothing
        "--fill", "description,stock,released",
    )  # fmt: skip
    assert counts(s, "updated", "unchanged") == (2, 2)
    after = rows(catalog)
    assert after[("S1", "A")] == ("Anvil", "heavy", "10.00", 5, date(2020, 1, 1), False)
    assert after[("S1", "B")] == ("Bolt", "pim text", "2.50", 100, date(2022, 2, 2), True)
    assert after[("S1", "C")] == ("Crate", "pim text", "7.00", 8, date(2021, 6, 30), True)
    assert after[("S2", "A")] == ("Axe", "sharp", "30.00", 3, date(2019, 12, 31), False)


def test_empty_keep_leaves_the_stored_value(catalog, tmp_path):
    text = "supplier,sku,name,description,price,stock\nS1,A,Anvil,,10.00,\nS1,C,Crate,,8.00,\n"
    s = catalog_import(catalog, tmp_path, text, "--empty", "keep")
    assert counts(s, "updated", "unchanged") == (1, 1)
    after = rows(catalog)
    assert after[("S1", "A")] == ("Anvil", "heavy", "10.00", 5, date(2020, 1, 1), False)
    assert after[("S1", "C")][:4] == ("Crate", "wooden", "8.00", None)
    # Today's default, for comparison: the empty fields clear the stored ones.
    catalog_import(catalog, tmp_path, text, "--empty", "description=keep")
    after = rows(catalog)
    assert after[("S1", "A")][:4] == ("Anvil", "heavy", "10.00", None)


def test_empty_clear_sets_null_or_empty_and_rejects_a_not_null_value(catalog, tmp_path):
    s = catalog_import(
        catalog, tmp_path,
        "supplier,sku,name,description,price,stock\nS1,A,,,10.00,\nS1,C,Crate,x,,1\n",
        "--empty", "clear", "--max-errors", "1", exit_codes=(3,),
    )  # fmt: skip
    assert counts(s, "updated", "rejected") == (1, 1)
    after = rows(catalog)
    # name is NOT NULL text: ''; description allows NULL: NULL; so does stock.
    assert after[("S1", "A")] == ("", None, "10.00", None, date(2020, 1, 1), True)
    assert after[("S1", "C")] == ("Crate", "wooden", "7.00", None, date(2021, 6, 30), False)
    rejects = (tmp_path / "feed.csv.rejects.csv").read_text()
    assert "price is empty, and --empty clear cannot clear catalog.price: it is NOT NULL" in (
        rejects
    )


def test_rules_work_with_map_default_scope_and_touch(catalog, tmp_path):
    execute(catalog, "ALTER TABLE catalog ADD COLUMN checked_at timestamptz")
    s = catalog_import(
        catalog, tmp_path,
        "SKU,Title,Price\nA,Renamed,11.00\nB,Bolt,2.50\nN,New,3.00\n",
        "--map", "SKU=sku", "--map", "Title=name", "--map", "Price=price",
        "--scope", "supplier=S1", "--default", "released=2024-01-01",
        "--touch", "checked_at", "--keep", "name",
    )  # fmt: skip
    assert counts(s, "inserted", "updated", "unchanged") == (1, 1, 1)
    touched = dict(query(catalog, "SELECT sku, checked_at IS NOT NULL FROM catalog"
                                  " WHERE supplier = 'S1'"))  # fmt: skip
    assert touched == {"A": True, "B": False, "C": False, "N": True}
    after = rows(catalog)
    assert after[("S1", "A")][:3] == ("Anvil", "heavy", "11.00")
    assert after[("S1", "N")][0::4] == ("New", date(2024, 1, 1))


# -- usage errors -------------------------------------------------------------------------

ERRORS = [
    (("--mode", "insert", "--missing", "delete"),
     "--mode insert --missing delete: an insert-only feed leaves existing rows as they are,"
     " so it cannot delete the ones the file lacks (use --mode upsert or update)"),
    (("--mode", "insert", "--missing", "deactivate"),
     "--mode insert --missing deactivate: an insert-only feed leaves existing rows as they"
     " are, so it cannot deactivate the ones the file lacks (use --mode upsert or update)"),
    (("--mode", "insert", "--keep", "name"),
     "--mode insert --keep: an insert-only feed never changes existing rows, and --keep says"
     " how to change them (drop it, or use --mode upsert)"),
    (("--mode", "update", "--default", "released=2024-01-01"),
     "--mode update --default released=...: an update-only feed creates no rows, and"
     " --default gives new rows a value (drop it)"),
    (("--keep", "sku"),
     "--keep sku: sku is a key column, which names the row and is never changed on it (drop"
     " it from --keep)"),
    (("--empty", "supplier=keep"),
     "--empty supplier: supplier is a key column, which names the row and is never changed"
     " on it (drop it from --empty)"),
    (("--update", "price", "--keep", "price"),
     "--update price and --keep price contradict each other (name each column in one of"
     " --update, --keep and --fill)"),
    (("--keep", "name", "--fill", "name"),
     "--keep name and --fill name contradict each other (name each column in one of"
     " --update, --keep and --fill)"),
    (("--fill", "description", "--empty", "description=clear"),
     "--fill description and --empty description=clear contradict each other (--fill never"
     " writes an empty field)"),
    (("--keep", "name", "--empty", "name=clear"),
     "--empty name=clear: name is never changed on existing rows (--keep name), so what its"
     " empty field means cannot matter (drop one of them)"),
    (("--update", "price", "--empty", "name=keep"),
     "--empty name=keep: name is never changed on existing rows (--update leaves name out),"
     " so what its empty field means cannot matter (drop one of them)"),
    (("--fill", "colour"),
     "--fill colour: catalog has no such column 'colour' (writable columns: supplier, sku,"
     " name, description, price, stock, released, updated_at)"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_combinations_that_make_no_sense_are_usage_errors(dsn, tmp_path, args, message):
    execute(dsn, CATALOG_DDL)
    execute(dsn, "INSERT INTO catalog VALUES ('S1', 'A', 'Anvil', NULL, 1, 1, NULL, %s)",
            (OLD,))  # fmt: skip
    before = query(dsn, "SELECT c, xmin::text FROM catalog c")
    result = quiet_cli(
        dsn, "import", str(write_file(tmp_path, "supplier,sku,name,price\nS1,A,X,2\n")),
        "--table", "catalog", "--key", "supplier,sku", *args,
    )  # fmt: skip
    assert result.exit_code == 2
    assert error_line(result) == f"Error: {message}"
    assert query(dsn, "SELECT c, xmin::text FROM catalog c") == before


def test_a_bad_empty_rule_is_refused_by_its_type(dsn, tmp_path):
    result = quiet_cli(dsn, "import", str(write_file(tmp_path, "sku,name\n")), "--empty", "x")
    assert result.exit_code == 2
    assert "'x' is not keep, clear or COLUMN=keep|clear" in result.stderr


# -- csvload.toml -------------------------------------------------------------------------


def test_a_feed_in_csvload_toml_sets_the_rules(catalog, tmp_path, monkeypatch):
    write_toml(
        tmp_path,
        """
        [feeds.prices]
        table = "catalog"
        key = ["supplier", "sku"]
        mode = "update"
        update = ["price", "stock"]
        fill = "description"
        empty = ["keep", {stock = "clear"}]
        """,
    )
    monkeypatch.chdir(tmp_path)
    result = quiet_cli(
        catalog, "import", "--feed", "prices", "--json",
        str(write_file(tmp_path, "supplier,sku,name,description,price,stock\n"
                                 "S1,A,X,,,\nS1,B,X,filled,3.00,7\nS9,Q,Q,,1.00,1\n")),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)
    assert counts(s, "inserted", "updated", "not_found") == (0, 2, 1)
    after = rows(catalog)
    # price empty: kept; stock empty: cleared; name outside --update: kept.
    assert after[("S1", "A")][:4] == ("Anvil", "heavy", "10.00", None)
    assert after[("S1", "B")][:4] == ("Bolt", "filled", "3.00", 7)
    options = query(catalog, "SELECT options FROM csvload_runs ORDER BY started_at DESC"
                             " LIMIT 1")[0][0]  # fmt: skip
    assert (options["mode"], options["update"], options["empty"]) == (
        "update", ["price", "stock"], [["", "keep"], ["stock", "clear"]],
    )  # fmt: skip


def test_a_feed_value_is_checked_like_the_flag(dsn, tmp_path, monkeypatch):
    write_toml(tmp_path, '[feeds.bad]\nmode = "merge"\n')
    monkeypatch.chdir(tmp_path)
    result = quiet_cli(dsn, "import", "--feed", "bad", str(write_file(tmp_path, "sku\n")))
    assert result.exit_code == 2
    assert error_line(result).endswith("mode must be one of upsert, insert, update, not \"merge\"")


def test_the_webhook_payload_carries_the_rows_passed_over():
    summary = ImportResult("succeeded", "f.csv", rows_read=5, updated=2, not_found=3).as_dict()
    body = webhook.build_event(
        webhook.COMPLETED, summary, file=None, database={}, run_id=None, error=None
    )
    assert (body["updated"], body["existing"], body["not_found"]) == (2, 0, 3)
