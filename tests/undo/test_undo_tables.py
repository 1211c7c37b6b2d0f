"""Issue 22 on a user's table: typed columns, a composite key, a CHECK, foreign keys both
ways and a trigger (which fires for the rows the undo writes), with and without the
trigger (the WITH statement records; without it PostgreSQL 18's MERGE does).  Full feeds
that deactivate and delete, --scope, the column rules, conflicts by hand and by a later
import, a foreign key blocking a deletion, --skip-conflicts and --dry-run.  After each case
the whole table is compared with a snapshot taken before the original import."""

from __future__ import annotations

import csv
import json

import psycopg
import pytest
from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.db import execute, query
from helpers.files import write_file
from helpers.undo import ITEM_DDL, ITEM_TRIGGER, undo, undone
from psycopg import conninfo

HEADER = "supplier,sku,name,price,seen,weight"
ARGS = ("--table", "item", "--key", "supplier,sku")


def snapshot(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT t::text FROM item t ORDER BY supplier, sku")


def rows(*lines: str) -> str:
    return HEADER + "\n" + "".join(line + "\n" for line in lines)


def seed(dsn, tmp_path, n: int = 20, supplier: str = "ACME") -> list[tuple]:
    lines = [f"{supplier},S{i},Name {i},{i}.50,2026-01-0{1 + i % 9},{i}.25" for i in range(n)]
    imported(dsn, write_file(tmp_path, rows(*lines), f"seed-{supplier}.csv"), *ARGS)
    return snapshot(dsn)


def import_(dsn, tmp_path, *lines: str, args=(), name="bad.csv", exit_codes=(0,)) -> dict:
    return imported(dsn, write_file(tmp_path, rows(*lines), name), *ARGS, *args,
                    exit_codes=exit_codes)  # fmt: skip


def test_a_swapped_file_is_taken_back(item_dsn, tmp_path):
    before = seed(item_dsn, tmp_path)
    # The supplier swapped name and price... and sent two new products.
    bad = import_(
        item_dsn,
        tmp_path,
        "ACME,S1,1.50,99,2026-02-01,1e-7",
        "ACME,S2,2.50,98,,0.1",
        "ACME,N1,New,3,2026-03-03,2",
        "ACME,N2,Newer,4,,",
    )
    assert (bad["inserted"], bad["updated"]) == (2, 2)
    done = undone(item_dsn, bad["run_id"])
    assert (done["deleted"], done["restored"], done["reinserted"]) == (2, 2, 0)
    assert snapshot(item_dsn) == before


def test_the_trigger_fires_for_the_rows_the_undo_writes(major_dsn, tmp_path):
    execute(major_dsn, ITEM_DDL + ITEM_TRIGGER)
    seed(major_dsn, tmp_path)
    bad = import_(major_dsn, tmp_path, "ACME,S1,Other,1.50,,", "ACME,N1,New,3,,")
    execute(major_dsn, "TRUNCATE item_audit")
    undone(major_dsn, bad["run_id"])
    assert sorted(query(major_dsn, "SELECT op, sku FROM item_audit")) == [
        ("DELETE", "N1"),
        ("UPDATE", "S1"),
    ]


@pytest.mark.parametrize("missing", ["deactivate", "delete"])
def test_a_full_feed_that_deactivated_or_deleted_rows(item_dsn, tmp_path, missing):
    seed(item_dsn, tmp_path, 10, "BOLT")  # another supplier's rows, out of --scope
    before = seed(item_dsn, tmp_path, 20)
    # The supplier's nightly feed: its whole range, without the supplier column.
    listed = [f"S{i},Name {i},{i}.50,2026-01-0{1 + i % 9},{i}.25" for i in range(3, 20)]
    listed[0] = "S3,Renamed,3.50,2026-01-04,3.25"
    text = "sku,name,price,seen,weight\n" + "".join(f"{x}\n" for x in [*listed, "N1,New,1,,"])
    feed = imported(
        item_dsn, write_file(tmp_path, text, "feed.csv"), *ARGS, "--missing", missing,
        "--max-missing", "50%", "--scope", "supplier=ACME",
    )  # fmt: skip
    gone = feed["deactivated"] if missing == "deactivate" else feed["deleted"]
    assert (gone, feed["inserted"], feed["updated"]) == (3, 1, 1)
    done = undone(item_dsn, feed["run_id"])
    assert done["deleted"] == 1
    if missing == "deactivate":
        assert (done["restored"], done["reactivated"]) == (4, 3)
    else:
        assert (done["restored"], done["reinserted"]) == (1, 3)
    assert snapshot(item_dsn) == before


def test_the_sessions_date_time_and_float_settings_do_not_matter(item_dsn, tmp_path):
    before = seed(item_dsn, tmp_path)
    settings = " -c DateStyle=SQL,DMY -c TimeZone=Asia/Tokyo -c extra_float_digits=-2"
    options = conninfo.conninfo_to_dict(item_dsn)["options"] + settings
    odd = conninfo.make_conninfo(item_dsn, options=options)
    bad = import_(odd, tmp_path, "ACME,S1,Other,1.50,03/02/2026,0.1", "ACME,S2,Other,2.50,,3.3")
    assert query(odd, "SELECT seen::text FROM item WHERE sku = 'S1'") == [("03/02/2026",)]
    undone(item_dsn, bad["run_id"])
    assert snapshot(item_dsn) == before


def test_the_column_rules_are_taken_back(item_dsn, tmp_path):
    before = seed(item_dsn, tmp_path)
    run = import_(
        item_dsn,
        tmp_path,
        "ACME,S1,Ignored,7.00,,",
        "ACME,S2,Ignored,,,",
        "ACME,N9,Kept new,1,,",
        args=("--update", "price,weight", "--empty", "keep"),
    )
    assert run["updated"] == 1
    undone(item_dsn, run["run_id"])
    assert snapshot(item_dsn) == before


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_an_insert_only_or_update_only_feed(item_dsn, tmp_path, mode):
    before = seed(item_dsn, tmp_path)
    run = import_(
        item_dsn, tmp_path, "ACME,S1,Other,1.50,,", "ACME,N1,New,1,,", args=("--mode", mode)
    )
    assert (run["inserted"], run["updated"]) == ((1, 0) if mode == "insert" else (0, 1))
    undone(item_dsn, run["run_id"])
    assert snapshot(item_dsn) == before


def test_a_full_feed_with_changes(item_dsn, tmp_path):
    """--changes and the record come from the same statement (the WITH statement on 15,
    and on 18 too, where MERGE would COPY its changes out)."""
    before = seed(item_dsn, tmp_path)
    listed = [f"ACME,S{i},Name {i},{i}.50,2026-01-0{1 + i % 9},{i}.25" for i in range(1, 20)]
    changes = tmp_path / "changes.csv"
    run = import_(item_dsn, tmp_path, *listed[1:], "ACME,S1,Renamed,1.50,,", "ACME,N1,New,1,,",
                  args=("--missing", "deactivate", "--changes", str(changes)))  # fmt: skip
    assert (run["deactivated"], run["inserted"], run["updated"]) == (1, 1, 1)
    assert len(changes.read_text().splitlines()) == 4
    undone(item_dsn, run["run_id"])
    assert snapshot(item_dsn) == before


def test_a_row_changed_by_hand_is_a_conflict(item_dsn, tmp_path):
    seed(item_dsn, tmp_path)
    bad = import_(item_dsn, tmp_path, "ACME,S1,Wrong,1.50,,", "ACME,S2,Wrong,2.50,,",
                  "ACME,N1,New,1,,")  # fmt: skip
    execute(item_dsn, "UPDATE item SET name = 'by hand' WHERE sku = 'S2'")
    execute(item_dsn, "UPDATE item SET price = 5 WHERE sku = 'N1'")
    after = snapshot(item_dsn)
    result = undo(item_dsn, bad["run_id"])
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: undo of run {bad['run_id']}: 2 rows of item conflict (ACME,N1: changed since"
        " the run; ACME,S2: changed since the run); nothing was changed (--skip-conflicts"
        " reverts the others and lists these in a file)"
    )
    assert snapshot(item_dsn) == after

    listed = tmp_path / "conflicts.csv"
    done = undone(item_dsn, bad["run_id"], "--skip-conflicts", "--conflicts", str(listed))
    assert (done["restored"], done["deleted"], done["conflicts"]) == (1, 0, 2)
    with listed.open(newline="") as f:
        assert list(csv.reader(f)) == [
            ["key", "change", "reason"],
            ["ACME,N1", "inserted", "changed since the run"],
            ["ACME,S2", "updated", "changed since the run"],
        ]
    names = dict(query(item_dsn, "SELECT sku, name FROM item WHERE sku IN ('S1', 'S2', 'N1')"))
    assert names == {"S1": "Name 1", "S2": "by hand", "N1": "New"}


def test_a_later_import_of_the_same_rows_is_a_conflict(item_dsn, tmp_path):
    before = seed(item_dsn, tmp_path)
    first = import_(item_dsn, tmp_path, "ACME,S1,First,1.50,,", "ACME,S5,First,5.50,,")
    between = snapshot(item_dsn)
    second = import_(item_dsn, tmp_path, "ACME,S1,Second,1.50,,", "ACME,S9,Second,9.50,,",
                     name="later.csv")  # fmt: skip
    result = undo(item_dsn, first["run_id"])
    assert result.exit_code == 1
    assert "1 row of item conflict (ACME,S1: changed since the run)" in error_line(result)
    # The newer one first, then the older one: back where we started.
    undone(item_dsn, second["run_id"])
    assert snapshot(item_dsn) == between
    undone(item_dsn, first["run_id"])
    assert snapshot(item_dsn) == before


def test_an_older_run_after_a_newer_one_where_rows_do_not_overlap(item_dsn, tmp_path):
    seed(item_dsn, tmp_path)
    first = import_(item_dsn, tmp_path, "ACME,S1,First,1.50,,", "ACME,N1,New,1,,")
    second = import_(item_dsn, tmp_path, "ACME,S2,Second,2.50,,", name="later.csv")
    undone(item_dsn, first["run_id"])
    names = dict(query(item_dsn, "SELECT sku, name FROM item WHERE sku IN ('S1', 'S2', 'N1')"))
    assert names == {"S1": "Name 1", "S2": "Second"}
    assert second


def test_a_foreign_key_blocking_a_deletion_is_a_conflict(item_dsn, tmp_path):
    seed(item_dsn, tmp_path)
    bad = import_(item_dsn, tmp_path, "ACME,N1,New,1,,", "ACME,N2,New,2,,", "ACME,S3,Wrong,3.50,,")
    execute(item_dsn, "INSERT INTO order_line (supplier, sku) VALUES ('ACME', 'N2')")
    after = snapshot(item_dsn)
    result = undo(item_dsn, bad["run_id"])
    assert result.exit_code == 1
    assert (
        "1 row of item conflict (ACME,N2: referenced by order_line (foreign key"
        " order_line_item))" in error_line(result)
    )
    assert snapshot(item_dsn) == after
    done = undone(item_dsn, bad["run_id"], "--skip-conflicts", "--conflicts",
                  str(tmp_path / "c.csv"))  # fmt: skip
    assert (done["deleted"], done["restored"], done["conflicts"]) == (1, 1, 1)
    assert query(item_dsn, "SELECT count(*) FROM item WHERE sku = 'N2'") == [(1,)]


def test_dry_run_says_what_would_be_reverted_and_changes_nothing(item_dsn, tmp_path):
    seed(item_dsn, tmp_path)
    bad = import_(item_dsn, tmp_path, "ACME,S1,Wrong,1.50,,", "ACME,N1,New,1,,", "ACME,N2,New,1,,")
    execute(item_dsn, "UPDATE item SET name = 'by hand' WHERE sku = 'N2'")
    after = snapshot(item_dsn)
    result = quiet_cli(item_dsn, "undo", bad["run_id"], "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    done = json.loads(result.stdout)
    assert (done["status"], done["deleted"], done["restored"], done["conflicts"]) == (
        "dry_run",
        1,
        1,
        1,
    )
    assert done["conflict_examples"] == [["ACME,N2", "changed since the run"]]
    assert snapshot(item_dsn) == after
    result = cli(item_dsn, "undo", bad["run_id"], "--dry-run")
    assert result.stderr.startswith(f"{tmp_path / 'bad.csv'} into item: run {bad['run_id']}")
    assert (
        "would revert: 1 deleted, 1 restored (0 reactivated), 0 re-inserted, 1 conflicts"
        " (ACME,N2: changed since the run)" in result.stderr
    )


def test_a_key_with_a_case_insensitive_icu_collation(major_dsn, tmp_path):
    try:
        execute(major_dsn, "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2',"
                           " deterministic = false)")  # fmt: skip
    except psycopg.Error as e:
        pytest.skip(f"the server has no ICU collations: {e}")
    execute(major_dsn, "CREATE TABLE u (sku text COLLATE ci UNIQUE, name text)")
    fill = imported(major_dsn, write_file(tmp_path, "sku,name\nA-1,a\nB-2,b\n"), "--table", "u")
    before = query(major_dsn, "SELECT sku, name FROM u ORDER BY sku")
    bad = imported(major_dsn, write_file(tmp_path, "sku,name\na-1,x\nC-3,c\n", "bad.csv"),
                   "--table", "u")  # fmt: skip
    undone(major_dsn, bad["run_id"])
    assert query(major_dsn, "SELECT sku, name FROM u ORDER BY sku") == before
    undone(major_dsn, fill["run_id"])
    assert query(major_dsn, "SELECT count(*) FROM u") == [(0,)]
