"""Issue 22: an undo killed with kill -9 leaves the table as it was before the undo, never
half-way: killed while it deletes, restores, re-inserts (a slow statement trigger on the
user's table holds it there, with the table lock held) and while it writes its run record
just before COMMIT (a slow trigger on csvload_runs).  The table is compared whole with the
snapshot after the import; the undo then runs to the end and gives back the snapshot from
before the import (PostgreSQL 15 and 18)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from helpers.cli import cli, csvload_cmd, imported, quiet_cli
from helpers.db import execute, query
from helpers.files import write_file
from helpers.wait import poll

DDL = """
CREATE TABLE item (
    supplier text NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    price numeric(10, 2),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (supplier, sku)
);
CREATE FUNCTION csvload_test_slow() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$;
"""
ARGS = ("--table", "item", "--key", "supplier,sku")
# Where the undo is held when it is killed: (the table, the trigger's timing).  The run
# record's final row, not the heartbeat's updates of it.
POINTS = {
    "deleting": ("item", "AFTER DELETE ON item FOR EACH STATEMENT"),
    "restoring": ("item", "AFTER UPDATE ON item FOR EACH STATEMENT"),
    "reinserting": ("item", "AFTER INSERT ON item FOR EACH STATEMENT"),
    "committing": (
        "csvload_runs",
        "AFTER UPDATE ON csvload_runs FOR EACH ROW WHEN (NEW.status = 'succeeded')",
    ),
}


def snapshot(dsn: str) -> list[tuple]:
    return query(dsn, "SELECT t::text FROM item t ORDER BY supplier, sku")


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_in_the_middle_of_an_undo(major_dsn, tmp_path, point):
    dsn = major_dsn
    execute(dsn, DDL)
    seed = "supplier,sku,name,price\n" + "".join(f"A,S{i},n{i},{i}.00\n" for i in range(10))
    imported(dsn, write_file(tmp_path, seed, "seed.csv"), *ARGS)
    before = snapshot(dsn)
    # A full feed that updates, inserts and deletes.
    feed = "supplier,sku,name,price\n" + "".join(f"A,S{i},x{i},{i}.00\n" for i in range(3, 10))
    run = imported(dsn, write_file(tmp_path, feed + "A,N1,new,1.00\n", "feed.csv"), *ARGS,
                   "--missing", "delete", "--max-missing", "50%")  # fmt: skip
    assert (run["inserted"], run["updated"], run["deleted"]) == (1, 7, 3)
    after = snapshot(dsn)
    table, timing = POINTS[point]
    execute(dsn, f"CREATE TRIGGER slow {timing} EXECUTE FUNCTION csvload_test_slow()")

    proc = subprocess.Popen(
        csvload_cmd("undo", run["run_id"], "--dsn", dsn, "--quiet"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
        (pid,) = poll(lambda: query(dsn, sleeping), lambda rows: len(rows) == 1)[0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # client_connection_check_interval: the backend notices within about a second.
        gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        poll(lambda: query(dsn, gone, (pid,))[0][0], lambda n: n == 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    execute(dsn, f"DROP TRIGGER slow ON {table}")

    assert snapshot(dsn) == after
    assert query(dsn, "SELECT undone_by FROM csvload_undo_runs WHERE run_id = %s",
                 (run["run_id"],)) == [(None,)]  # fmt: skip
    runs = json.loads(cli(dsn, "runs", "--json").stdout)
    assert (runs[0]["kind"], runs[0]["status"]) == ("undo", "interrupted")
    result = quiet_cli(dsn, "undo", run["run_id"])
    assert result.exit_code == 0, result.stderr
    assert snapshot(dsn) == before


def test_ctrl_c_in_the_middle_of_an_undo_rolls_it_back_in_one_line(major_dsn, tmp_path):
    dsn = major_dsn
    execute(dsn, DDL)
    seed = "supplier,sku,name,price\n" + "".join(f"A,S{i},n{i},{i}.00\n" for i in range(5))
    imported(dsn, write_file(tmp_path, seed, "seed.csv"), *ARGS)
    run = imported(dsn, write_file(tmp_path, "supplier,sku,name,price\nA,N1,new,1\n"), *ARGS)
    after = snapshot(dsn)
    execute(dsn, "CREATE TRIGGER slow AFTER DELETE ON item FOR EACH STATEMENT"
                 " EXECUTE FUNCTION csvload_test_slow()")  # fmt: skip
    proc = subprocess.Popen(
        csvload_cmd("undo", run["run_id"], "--dsn", dsn, "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    sleeping = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
    poll(lambda: query(dsn, sleeping), lambda rows: len(rows) == 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == (
        f"Error: undo of run {run['run_id']}: interrupted: rolled back, nothing was changed\n"
    )
    execute(dsn, "DROP TRIGGER slow ON item")
    assert snapshot(dsn) == after
