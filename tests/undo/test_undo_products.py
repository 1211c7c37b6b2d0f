"""Issue 22, `csvload undo` on csvload's own products: a bad file taken back the next
morning and the fill of the empty table after it (PostgreSQL 15 and 18); the refusals
(twice, an undo, --no-undo, in csvload.toml too), --last with --table and --feed, the run
history (an undo is a run), `runs` and `runs prune`, the import.undone webhook.  Each case
compares the whole table with a snapshot."""

from __future__ import annotations

import json

import psycopg
from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.db import query, table_checksum
from helpers.files import write_file, write_toml
from helpers.presets import write_shopify
from helpers.undo import undo, undone

from csvload import webhook


def csv(rows: dict[str, str]) -> str:
    return "sku,name,description\n" + "".join(f"{k},{v},d {k}\n" for k, v in rows.items())


GOOD = {f"A-{i}": f"n{i}" for i in range(50)}
BAD = {f"A-{i}": f"swapped {i}" for i in range(0, 50, 5)} | {"NEW-1": "x", "NEW-2": "y"}


def test_a_bad_file_is_taken_back_and_then_the_fill(major_products, tmp_path):
    dsn = major_products
    empty = table_checksum(dsn)
    good = imported(dsn, write_file(tmp_path, csv(GOOD)))
    before = table_checksum(dsn)
    summary = imported(dsn, write_file(tmp_path, csv(BAD), "bad.csv"))
    assert (summary["inserted"], summary["updated"]) == (2, 10)
    assert table_checksum(dsn) != before

    done = undone(dsn, summary["run_id"])
    assert (done["deleted"], done["restored"], done["conflicts"]) == (2, 10, 0)
    assert table_checksum(dsn) == before
    # The fill keeps its keys packed, not a row each; the rows the undo put back are still
    # the fill's (csvload_undo_stamps).
    assert query(dsn, "SELECT change, count(*) FROM csvload_undo GROUP BY change") == [("F", 1)]
    assert undone(dsn, good["run_id"])["deleted"] == 50
    assert table_checksum(dsn) == empty


def test_a_row_written_since_the_fill_is_a_conflict(products, tmp_path):
    good = imported(products, write_file(tmp_path, csv(GOOD)))
    with psycopg.connect(products) as c:
        c.execute("UPDATE products SET name = name WHERE sku = 'A-7'")
        c.execute("INSERT INTO products (sku, name) VALUES ('BY-HAND', 'h')")
    result = undo(products, good["run_id"])
    assert result.exit_code == 1
    assert "1 row of products conflict (A-7: written since the run)" in error_line(result)
    done = undone(products, good["run_id"], "--skip-conflicts", "--conflicts",
                  str(tmp_path / "c.csv"))  # fmt: skip
    assert (done["deleted"], done["conflicts"]) == (49, 1)
    assert query(products, "SELECT sku FROM products ORDER BY sku") == [("A-7",), ("BY-HAND",)]


def test_refused_twice_and_an_undo_and_without_a_record(products, tmp_path):
    imported(products, write_file(tmp_path, csv(GOOD)))
    bad = imported(products, write_file(tmp_path, csv(BAD), "bad.csv"))
    done = undone(products, bad["run_id"][:8])  # a prefix will do
    after = table_checksum(products)

    again = undo(products, bad["run_id"])
    assert again.exit_code == 1
    assert error_line(again) == (
        f"Error: run {bad['run_id']} was undone already, by run {done['run_id']}"
    )
    of_undo = undo(products, done["run_id"])
    assert error_line(of_undo) == (
        f"Error: run {done['run_id']} is an undo (of run {bad['run_id']}); an undo cannot be"
        f" undone (import the file again: csvload import {tmp_path / 'bad.csv'})"
    )
    unrecorded = imported(products, write_file(tmp_path, csv(BAD), "bad.csv"), "--no-undo")
    refused = undo(products, unrecorded["run_id"])
    assert error_line(refused).startswith(
        f"Error: run {unrecorded['run_id']} kept no undo record (imported with --no-undo,"
    )
    assert query(products, "SELECT count(*) FROM csvload_undo_runs WHERE run_id = %s",
                 (unrecorded["run_id"],)) == [(0,)]  # fmt: skip
    assert table_checksum(products) != after  # the unrecorded import is in
    assert undo(products).exit_code == 2
    usage = undo(products, bad["run_id"], "--table", "products")
    assert "--table and --feed choose the run for --last; give --last" in usage.stderr


def test_last_with_table_and_feed_and_no_undo_in_the_config(products, tmp_path, monkeypatch):
    with psycopg.connect(products) as c:
        c.execute("CREATE TABLE other (sku text PRIMARY KEY, name text)")
    imported(products, write_file(tmp_path, csv(GOOD)))
    before = table_checksum(products)
    bad = imported(products, write_file(tmp_path, csv(BAD), "bad.csv"))
    imported(products, write_file(tmp_path, "sku,name\nO-1,o\n", "o.csv"), "--table", "other",
             "--key", "sku")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path, """
        [feeds.supplier]
        table = "products"

        [feeds.unrecorded]
        table = "other"
        key = "sku"
        no_undo = true
    """)  # fmt: skip
    done = undone(products, "--last", "--feed", "supplier")
    assert done["undo_of"] == bad["run_id"]
    assert table_checksum(products) == before
    assert undone(products, "--last", "--table", "other")["deleted"] == 1

    result = quiet_cli(products, "import", "--feed", "unrecorded", "o.csv", "--json")
    assert result.exit_code == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    refused = undo(products, "--last", "--table", "other")
    assert error_line(refused).startswith(f"Error: run {run_id} kept no undo record")


