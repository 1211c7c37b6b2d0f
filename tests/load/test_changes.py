"""Issue 14, the changes file (--changes PATH): its header and rows (inserted, updated with the
changed columns, deactivated, reactivated, deleted; unchanged keys absent), a composite key,
and that it appears only when the import commits: never after a failure, never half-written,
no temp file left.  A 200k-key changes file checked for correctness."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from helpers.cli import cli
from helpers.db import execute, written_checksum
from helpers.feeds import ITEM_DDL
from helpers.files import PRESET_SAMPLES, temp_files, write_file

ITEM = ("--table", "feed_item", "--key", "supplier,sku")


def read_changes(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    """The header and the rows, sorted."""
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    return rows[0], sorted(tuple(r) for r in rows[1:])


@pytest.fixture
def dsn(major_dsn):
    """Every test here on PostgreSQL 15 and 18: a full feed is sql.merge()'s WITH statement
    before 17 (18 with --changes) and one MERGE with WHEN NOT MATCHED BY SOURCE after."""
    return major_dsn


@pytest.fixture
def items(dsn):
    execute(dsn, ITEM_DDL)
    return dsn


def test_every_kind_of_change_one_row_per_key_and_unchanged_keys_absent(products, tmp_path):
    seed = write_file(tmp_path, "sku,name\na,A\nb,B\nc,C\nd,D\ne,E\n'q\"1',Q\n", "seed.csv")
    assert cli(products, "import", str(seed), "--quiet").exit_code == 0
    execute(products, "UPDATE products SET active = false WHERE sku IN ('c', 'e')")
    # a renamed (spelled in upper case: the same key), b unchanged, c reactivated, d missing,
    # e inactive and missing (already inactive: no change), f new, one with a comma and quotes
    text = 'sku,name\nA,A2\nb,B\nc,C\nf,F\n"x,""y",X\n\'q"1\',Q\n'
    changes = tmp_path / "changes.csv"
    result = cli(products, "import", str(write_file(tmp_path, text, "feed.csv")), "--missing",
                 "deactivate",
                 "--max-missing", "1", "--changes", str(changes), "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["changes_file"] == str(changes)
    assert changes.read_text().splitlines()[0] == "sku,change,columns"
    header, rows = read_changes(changes)
    assert header == ["sku", "change", "columns"]
    assert rows == [
        # The key as the file spells it now: lower(sku) matched it, and its new spelling
        # was written, so sku is one of the changed columns.
        ("A", "updated", "sku name"),
        ("c", "reactivated", ""),
        ("d", "deactivated", ""),
        ("f", "inserted", ""),
        ('x,"y', "inserted", ""),
    ]
    assert temp_files(tmp_path) == []


def test_a_first_import_lists_every_key_as_inserted(products, tmp_path):
    changes = tmp_path / "changes.csv"
    path = write_file(tmp_path, "sku,name\na,A\nb,B\nA,A again\n", "feed.csv")
    result = cli(products, "import", str(path), "--changes", str(changes), "--quiet")
    assert result.exit_code == 0, result.stderr
    assert read_changes(changes) == (
        ["sku", "change", "columns"], [("A", "inserted", ""), ("b", "inserted", "")]
    )


def test_an_import_that_changes_nothing_writes_the_header_alone(products, tmp_path):
    path = write_file(tmp_path, "sku,name\na,A\nb,B\n", "feed.csv")
    assert cli(products, "import", str(path), "--quiet").exit_code == 0
    changes = tmp_path / "changes.csv"
    result = cli(products, "import", str(path), "--changes", str(changes), "--missing",
                 "deactivate", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert changes.read_text() == "sku,change,columns\n"


def test_composite_key_updated_columns_space_separated_and_deleted(items, tmp_path):
    seed = "supplier,sku,name,price\nACME,1,One,1.00\nACME,2,Two,2.00\nBOLT,1,One,1.00\n" \
           "ACME,3,Three,3.00\nACME,4,Four,4.00\n"
    assert cli(items, "import", str(write_file(tmp_path, seed, "seed.csv")), *ITEM, "--quiet")\
        .exit_code == 0
    # ACME,1 unchanged; ACME,2 name and price; ACME,3 price only; ACME,4 and BOLT,1 missing
    text = "price,sku,supplier,name\n1.00,1,ACME,One\n2.50,2,ACME,Deux\n3.10,3,ACME,Three\n" \
           "5,5,ACME,Five\n"
    changes = tmp_path / "changes.csv"
    result = cli(items, "import", str(write_file(tmp_path, text, "feed.csv")), *ITEM, "--missing",
                 "delete",
                 "--max-missing", "2", "--changes", str(changes), "--quiet")
    assert result.exit_code == 0, result.stderr
    header, rows = read_changes(changes)
    assert header == ["supplier", "sku", "change", "columns"]
    assert rows == [
        ("ACME", "2", "updated", "name price"),  # in the table's column order
        ("ACME", "3", "updated", "price"),
        ("ACME", "4", "deleted", ""),
        ("ACME", "5", "inserted", ""),
        ("BOLT", "1", "deleted", ""),
    ]


def test_scope_changes_list_the_scope_column_of_the_key(items, tmp_path):
    execute(items, "INSERT INTO feed_item (supplier, sku, name) VALUES"
                   " ('acme', '1', 'a1'), ('acme', '2', 'a2'), ('bolt', '1', 'b1')")
    changes = tmp_path / "changes.csv"
    path = write_file(tmp_path, "sku,name\n1,A1\n3,a3\n", "feed.csv")
    result = cli(items, "import", str(path), "--table", "feed_item", "--scope",
                 "supplier=acme", "--key", "supplier,sku", "--missing", "deactivate",
                 "--max-missing", "1", "--changes", str(changes), "--quiet")
    assert result.exit_code == 0, result.stderr
    assert read_changes(changes) == (
        ["supplier", "sku", "change", "columns"],
        [("acme", "1", "updated", "name"), ("acme", "2", "deactivated", ""),
         ("acme", "3", "inserted", "")],
    )


def test_a_rejected_row_is_not_a_change(items, tmp_path):
    seed = "supplier,sku,name,price\nACME,1,One,1.00\nACME,2,Two,2.00\n"
    assert cli(items, "import", str(write_file(tmp_path, seed, "seed.csv")), *ITEM, "--quiet")\
        .exit_code == 0
    text = "supplier,sku,name,price\nACME,1,Uno,1.00\nACME,2,Two,abc\nACME,3,Three,x\n" \
           "ACME,4,Four,4\n"
    changes = tmp_path / "changes.csv"
    result = cli(items, "import", str(write_file(tmp_path, text, "feed.csv")), *ITEM, "--missing",
                 "deactivate",
                 "--max-errors", "2", "--changes", str(changes), "--quiet")
    assert result.exit_code == 3, result.stderr  # done, with rejected rows
    assert read_changes(changes)[1] == [("ACME", "1", "updated", "name"),
                                        ("ACME", "4", "inserted", "")]


# -- only when the transaction commits ---------------------------------------------------------

OLD = "sku,change,columns\nold,inserted,\n"


def seeded(dsn: str, tmp_path: Path, n: int = 20) -> None:
    text = "sku,name\n" + "".join(f"k{i},N{i}\n" for i in range(n))
    assert cli(dsn, "import", str(write_file(tmp_path, text, "seed.csv")), "--quiet").exit_code == 0


@pytest.mark.parametrize("earlier", [False, True], ids=["none", "earlier_file"])
def test_no_changes_file_when_the_guard_trips(products, tmp_path, earlier):
    seeded(products, tmp_path)
    changes = tmp_path / "changes.csv"
    if earlier:
        changes.write_text(OLD)
    before = written_checksum(products, "products")
    path = write_file(tmp_path, "sku,name\nk0,renamed\nnew,N\n", "feed.csv")
    result = cli(products, "import", str(path), "--missing", "deactivate", "--changes",
                 str(changes), "--quiet")
    assert result.exit_code == 1
    assert "19 rows of products would be deactivated" in result.stderr
    assert written_checksum(products, "products") == before
    assert (changes.read_text() == OLD) if earlier else not changes.exists()
    assert temp_files(tmp_path) == []


def test_no_changes_file_when_too_many_rows_are_rejected(products, tmp_path):
    seeded(products, tmp_path)
    changes = tmp_path / "changes.csv"
    changes.write_text(OLD)
    before = written_checksum(products, "products")
    path = write_file(tmp_path, "sku,name,active\nk0,renamed,true\nk1,x,maybe\nk2,x,perhaps\n",
                      "feed.csv")
    result = cli(products, "import", str(path), "--max-errors", "1", "--changes",
                 str(changes), "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith(
        "Error: 2 rows rejected, more than --max-errors 1; nothing was imported"
    )
    assert written_checksum(products, "products") == before
    assert changes.read_text() == OLD
    assert temp_files(tmp_path) == []


def test_no_changes_file_when_the_commit_fails_after_it_was_filled(products, tmp_path):
    """A deferred foreign key on another table, broken by a trigger on products, fails the
    COMMIT itself: the changes are in the temp file by then, and must go with it."""
    seeded(products, tmp_path, 2000)
    execute(
        products,
        "CREATE TABLE shelf (id int PRIMARY KEY);"
        " CREATE TABLE audit (shelf int REFERENCES shelf DEFERRABLE INITIALLY DEFERRED);"
        " CREATE FUNCTION audit_it() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN INSERT INTO audit VALUES (-1); RETURN NULL; END$$;"
        " CREATE TRIGGER audit_it AFTER UPDATE ON products"
        "  FOR EACH STATEMENT EXECUTE FUNCTION audit_it()",
    )
    changes = tmp_path / "changes.csv"
    changes.write_text(OLD)
    before = written_checksum(products, "products")
    text = "sku,name\n" + "".join(f"k{i},renamed {i}\n" for i in range(2000))
    path = write_file(tmp_path, text, "feed.csv")
    result = cli(products, "import", str(path), "--changes", str(changes), "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f'Error: {path}: insert or update on table "audit" violates foreign key constraint'
        ' "audit_shelf_fkey"'
    ]
    assert written_checksum(products, "products") == before
    assert changes.read_text() == OLD
    assert temp_files(tmp_path) == []


def test_a_changes_file_that_cannot_be_written_fails_the_import(products, tmp_path):
    seeded(products, tmp_path)
    before = written_checksum(products, "products")
    changes = tmp_path / "no" / "such" / "changes.csv"
    result = cli(products, "import", str(write_file(tmp_path, "sku,name\nk0,x\n", "feed.csv")),
                 "--changes",
                 str(changes), "--quiet")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {changes}: cannot write the changes file: No such file or directory;"
        " nothing was imported"
    ]
    assert written_checksum(products, "products") == before


def test_a_dry_run_writes_no_changes_file(products, tmp_path):
    seeded(products, tmp_path)
    changes = tmp_path / "changes.csv"
    result = cli(products, "import", str(write_file(tmp_path, "sku,name\nk0,x\n", "feed.csv")),
                 "--dry-run",
                 "--changes", str(changes), "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["changes_file"] is None
    assert not changes.exists()
    assert temp_files(tmp_path) == []


# -- a large changes file ----------------------------------------------------------------------


def test_200k_changed_keys(products, tmp_path):
    """55k rows; the file renames 50k of them, adds 145k and lacks 5k (deactivated)."""
    execute(
        products,
        "INSERT INTO products (sku, name) SELECT 'S' || i, 'old' FROM generate_series(0, 54999) i",
    )
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("sku,name\n")
        f.writelines(f"S{i},new\n" for i in range(50_000))
        f.writelines(f"N{i},new\n" for i in range(145_000))
    changes = tmp_path / "changes.csv"
    result = cli(products, "import", str(path), "--missing", "deactivate", "--changes",
                 str(changes), "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)
    assert (s["inserted"], s["updated"], s["deactivated"]) == (145_000, 50_000, 5_000)
    with changes.open(newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["sku", "change", "columns"]
        seen: dict[str, tuple[str, str]] = {}
        for sku, change, columns in reader:
            assert sku not in seen, sku
            seen[sku] = (change, columns)
    assert len(seen) == 200_000
    assert all(seen[f"S{i}"] == ("updated", "name") for i in range(50_000))
    assert all(seen[f"N{i}"] == ("inserted", "") for i in range(145_000))
    assert all(seen[f"S{i}"] == ("deactivated", "") for i in range(50_000, 55_000))
    assert temp_files(tmp_path) == []


def test_a_key_repeated_in_the_file_is_one_change(products, tmp_path):
    seeded(products, tmp_path, 3)
    changes = tmp_path / "changes.csv"
    path = write_file(tmp_path, "sku,name\nk0,x\nK0,y\nk1,N1\nk1,z\nnew,a\nNEW,b\nk2,N2\n",
                      "feed.csv")
    result = cli(products, "import", str(path), "--changes", str(changes), "--json",
                 "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["duplicates"] == 3
    # The last occurrence of each key is the one written, and listed.
    assert read_changes(changes)[1] == [
        ("K0", "updated", "sku name"), ("NEW", "inserted", ""), ("k1", "updated", "name")
    ]


def test_a_preset_import_lists_no_skipped_rows(products, tmp_path):
    template = PRESET_SAMPLES / "shopify_product_template.csv"
    changes = tmp_path / "changes.csv"
    result = cli(products, "import", str(template), "--preset", "shopify", "--changes",
                 str(changes), "--quiet")
    assert result.exit_code == 0, result.stderr
    header, rows = read_changes(changes)
    assert header == ["sku", "change", "columns"]
    assert len(rows) == 16 and {r[1] for r in rows} == {"inserted"}
    assert "" not in {r[0] for r in rows}
    # The hat archived in the shop: a re-import where its Status became active again.
    again = tmp_path / "template.csv"
    again.write_bytes(template.read_bytes().replace(b",archived", b",active"))
    result = cli(products, "import", str(again), "--preset", "shopify", "--missing",
                 "deactivate", "--changes", str(changes), "--quiet")
    assert result.exit_code == 0, result.stderr
    assert read_changes(changes)[1] == [("HAT_GRY_275", "reactivated", "active")]
