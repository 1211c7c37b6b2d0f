"""`csvload watch DIR --once`, in-process: each complete file imported once, oldest first,
moved to done/ or failed/; the exit status; a restart that never imports a file twice; a
feed from csvload.toml applied to every file."""

from __future__ import annotations

import json
import shutil
import threading

from helpers.cli import cli, quiet_cli
from helpers.db import execute, query, table_checksum
from helpers.files import write_toml
from helpers.watch import drop_file, runs

ONCE = ("watch", "--once", "--settle", "0")


def names(dsn: str) -> list[tuple[str, str]]:
    return query(dsn, "SELECT sku, name FROM products ORDER BY sku")


def test_oldest_first_then_done(products, drop):
    """The older file is imported first (by time, not by name): the newer one's name wins.
    One line per file, and each moves to done/."""
    drop_file(drop, "z-monday.csv", "sku,name\nA-1,Monday lamp\nA-2,Chair\n", age=60)
    drop_file(drop, "a-tuesday.csv", "sku,name\nA-1,Tuesday lamp\n", age=30)
    result = cli(products, *ONCE[:1], str(drop), *ONCE[1:])
    assert result.exit_code == 0, result.stderr
    # Between the progress lines (stderr is no terminal), one line per file.
    lines = [line for line in result.stderr.splitlines() if "; moved to " in line]
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"{drop}/z-monday.csv: imported: 2 rows read, 2 inserted")
    assert lines[0].endswith("; moved to done/z-monday.csv")
    assert lines[1].startswith(f"{drop}/a-tuesday.csv: imported: 1 rows read, 0 inserted")
    assert names(products) == [("A-1", "Tuesday lamp"), ("A-2", "Chair")]
    assert sorted(p.name for p in drop.iterdir()) == [".csvload", ".csvload-watch.lock", "done"]
    assert sorted(p.name for p in (drop / "done").iterdir()) == ["a-tuesday.csv", "z-monday.csv"]
    assert runs(products) == [("z-monday.csv", "succeeded"), ("a-tuesday.csv", "succeeded")]


def test_a_failing_file_goes_to_failed(products, drop):
    """A failing file changes nothing and moves to failed/ with its rejects and a one-line
    .error file; the others are imported; --once exits 1."""
    drop_file(drop, "good.csv", "sku,name\nG-1,Good\n", age=20)
    drop_file(drop, "bad.csv", "sku,name\nB-1,Fine\nB-2,Too,many\n", age=10)
    result = quiet_cli(products, *ONCE[:1], str(drop), *ONCE[1:], "--json")
    assert result.exit_code == 1
    failed = drop / "failed"
    (line,) = result.stderr.splitlines()
    assert line == (
        "Error: 1 rows rejected, more than --max-errors 0; nothing was imported (see"
        f" {failed}/bad.csv.rejects.csv); moved to failed/bad.csv"
    )
    assert names(products) == [("G-1", "Good")]
    assert sorted(p.name for p in failed.iterdir()) == [
        "bad.csv", "bad.csv.error", "bad.csv.rejects.csv",
    ]  # fmt: skip
    (written,) = (failed / "bad.csv.error").read_text().splitlines()
    assert line == f"Error: {written}; moved to failed/bad.csv"
    assert "B-2,Too,many" in (failed / "bad.csv.rejects.csv").read_text()
    summaries = [json.loads(s) for s in result.stdout.splitlines()]
    assert [(s["event"], s["status"], s["moved_to"]) for s in summaries] == [
        ("imported", "succeeded", str(drop / "done" / "good.csv")),
        ("failed", "failed", str(failed / "bad.csv")),
    ]


def test_rejects_within_max_errors_go_to_done(products, drop):
    drop_file(drop, "p.csv", "sku,name\nB-1,Fine\nB-2,Too,many\n")
    result = cli(products, *ONCE[:1], str(drop), *ONCE[1:], "--max-errors", "5")
    assert result.exit_code == 3, result.stderr
    done = drop / "done"
    assert f"rejects in {done}/p.csv.rejects.csv" in result.stderr
    assert (done / "p.csv.rejects.csv").exists()
    assert names(products) == [("B-1", "Fine")]


def test_a_restart_never_imports_a_file_twice(products, drop):
    """A file the history knows as imported (killed after the commit, before the move) is
    moved to done/ without importing it again; the same name with new content is new."""
    drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    assert cli(products, *ONCE[:1], str(drop), *ONCE[1:]).exit_code == 0
    (run_id,) = query(products, "SELECT run_id::text FROM csvload_runs")[0]
    execute(products, "UPDATE products SET name = 'changed by hand'")
    before = table_checksum(products)
    # As if the watcher had been killed between the commit and the move.
    shutil.copy2(drop / "done" / "p.csv", drop / "p.csv")

    result = cli(products, *ONCE[:1], str(drop), *ONCE[1:])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"{drop}/p.csv: imported already by run {run_id}; moved to done/p-1.csv\n"
    )
    assert table_checksum(products) == before
    assert len(runs(products)) == 1

    drop_file(drop, "p.csv", "sku,name\nA-1,New lamp\n")
    result = quiet_cli(products, *ONCE[:1], str(drop), *ONCE[1:])
    assert result.exit_code == 0, result.stderr
    assert names(products) == [("A-1", "New lamp")]
    assert runs(products) == [("p.csv", "succeeded")] * 2
    assert (drop / "done" / "p-2.csv").read_text() == "sku,name\nA-1,New lamp\n"


