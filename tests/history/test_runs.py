"""Run history (csvload_runs), liveness of dead runs, `status`, `runs`, `stats`, `verify`.

Imports are recorded through the library (RunRecorder around import_source), the way
the import command records them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from helpers.cli import cli
from helpers.db import table_checksum
from helpers.files import write_file
from helpers.wait import DEADLINE, poll

from csvload.cli import main  # noqa: F401 - cli must load before runcommands
from csvload.cli.runcommands import runs, stats, status, verify
from csvload.errors import CsvloadError, RunNotFoundError, TooManyRejectsError
from csvload.generate import generate
from csvload.history import runs as runs_module
from csvload.history.recorder import RunRecorder
from csvload.history.runs import latest_run, list_runs, options_record
from csvload.load.loader import DEFAULT_BATCH_SIZE, Import, ImportOptions
from csvload.load.result import ImportResult
from csvload.read.source import Source, SourceOptions
from csvload.table.schema import INDEXES


def recorded_import(dsn: str, path: str, extra_options: dict | None = None, **options):
    """Import through the library with a RunRecorder, as the import command does: the
    recorder starts before the file is opened, so a file that cannot be read is recorded
    as a failed run too.  Returns (run_id, result, error)."""
    source_options = SourceOptions(path)
    import_options = ImportOptions(**options)
    recorder = RunRecorder.start(
        dsn,
        file=path,
        path=path,
        options=options_record(source_options, import_options, extra_options or {}),
    )
    job = None
    try:
        with Source(source_options) as source, psycopg.connect(dsn) as conn:
            job = Import(conn, source, import_options, recorder.progress)
            job.run()
    except CsvloadError as e:
        result = job.result if job else ImportResult(status="failed", file=path)
        recorder.fail(str(e), result)
        return recorder.run_id, result, e
    recorder.finish(job.result)
    return recorder.run_id, job.result, None


def run_row(dsn: str, run_id: str) -> dict:
    with psycopg.connect(dsn) as conn:
        info = latest_run(conn, run_id)
    assert info is not None
    return info.as_dict()


# -- run rows --------------------------------------------------------------------------------


def test_successful_import_records_a_complete_run(products, tmp_path):
    path = write_file(tmp_path, "sku,name\nA,a\nB,b\na,again\n")
    secrets = {
        "webhook_secret": "s3cret",
        "dsn": "postgresql://u:pw@h/db",
        "nested": {"password": "pw"},
    }
    run_id, result, error = recorded_import(products, path, extra_options=secrets)
    assert error is None
    row = run_row(products, run_id)
    assert row["status"] == "succeeded" and row["phase"] == "done"
    assert (row["rows_read"], row["inserted"], row["duplicates"]) == (3, 2, 1)
    assert row["rows_done"] == 3 and row["statements"] == result.statements
    assert row["size"] == row["bytes_total"] == os.path.getsize(path)
    assert row["sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert row["pid"] == os.getpid() and row["version"] and row["host"]
    assert row["finished_at"] is not None and row["error"] is None
    assert row["options"]["batch_size"] == DEFAULT_BATCH_SIZE and row["options"]["path"] == path
    dumped = json.dumps(row)
    assert "s3cret" not in dumped and "pw" not in dumped and "nested" in row["options"]


def test_failed_import_records_failed_run_and_leaves_data_unchanged(products, tmp_path):
    recorded_import(products, write_file(tmp_path, "sku,name\nkeep,me\n", "pre.csv"))
    before = table_checksum(products)
    path = write_file(tmp_path, "sku,name,active\nx,y,maybe\nz,w,true\n")
    run_id, _, error = recorded_import(products, path)
    assert isinstance(error, TooManyRejectsError)
    row = run_row(products, run_id)
    assert row["status"] == "failed"
    assert row["error"] == str(error)
    assert (row["rows_read"], row["rejected"]) == (2, 1)
    assert table_checksum(products) == before


def test_missing_column_file_is_a_failed_run(products, tmp_path):
    path = write_file(tmp_path, "name,description\na,b\n")
    run_id, _, error = recorded_import(products, path)
    row = run_row(products, run_id)
    assert row["status"] == "failed"
    assert row["error"] == str(error) and "no sku column" in row["error"]
    assert row["rows_read"] is None  # nothing was read, and no zeros pretend otherwise


def test_dry_run_is_recorded_as_dry_run(products, tmp_path):
    run_id, result, _ = recorded_import(products, write_file(tmp_path, "sku,name\na,b\n"),
                                        dry_run=True)
    row = run_row(products, run_id)
    assert (row["status"], row["inserted"]) == ("dry_run", 1)
    with psycopg.connect(products) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0


def test_heartbeat_ticks_without_progress_reports(products):
    # The merge is one long statement with no progress callback: only the thread beats.
    with RunRecorder.start(products, file="x.csv") as recorder:
        first = run_row(products, recorder.run_id)["heartbeat_at"]
        poll(lambda: run_row(products, recorder.run_id)["heartbeat_at"], lambda t: t > first)
        assert run_row(products, recorder.run_id)["status"] == "running"


def test_run_whose_connection_ended_shows_interrupted_and_is_reaped(products):
    recorder = RunRecorder.start(products, file="x.csv")
    assert run_row(products, recorder.run_id)["status"] == "running"
    recorder.close()  # connection gone, lock released, no final status written
    row = run_row(products, recorder.run_id)
    assert row["status"] == "interrupted"
    assert row["error"] == "the import process stopped without finishing"
    with RunRecorder.start(products, file="y.csv") as other:  # the next run writes it down
        with psycopg.connect(products) as conn:
            stored = conn.execute(
                "SELECT status FROM csvload_runs WHERE run_id = %s", (recorder.run_id,)
            ).fetchone()[0]
        assert stored == "interrupted"
        assert run_row(products, other.run_id)["status"] == "running"


def test_stale_heartbeat_shows_interrupted_even_with_the_lock_held(products):
    # A client machine that lost power leaves its connection, and the lock, on the server.
    with RunRecorder.start(products, file="x.csv") as recorder:
        recorder._stop.set()  # stop the beat, keep the connection
        recorder._beat.join()
        with psycopg.connect(products) as conn:
            conn.execute(
                "UPDATE csvload_runs SET heartbeat_at = now() - interval '1 hour'"
                " WHERE run_id = %s",
                (recorder.run_id,),
            )
        assert run_row(products, recorder.run_id)["status"] == "interrupted"


def test_run_id_prefix_and_unknown_ids(products, tmp_path):
    run_id, _, _ = recorded_import(products, write_file(tmp_path, "sku,name\na,b\n"))
    with psycopg.connect(products) as conn:
        assert latest_run(conn, run_id[:8].upper()).run_id == run_id
        with pytest.raises(RunNotFoundError, match="no run 00000000"):
            latest_run(conn, "00000000")
        with pytest.raises(RunNotFoundError, match="is not a run id"):
            latest_run(conn, "'; drop table products")
    result = cli(products, "nope", command=status)
    assert result.exit_code == 1
    assert result.stderr == "Error: 'nope' is not a run id (see 'csvload runs')\n"


def test_status_and_runs_before_any_run(products):
    result = cli(products, command=status)
    assert result.exit_code == 1 and "no import recorded" in result.stderr
    result = cli(products, "--json", command=runs)
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


# -- another process ---------------------------------------------------------------------------

IMPORTER = """
import sys
from csvload.load.loader import ImportOptions, import_source
from csvload.history.recorder import RunRecorder
from csvload.read.source import Source, SourceOptions
import psycopg

