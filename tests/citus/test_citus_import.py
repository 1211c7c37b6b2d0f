"""csvload import, verify and status against a real Citus coordinator with two workers:
csvload's distributed products, a user's hash-distributed table, a reference table and a
local table on the coordinator; rejects, --dry-run, kill -9, concurrent imports and a
worker stopped mid-import.

The fixture's search_path is the test's own schema, without public (where citext lives),
so every citext comparison csvload makes here must qualify citext's operator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from helpers.citus_cluster import leftovers
from helpers.cli import cli, imported
from helpers.files import PROJECT

from csvload.load.loader import ImportOptions, import_source
from csvload.read.source import Source, SourceOptions


def checksum(dsn: str, table: str = "products") -> tuple:
    with psycopg.connect(dsn) as c:
        return c.execute(
            f"SELECT count(*), md5(coalesce(string_agg(sku::text || '|' || name || '|'"
            f" || coalesce(description, ''), ',' ORDER BY sku::text), ''))"
            f" FROM {table}"
        ).fetchone()


def csvload_process(dsn: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "csvload", *args, "--dsn", dsn],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT / "src")},
    )


def wait_for(condition, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def active_query(citus, like: str) -> bool:
    with citus.connect(autocommit=True) as c:
        return c.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'csvload'"
            " AND state = 'active' AND query LIKE %s)",
            (like,),
        ).fetchone()[0]


def no_csvload_backends(citus) -> bool:
    with citus.connect(autocommit=True) as c:
        return not c.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'csvload')"
        ).fetchone()[0]


def recovered(citus) -> None:
    """Wait until the killed client's backend is gone, then let Citus finish or roll back
    the prepared transactions it left on the workers."""
    wait_for(lambda: no_csvload_backends(citus), what="the killed import's backend to end")
    with citus.connect(autocommit=True) as c:
        c.execute("SELECT recover_prepared_transactions()")




def products_kind(dsn: str, table: str = "products") -> str:
    from csvload.table.citus import table_kind

    with psycopg.connect(dsn) as c:
        return table_kind(c, table).kind.value


# -- init ------------------------------------------------------------------------------------


def test_init_distributed_is_idempotent_and_init_alone_stays_local(citus_dsn):
    assert cli(citus_dsn, "init", "--distributed", "--shards", "4").exit_code == 0
    with psycopg.connect(citus_dsn) as c:
        c.execute("INSERT INTO products (sku, name) VALUES ('Ab-1', 'kept')")
        c.commit()
    before = checksum(citus_dsn)
    assert cli(citus_dsn, "init", "--distributed").exit_code == 0
    assert checksum(citus_dsn) == before
    assert cli(citus_dsn, "init").exit_code == 0  # leaves the distributed table as it is
    assert checksum(citus_dsn) == before
    assert products_kind(citus_dsn) == "distributed"
    with psycopg.connect(citus_dsn) as c:
        c.execute("CREATE TABLE other (x int)")
        assert c.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid ="
                         " 'products'::regclass").fetchone()[0] == 4
        # csvload_runs stays on the coordinator.
        assert c.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid ="
                         " 'csvload_runs'::regclass").fetchone()[0] == 0


def test_init_without_distributed_on_a_coordinator_is_the_local_table(citus_dsn, citus_files):
    assert cli(citus_dsn, "init").exit_code == 0
    assert products_kind(citus_dsn) == "local"
    first = imported(citus_dsn, citus_files["a"])
    again = imported(citus_dsn, citus_files["renamed"])
    assert (first["inserted"], first["duplicates"]) == (2700, 300)
    assert again["inserted"] + again["updated"] + again["unchanged"] == 2700
    assert again["updated"] > 0


# -- csvload's distributed products ----------------------------------------------------------


def test_fresh_reimport_renamed_and_duplicates(distributed, citus_files):
    first = imported(distributed, citus_files["a"])
    assert (first["inserted"], first["updated"], first["unchanged"], first["duplicates"]) == (
        2700, 0, 0, 300,
    )
    after_first = checksum(distributed)
    again = imported(distributed, citus_files["a"])
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2700)
    assert checksum(distributed) == after_first
    renamed = imported(distributed, citus_files["renamed"])
    assert renamed["inserted"] == 0 and renamed["updated"] > 0
    assert renamed["updated"] + renamed["unchanged"] == 2700
    with psycopg.connect(distributed) as c:
        touched = c.execute(
            "SELECT count(*) FROM products WHERE updated_at > created_at"
        ).fetchone()[0]
    assert touched == renamed["updated"]  # unchanged rows are left untouched
    result = cli(distributed, "verify", str(citus_files["renamed"]), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["keys"], report["missing"], report["different"]) == (2700, 0, 0)
    stale = cli(distributed, "verify", str(citus_files["a"]), "--json")
    assert json.loads(stale.stdout)["different"] == renamed["updated"]


def test_a_new_spelling_of_a_sku_is_the_same_product_and_is_written(distributed, tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("sku,name\nAB-1,first\nab-2,x\n")
    imported(distributed, f)
    f.write_text("sku,name\nab-1,first\nAb-2,x\nAB-2,x\n")
    again = imported(distributed, f)
    assert (again["inserted"], again["updated"], again["duplicates"]) == (0, 2, 1)
    with psycopg.connect(distributed) as c:
        rows = c.execute("SELECT sku::text, name FROM products ORDER BY 1").fetchall()
    assert rows == [("AB-2", "x"), ("ab-1", "first")]


def test_dry_run_changes_nothing(distributed, citus_files):
    imported(distributed, citus_files["a"])
    before = checksum(distributed)
    summary = imported(distributed, citus_files["renamed"], "--dry-run")
    assert summary["status"] == "dry_run" and summary["updated"] > 0
    assert checksum(distributed) == before


@pytest.mark.parametrize("option", ["--missing", "--changes"])
def test_a_full_feed_is_refused_up_front_on_a_distributed_table(
    distributed, citus_files, tmp_path, option
):
    imported(distributed, citus_files["a"])
    before = checksum(distributed)
    value = "deactivate" if option == "--missing" else str(tmp_path / "c.csv")
    result = cli(distributed, "import", str(citus_files["renamed"]), option, value)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: products: is a distributed table of Citus; --missing and --changes do not"
        " work on tables Citus manages yet"
    )
    assert checksum(distributed) == before
    assert list(tmp_path.iterdir()) == []


def test_status_from_another_shell_during_a_distributed_import(distributed, citus_files):
    process = csvload_process(distributed, "import", str(citus_files["big"]), "-q")
    try:
        seen = []

        def running() -> bool:
            status = subprocess.run(
                [sys.executable, "-m", "csvload", "status", "--json", "--dsn", distributed],
                capture_output=True, text=True, cwd=PROJECT,
            )
            if status.returncode == 0 and status.stdout:
                seen.append(json.loads(status.stdout))
            return bool(seen) and seen[-1]["status"] == "running"

        wait_for(running, what="status to show the import running")
    finally:
        assert process.wait(60) == 0, process.stderr.read()
    assert seen[-1]["status"] == "running"


# -- kill -9, two imports at once, a worker stopped ------------------------------------------


def test_kill_9_mid_merge_leaves_the_table_as_before_or_after(citus, distributed, citus_files):
    imported(distributed, citus_files["big"])
    before = checksum(distributed)
    process = csvload_process(distributed, "import", str(citus_files["big2"]), "-q")
    try:
        # The merge: distributed_stage's pushed-down upsert (or upsert.upsert()).
        wait_for(lambda: active_query(citus, "WITH % AS %INSERT INTO%"), what="the merge")
        time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    recovered(citus)
    assert leftovers(citus) == [0] * 6  # the distributed stage went with the transaction
    after = checksum(distributed)
    imported(distributed, citus_files["big2"])
    assert after in (before, checksum(distributed))


def test_two_concurrent_imports_with_overlapping_skus_serialise(distributed, citus_files):
    results: dict[str, object] = {}

    def load(name: str) -> None:
        try:
            with Source(SourceOptions(str(citus_files[name]))) as source, psycopg.connect(
                distributed
            ) as conn:
                results[name] = import_source(conn, source, ImportOptions())
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            results[name] = e

    threads = [threading.Thread(target=load, args=(n,)) for n in ("a", "renamed")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, renamed = results["a"], results["renamed"]
    assert not isinstance(a, Exception), a
    assert not isinstance(renamed, Exception), renamed
    assert sorted([a.inserted, renamed.inserted]) == [0, 2700]
    last = "renamed" if renamed.inserted == 0 else "a"
    second = results[last]
    assert second.updated > 0 and second.updated + second.unchanged == 2700
    report = json.loads(cli(distributed, "verify", str(citus_files[last]), "--json").stdout)
    assert (report["missing"], report["different"]) == (0, 0)


# Staging, or merging: with the distributed stage the worker is then at work for the
# import, and Citus passes on its "terminating connection due to administrator command".
@pytest.mark.parametrize("during", ["COPY%", "WITH % AS %INSERT INTO%"])
def test_a_worker_stopped_mid_import_fails_in_one_line_and_writes_nothing(
    citus, distributed, citus_files, during
):
    imported(distributed, citus_files["a"])
    before = checksum(distributed)
    process = csvload_process(distributed, "import", str(citus_files["big"]), "-q")
    try:
        wait_for(lambda: active_query(citus, during), what="the import to stage or merge")
        citus.stop_worker(0)
        code = process.wait(60)
    finally:
        citus.start_worker(0)
    stderr = process.stderr.read().strip().splitlines()
    assert code == 1
    assert len(stderr) == 1
    assert stderr[0].startswith(
        f"Error: {citus_files['big']}: a worker node is down or unreachable: "
    )
    assert stderr[0].endswith("; nothing was written")
    recovered(citus)
    wait_for(lambda: _answers(distributed), what="the worker to answer again")
    assert checksum(distributed) == before


def _answers(dsn: str) -> bool:
    try:
        checksum(dsn)
    except psycopg.Error:
        return False
    return True


# -- other tables: the user's own distributed one, a reference table --------------------------


ITEMS = """
CREATE TABLE items (
    supplier text NOT NULL,
    sku text NOT NULL,
    price numeric(10,2) CHECK (price >= 0),
    qty int NOT NULL,
    updated_at timestamptz,
    PRIMARY KEY (supplier, sku)
)
"""


@pytest.fixture
def items(citus_dsn):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute(ITEMS)
        c.execute("SELECT create_distributed_table('items', 'supplier', shard_count => 4)")
    assert cli(citus_dsn, "init").exit_code == 0  # the runs table
    return citus_dsn


def items_rows(dsn: str) -> list:
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT supplier, sku, price::text, qty FROM items ORDER BY 1, 2"
        ).fetchall()


def test_users_distributed_table_with_rejects(items, tmp_path):
    f = tmp_path / "i.csv"
    f.write_text(
        "supplier,sku,price,qty\nacme,A1,1.50,3\nacme,A2,abc,4\nbolt,B1,-2,5\n"
        "bolt,B2,2,\nacme,A1,1.75,7\n"
    )
    args = ("import", str(f), "--table", "items", "--key", "supplier,sku", "--json", "-q")
    refused = cli(items, *args)
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "Error: 3 rows rejected, more than --max-errors 0; nothing was imported"
    )
    assert items_rows(items) == []
    result = cli(items, *args, "--max-errors", "3")
    assert result.exit_code == 3  # imported, with rejects
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["duplicates"], summary["rejected"]) == (1, 1, 3)
    rejects = Path(summary["rejects_file"]).read_text().splitlines()
    assert rejects[1:] == [
        '3,"price is \'abc\', not a numeric(10,2)","acme,A2,abc,4"',
        "4,price -2 violates items_price_check,\"bolt,B1,-2,5\"",
        '5,"qty is empty, and items.qty is NOT NULL with no default for a new row'
        ' (add --default qty=VALUE)","bolt,B2,2,"',
    ]
    assert items_rows(items) == [("acme", "A1", "1.75", 7)]
    # An empty qty keeps what an existing row holds; a new row is inserted.
    f.write_text("supplier,sku,price,qty\nacme,A1,1.50,\nbolt,B3,3,1\n")
    again = json.loads(cli(items, *args).stdout)
    assert (again["inserted"], again["updated"]) == (1, 1)
    assert items_rows(items) == [("acme", "A1", "1.50", 7), ("bolt", "B3", "3.00", 1)]


def test_a_key_without_the_distribution_column_is_refused_in_one_line(citus_dsn, tmp_path):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE bysup (supplier text, sku text, name text,"
                  " PRIMARY KEY (supplier, sku))")
        c.execute("SELECT create_distributed_table('bysup', 'supplier', shard_count => 4)")
    f = tmp_path / "b.csv"
    f.write_text("supplier,sku,name\nacme,A1,x\n")
    result = cli(citus_dsn, "import", str(f), "--table", "bysup", "--key", "sku")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: bysup: is distributed by supplier, and the key (sku) does not include it;"
        " Citus can only match rows by a key that does (use a --key that includes supplier)"
    ]
    with psycopg.connect(citus_dsn) as c:
        assert c.execute("SELECT count(*) FROM bysup").fetchone()[0] == 0


def test_reference_table(citus_dsn, citus_files):
    assert cli(citus_dsn, "init").exit_code == 0
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("SELECT create_reference_table('products')")
    assert products_kind(citus_dsn) == "reference"
    first = imported(citus_dsn, citus_files["a"])
    assert (first["inserted"], first["duplicates"]) == (2700, 300)
    renamed = imported(citus_dsn, citus_files["renamed"])
    assert renamed["inserted"] == 0 and renamed["updated"] > 0
    assert renamed["updated"] + renamed["unchanged"] == 2700
    report = json.loads(cli(citus_dsn, "verify", str(citus_files["renamed"]), "--json").stdout)
    assert (report["missing"], report["different"]) == (0, 0)