def test_the_undo_is_a_run_and_runs_shows_what_can_be_undone(products, tmp_path, receiver):
    good = imported(products, write_file(tmp_path, csv(GOOD)))
    bad = imported(products, write_file(tmp_path, csv(BAD), "bad.csv"))
    result = undo(products, bad["run_id"], "--webhook", receiver.url, "--webhook-secret", "s3")
    assert result.exit_code == 0, result.stderr
    done = json.loads(result.stdout)

    listed = json.loads(cli(products, "runs", "--json").stdout)
    assert [(r["run_id"], r["kind"], r["undoable"]) for r in listed] == [
        (done["run_id"], "undo", False), (bad["run_id"], "import", False),
        (good["run_id"], "import", True),
    ]  # fmt: skip
    record = listed[0]
    assert (record["undo_of"], record["status"], record["file"]) == (
        bad["run_id"],
        "succeeded",
        str(tmp_path / "bad.csv"),
    )
    assert (record["inserted"], record["updated"], record["deleted"]) == (0, 10, 2)
    assert listed[1]["undone_by"] == done["run_id"]
    assert listed[2]["undo_bytes"] > 0
    text = cli(products, "runs")
    lines = text.stdout.splitlines()
    assert f"undoes {bad['run_id'][:8]}" in lines[0]
    assert f"undone by {done['run_id'][:8]}" in lines[1]
    assert " yes (" in lines[2] and " kB) " in lines[2]
    assert "UNDO" in text.stderr

    (request,) = receiver.requests
    event = request.json()
    assert (event["event"], event["run_id"], event["undo_of"]) == (
        "import.undone",
        done["run_id"],
        bad["run_id"],
    )
    assert (event["deleted"], event["restored"], event["conflicts"]) == (2, 10, 0)
    headers = request.headers
    assert webhook.verify_signature(
        "s3", headers["x-csvload-timestamp"], request.body, headers["x-csvload-signature"]
    )
    assert "s3" not in request.body.decode()


def test_runs_prune_keeps_the_newest_records(products, tmp_path):
    ids = []
    for n in range(3):
        rows = {f"A-{i}": f"v{n}" for i in range(5)}
        ids.append(imported(products, write_file(tmp_path, csv(rows), f"{n}.csv"))["run_id"])
    result = cli(products, "runs", "prune", "--keep", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "csvload: dropped the undo records of 2 run(s)\n"
    runs = json.loads(cli(products, "runs", "--json").stdout)
    listed = {r["run_id"]: r["undoable"] for r in runs}
    assert listed == {ids[2]: True, ids[1]: False, ids[0]: False}
    assert query(products, "SELECT count(DISTINCT run_id) FROM csvload_undo") == [(1,)]
    refused = undo(products, ids[0])
    assert error_line(refused).startswith(f"Error: run {ids[0]} kept no undo record")


def test_a_shop_export_with_a_preset_and_a_full_feed(major_products, tmp_path):
    dsn = major_products
    first = tmp_path / "first.csv"
    write_shopify(first, 30, seed=1)
    imported(dsn, first, "--preset", "shopify", exit_codes=(0, 3))
    before = table_checksum(dsn)
    second = tmp_path / "second.csv"
    write_shopify(second, 25, seed=2)  # other names and prices, five products fewer
    run = imported(dsn, second, "--preset", "shopify", "--missing", "deactivate",
                   "--max-missing", "50%", exit_codes=(0, 3))  # fmt: skip
    assert run["deactivated"] and run["updated"]
    undone(dsn, run["run_id"])
    assert table_checksum(dsn) == before


def test_an_undo_waits_for_the_import_lock(products, tmp_path):
    imported(products, write_file(tmp_path, csv(GOOD)))
    bad = imported(products, write_file(tmp_path, csv(BAD), "bad.csv"))
    after = table_checksum(products)
    with psycopg.connect(products) as importing:
        importing.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE")
        result = undo(products, bad["run_id"], "--lock-timeout", "0.3")
    assert result.exit_code == 1
    assert "lock" in error_line(result)
    assert table_checksum(products) == after
    assert undone(products, bad["run_id"])["restored"] == 10


def test_a_fill_whose_keys_hold_a_newline(products, tmp_path):
    text = 'sku,name\n"A\nB",x\nA-2,y\n"A\\C",z\n'
    run = imported(products, write_file(tmp_path, text))
    assert query(products, "SELECT keys IS NOT NULL FROM csvload_undo") == [(True,)]
    assert undone(products, run["run_id"])["deleted"] == 3
    assert query(products, "SELECT count(*) FROM products") == [(0,)]