def test_nothing_there(products, drop):
    result = cli(products, *ONCE[:1], str(drop), *ONCE[1:])
    assert (result.exit_code, result.stderr, result.stdout) == (0, "", "")


def test_a_feed_applies_to_every_file(products, drop, tmp_path):
    """--feed NAME: the feed's table, key and map for each file; the command line wins."""
    execute(
        products,
        "CREATE TABLE catalog (supplier text, sku text, title text, price numeric,"
        " UNIQUE (supplier, sku))",
    )
    config = write_toml(
        tmp_path,
        """
        [feeds.acme]
        table = "catalog"
        key = ["supplier", "sku"]
        scope = { supplier = "acme" }
        map = { "Bezeichnung" = "title" }
        decimal_comma = true
        max_errors = 3
        """,
    )
    drop_file(drop, "one.csv", 'sku,Bezeichnung,price\nA-1,Lampe,"1,50"\n', age=20)
    drop_file(drop, "two.csv", "sku,Bezeichnung,price\nA-2,Stuhl,x\n", age=10)
    result = quiet_cli(
        products, *ONCE[:1], str(drop), *ONCE[1:], "--feed", "acme", "--config", str(config),
        "--max-errors", "0",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert query(products, "SELECT supplier, sku, title, price::text FROM catalog") == [
        ("acme", "A-1", "Lampe", "1.50")
    ]
    assert (drop / "failed" / "two.csv").exists()
    assert (drop / "done" / "one.csv").exists()


def test_a_half_written_file_is_left_alone(products, drop):
    """A .part file, and a file whose size still changes while the watcher looks, stay
    where they are; the sender's rename makes the .part file count."""
    drop_file(drop, "ready.csv", "sku,name\nR-1,Ready\n")
    part = drop / "coming.csv.part"
    part.write_text("sku,name\nC-1,Coming\n")
    growing = drop / "growing.csv"
    growing.write_text("sku,name\n")
    writing = threading.Event()

    def write_on():
        i = 0
        while not writing.wait(0.05):
            with open(growing, "a") as f:
                f.write(f"G-{i},Growing\n")
            i += 1

    writer = threading.Thread(target=write_on)
    writer.start()
    try:
        result = quiet_cli(products, "watch", str(drop), "--once", "--settle", "0.5")
    finally:
        writing.set()
        writer.join()
    assert result.exit_code == 0, result.stderr
    assert names(products) == [("R-1", "Ready")]
    assert sorted(p.name for p in drop.iterdir() if not p.name.startswith(".")) == [
        "coming.csv.part", "done", "growing.csv",
    ]  # fmt: skip

    part.rename(drop / "coming.csv")
    result = quiet_cli(products, "watch", str(drop), "--once", "--settle", "0.5")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (drop / "done").iterdir()) == [
        "coming.csv", "growing.csv", "ready.csv",
    ]  # fmt: skip
    assert len(names(products)) == 2 + growing_rows(drop / "done" / "growing.csv")


def growing_rows(path) -> int:
    return len(path.read_text().splitlines()) - 1


def test_no_database_leaves_the_files_in_place(drop, tmp_path):
    """When the run history cannot be asked, nothing is imported or moved: the file is not
    at fault.  --once exits 1 with one line."""
    path = drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    dsn = f"host={tmp_path} port=1 dbname=nothing user=nobody"  # no server listens there
    result = quiet_cli(dsn, "watch", str(drop), "--once", "--settle", "0")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: cannot connect to nothing on {tmp_path}:1: ")
    assert line.endswith("; p.csv stays in the folder, to be imported next time")
    assert path.read_text() == "sku,name\nA-1,Lamp\n"
    assert not (drop / "done").exists() and not (drop / "failed").exists()


def test_usage_errors(drop, tmp_path):
    """Exit 2 with click's one line, before anything is looked at."""
    drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    cases = {
        ("--interval", "0"): "Invalid value for '--interval': 0.0 is not in the range"
        " 0.1<=x<=2147483.",
        ("--settle", "nan"): "Invalid value for '--settle': 'nan' is not a finite number.",
        ("--rejects", "r.csv"): "No such option '--rejects'.",
        ("--dry-run",): "No such option '--dry-run'.",
        ("--changes", str(drop / "changes.csv")): "Invalid value for --changes: must not be in"
        " the watched folder",
        ("--config", "c.toml"): "--config names the file that --feed reads; give --feed too",
    }
    for args, message in cases.items():
        result = cli("host=/nonexistent", "watch", str(drop), "--once", *args)
        assert result.exit_code == 2, args
        assert result.stderr.splitlines()[-1] == f"Error: {message}"
    result = cli("host=/nonexistent", "watch", str(tmp_path / "nowhere"), "--once")
    assert result.exit_code == 2
    assert "Directory" in result.stderr and "does not exist" in result.stderr
    assert (drop / "p.csv").exists() and not (drop / ".csvload-watch.lock").exists()