dsn = sys.argv[1]
recorder = RunRecorder.start(dsn, file="<stdin>", options={"batch_size": 5000})
print(recorder.run_id, flush=True)
with Source(SourceOptions("-"), stdin=sys.stdin.buffer) as source, psycopg.connect(dsn) as conn:
    result = import_source(conn, source, ImportOptions(batch_size=5000), recorder.progress)
recorder.finish(result)
"""


def generated(rows: int) -> list[bytes]:
    out = io.StringIO(newline="")
    generate(out, rows)
    return [line.encode() for line in out.getvalue().splitlines(keepends=True)]


@pytest.fixture
def importer(products, tmp_path):
    """An import running in another process, fed through a pipe the test controls, so
    'mid-import' is a state the test holds rather than a moment it hopes to catch."""
    script = tmp_path / "importer.py"
    script.write_text(IMPORTER)
    proc = subprocess.Popen(
        [sys.executable, str(script), products], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    run_id = proc.stdout.readline().decode().strip()
    yield proc, run_id
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def rows_done(dsn: str, run_id: str) -> int:
    return run_row(dsn, run_id)["rows_done"]


def test_status_json_follows_an_import_in_another_process(products, importer):
    proc, run_id = importer
    lines = generated(200_000)
    proc.stdin.write(b"".join(lines[:100_001]))
    proc.stdin.flush()
    first = poll(
        lambda: json.loads(cli(products, "--json", command=status).stdout),
        lambda s: s["rows_done"] >= 50_000,
    )
    assert (first["run_id"], first["status"], first["phase"]) == (run_id, "running", "reading")
    assert first["rows_per_second"] > 0 and first["bytes_done"] > 0
    proc.stdin.write(b"".join(lines[100_001:]))
    proc.stdin.flush()
    second = poll(
        lambda: json.loads(cli(products, "--json", command=status).stdout),
        lambda s: s["rows_done"] > first["rows_done"] + 50_000,
    )
    assert second["bytes_done"] > first["bytes_done"] and second["status"] == "running"
    proc.stdin.close()
    assert proc.wait(timeout=DEADLINE) == 0
    done = json.loads(cli(products, "--json", run_id, command=status).stdout)
    assert (done["status"], done["rows_read"], done["inserted"]) == ("succeeded", 200_000, 200_000)


def test_killed_import_shows_interrupted_and_wrote_nothing(products, importer):
    proc, run_id = importer
    proc.stdin.write(b"".join(generated(100_000)))
    proc.stdin.flush()
    poll(lambda: rows_done(products, run_id), lambda n: n >= 50_000)
    assert run_row(products, run_id)["status"] == "running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The server notices the closed socket at once; poll only for its backend to exit.
    shown = poll(lambda: cli(products, "--json", command=status), lambda r: r.exit_code == 1)
    assert json.loads(shown.stdout)["status"] == "interrupted"
    listed = json.loads(cli(products, "--json", command=runs).stdout)
    assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
    text = cli(products, command=runs)
    assert text.stdout.startswith(f"{run_id}  ") and " interrupted " in text.stdout
    assert "RUN ID" in text.stderr
    with psycopg.connect(products) as conn:
        assert conn.execute("SELECT count(*) FROM products").fetchone()[0] == 0


# -- status and runs output --------------------------------------------------------------------


def test_status_human_and_runs_listing(products, tmp_path):
    first, _, _ = recorded_import(products, write_file(tmp_path, "sku,name\na,b\n", "one.csv"))
    second, _, _ = recorded_import(products, write_file(tmp_path, "sku,name\n", "two.csv"),
                                   dry_run=True)
    result = cli(products, command=status)
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.startswith(f"run {second}  {tmp_path / 'two.csv'}  DRY_RUN\n")
    result = cli(products, first, command=status)
    assert "1 inserted" in result.stderr
    listed = json.loads(cli(products, "--json", command=runs).stdout)
    assert [r["run_id"] for r in listed] == [second, first]
    assert [
        r["run_id"] for r in json.loads(cli(products, "--json", "--limit", "1",
                                            command=runs).stdout)
    ] == [second]
    watched = cli(products, "--watch", "--json", first,
                  command=status)  # an ended run: one line, exit
    assert [json.loads(line)["run_id"] for line in watched.stdout.splitlines()] == [first]


# -- verify --------------------------------------------------------------------------------------


FILE = (
    "sku,name,description,active\nA-1,Oak,solid,yes\nb-2,Pine,,no\nA-1,Oak table,solid oak,true\n"
)


@pytest.fixture
def loaded(products, tmp_path):
    path = write_file(tmp_path, FILE)
    _, _, error = recorded_import(products, path)
    assert error is None
    return products, path


def test_verify_identical_file_exits_0_and_changes_nothing(loaded):
    dsn, path = loaded
    before = table_checksum(dsn)
    result = cli(dsn, path, "--json", command=verify)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert (summary["keys"], summary["matching"], summary["missing"], summary["different"]) == (
        2,
        2,
        0,
        0,
    )
    assert summary["compared"] == ["name", "description", "active"]
    assert result.stderr.endswith("2 match, 0 missing, 0 different\n")
    assert table_checksum(dsn) == before
    with psycopg.connect(dsn) as conn:  # no temp table or lock left behind
        assert conn.execute("SELECT to_regclass('csvload_stage')").fetchone()[0] is None


def test_verify_missing_sku_exits_1_and_names_it(loaded):
    dsn, path = loaded
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM products WHERE sku = 'b-2'")
    result = cli(dsn, path, "--json", command=verify)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["missing"], summary["different"], summary["missing_examples"]) == (
        1,
        0,
        ["b-2"],
    )
    assert "1 missing" in result.stderr and "missing: b-2" in result.stderr


@pytest.mark.parametrize(
    "change,fields",
    [
        ("name = 'Oak'", ["name"]),  # the first occurrence's value: last must win
        ("description = NULL", ["description"]),
        ("active = false, name = 'x'", ["name", "active"]),
    ],
)
def test_verify_different_values_exit_1_and_name_sku_and_fields(loaded, change, fields):
    dsn, path = loaded
    with psycopg.connect(dsn) as conn:
        conn.execute(f"UPDATE products SET {change} WHERE sku = 'A-1'")
    result = cli(dsn, path, "--json", command=verify)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["different"] == 1 and summary["missing"] == 0
    assert summary["different_examples"] == [{"key": "A-1", "fields": fields}]
    assert f"different: A-1 ({', '.join(fields)})" in result.stderr


def test_verify_matches_skus_case_insensitively_and_ignores_absent_columns(loaded, tmp_path):
    dsn, _ = loaded
    # No description or active column: only name is compared; sku case does not matter.
    other = write_file(tmp_path, "Product,Code\nOak table,a-1\nPine,B-2\n", "other.csv")
    result = cli(dsn, other, "--map", "Product=name", "--map", "Code=sku", "--json", command=verify)
    summary = json.loads(result.stdout)
    assert result.exit_code == 0 and summary["compared"] == ["name"]


def test_verify_reads_stdin_with_options_and_skips_rejects(loaded):
    dsn, _ = loaded
    text = "sku;name\nA-1;Oak table\nb-2;Pine\n;no sku\nNEW;x\n"
    result = cli(dsn, "-", "--delimiter", ";", "--json", input=text, command=verify)
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["rejected"], summary["keys"]) == (4, 1, 3)
    assert summary["missing_examples"] == ["NEW"]


def test_verify_without_table_says_to_run_init(dsn, tmp_path):
    result = cli(dsn, write_file(tmp_path, "sku,name\na,b\n"), command=verify)
    assert result.exit_code == 1
    assert "run 'csvload init' first" in result.stderr


# -- stats ---------------------------------------------------------------------------------------


def test_stats_match_the_table(loaded):
    dsn, _ = loaded
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT * FROM products WHERE lower(sku) = 'a-1'").fetchall()
        # Flushed when this backend next goes idle, i.e. before this call returns.
        conn.execute("SELECT pg_stat_force_next_flush()")
    result = cli(dsn, "--json", command=stats)
    assert result.exit_code == 0
    s = json.loads(result.stdout)
    with psycopg.connect(dsn) as conn:
        count, active = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE active) FROM products"
        ).fetchone()
        usage = dict(
            conn.execute(
                "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes"
                " WHERE relid = 'products'::regclass"
            ).fetchall()
        )
        runs_list = list_runs(conn)
    assert (s["table"], s["rows"], s["active"]) == ("products", count, active)
    assert (count, active) == (2, 1)
    assert s["total_bytes"] == s["table_bytes"] + s["indexes_bytes"]
    assert s["indexes_bytes"] == sum(i["bytes"] for i in s["indexes"]) > 0
    names = {i["name"] for i in s["indexes"]}
    assert names == {i.name for i in INDEXES} | {"products_pkey"}
    assert {i["name"]: i["scans"] for i in s["indexes"]} == usage
    assert usage["products_lower_sku_key"] >= 1
    assert s["last_import"]["run_id"] == runs_list[0].run_id
    text = cli(dsn, command=stats)
    assert "rows            2" in text.stdout and "products_lower_sku_key" in text.stdout


def test_stats_before_init(dsn):
    result = cli(dsn, command=stats)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: products: the table does not exist (run 'csvload init' first)\n"
    )


def test_scrub_drops_secret_keys():
    assert runs_module.scrub({"Webhook_Secret": 1, "DSN": 2, "db_password": 3, "ok": 4}) == {
        "ok": 4
    }
