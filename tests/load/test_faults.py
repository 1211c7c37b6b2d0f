"""Faults: kill -9 at several points, SIGINT/SIGTERM, the server stopping mid-import, and
the one-line errors for timeouts, locks, a missing table and missing privileges.

Every import here is a real `python -m csvload` subprocess against a real server.  Kill
points are found by watching the csvload backend's current statement in pg_stat_activity,
not by sleeping, so a slow machine moves the kill but never past the phase it targets.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers.cli import csvload_cmd
from helpers.db import content_checksum, table_checksum, with_search_path

from csvload.generate import generate_file
from csvload.table import schema

ROWS = 200_000
WAIT = 90.0  # seconds; generous for a loaded 2-core machine, never reached when healthy


def start_import(dsn: str, path: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        csvload_cmd("import", str(path), "--dsn", dsn, "--quiet", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def backend_query(admin: psycopg.Connection) -> tuple[str, str] | None:
    """(state, query) of the csvload import's backend, or None while it has none."""
    row = admin.execute(
        "SELECT state, query FROM pg_stat_activity"
        " WHERE application_name = 'csvload' AND pid <> pg_backend_pid()"
        # The run recorder's own connection shares the application_name.
        " AND query NOT LIKE '%csvload_runs%'"
        " ORDER BY backend_start DESC LIMIT 1"
    ).fetchone()
    return row


def wait_for(proc: subprocess.Popen, admin_dsn: str, seen) -> tuple[str, str] | None:
    """Poll until seen(state, query) is true; None if the process ended first."""
    deadline = time.monotonic() + WAIT
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None
            row = backend_query(admin)
            if row and seen(*row):
                return row
            time.sleep(0.002)
    proc.kill()
    pytest.fail("the import never reached the phase this test targets")


def active(prefix: str | tuple[str, ...]):
    return lambda state, query: state == "active" and query.lstrip().startswith(prefix)


def seen_commit(merged: str | tuple[str, ...]):
    """True from the last merge statement's end on: the COMMIT, or idle-in-transaction."""
    return lambda state, query: (
        query.startswith("COMMIT") or (query.startswith(merged) and state != "active")
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """base: 200k rows; update: the same SKUs with 30 % renamed (the filled-table import)."""
    where = tmp_path_factory.mktemp("faults")
    base, update = where / "base.csv", where / "update.csv"
    generate_file(base, ROWS, seed=1, duplicates=0.02)
    generate_file(update, ROWS, seed=1, duplicates=0.02, rename_fraction=0.3)
    return base, update


@pytest.fixture(scope="module")
def references(server_dsn, files):
    """Reference schemas imported without faults: 'base' (base into an empty table) and
    'updated' (update over base).  Yields their DSNs and content checksums."""
    base, update = files
    names = {k: f"r_{k}_{uuid.uuid4().hex[:8]}" for k in ("base", "updated")}
    with psycopg.connect(server_dsn, autocommit=True) as c:
        for name in names.values():
            c.execute(f'CREATE SCHEMA "{name}"')
    dsns = {k: with_search_path(server_dsn, n) for k, n in names.items()}
    for key, paths in (("base", [base]), ("updated", [base, update])):
        with psycopg.connect(dsns[key]) as c:
            schema.create_products(c)
        for path in paths:
            done = subprocess.run(
                csvload_cmd("import", str(path), "--dsn", dsns[key], "--quiet"),
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
    yield {k: (dsns[k], content_checksum(dsns[k])) for k in dsns}
    with psycopg.connect(server_dsn, autocommit=True) as c:
        for name in names.values():
            c.execute(f'DROP SCHEMA "{name}" CASCADE')


def backends_gone(admin_dsn: str) -> bool:
    deadline = time.monotonic() + WAIT
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        while time.monotonic() < deadline:
            left = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'csvload'"
            ).fetchone()[0]
            if left == 0:
                return True
            time.sleep(0.05)
    return False


def prefill(dsn: str, reference_dsn: str) -> None:
    """Copy the reference base table, ids and timestamps included."""
    ref_schema = psycopg.conninfo.conninfo_to_dict(reference_dsn)["options"].split("=")[1]
    with psycopg.connect(dsn) as c:
        c.execute(
            f'INSERT INTO products OVERRIDING SYSTEM VALUE SELECT * FROM "{ref_schema}".products'
        )


# -- kill -9 --------------------------------------------------------------------------------

# The statement that merges into a filled table: MERGE, or (recording the undo record on
# PostgreSQL before 18) the WITH statement, or MERGE inside a WITH that records it (18).
MERGING = ("MERGE INTO", "WITH ")

# (table, point) -> (what to wait for, whether the commit may already have happened)
KILL_POINTS = {
    ("empty", "copy"): (active("COPY"), False),
    ("empty", "merge"): (active("INSERT INTO"), False),
    ("empty", "indexes"): (active("CREATE INDEX"), False),
    ("empty", "commit"): (seen_commit("CREATE INDEX"), True),
    ("filled", "copy"): (active("COPY"), False),
    ("filled", "analyze"): (active("ANALYZE"), False),
    ("filled", "merge"): (active(MERGING), False),
    ("filled", "commit"): (seen_commit(MERGING), True),
}


@pytest.mark.parametrize("table,point", list(KILL_POINTS), ids=[f"{t}-{p}" for t, p in KILL_POINTS])
def test_kill_9_leaves_exactly_before_or_after(
    products, server_dsn, files, references, table, point
):
    base, update = files
    if table == "filled":
        prefill(products, references["base"][0])
        path, after = update, references["updated"][1]
    else:
        path, after = base, references["base"][1]
    before = table_checksum(products)
    seen, may_commit = KILL_POINTS[(table, point)]

    proc = start_import(products, path)
    hit = wait_for(proc, server_dsn, seen)
    proc.kill()
    proc.communicate(timeout=WAIT)
    if hit is None:
        assert may_commit, "the import ended before reaching the kill point"

    if table_checksum(products) == before:
        outcome = "before"
    else:
        assert content_checksum(products) == after, "neither the before- nor the after-state"
        outcome = "after"
    if not may_commit:
        assert outcome == "before"
    # PostgreSQL notices a dead client only when it next talks to it: a backend killed
    # mid-statement finishes that statement, then rolls back and releases its locks.
    # Until then nothing it did is visible; afterwards it must hold nothing.
    assert backends_gone(server_dsn), "the killed import's backend never went away"
    if table_checksum(products) == before:
        assert outcome == "before"
    else:
        assert content_checksum(products) == after


# -- signals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig,status,word,phase",
    [
        (signal.SIGINT, 130, "interrupted", "COPY"),
        (signal.SIGTERM, 143, "terminated", "COPY"),
        (signal.SIGINT, 130, "interrupted", "ANALYZE"),
        (signal.SIGTERM, 143, "terminated", MERGING),
    ],
    ids=["sigint-copy", "sigterm-copy", "sigint-analyze", "sigterm-merge"],
)
def test_signal_rolls_back_with_one_line(
    products, server_dsn, files, references, sig, status, word, phase
):
    prefill(products, references["base"][0])
    before = table_checksum(products)
    path = files[1]
    proc = start_import(products, path)
    assert wait_for(proc, server_dsn, active(phase)) is not None
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == status, err
    assert err == f"Error: {path}: {word}: rolled back, nothing was written\n"
    assert out == ""
    assert table_checksum(products) == before


def test_double_sigint_leaves_no_traceback(products, server_dsn, files, references):
    prefill(products, references["base"][0])
    before = table_checksum(products)
    path = files[1]
    proc = start_import(products, path)
    assert wait_for(proc, server_dsn, active("COPY")) is not None
    proc.send_signal(signal.SIGINT)
    time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err == f"Error: {path}: interrupted: rolled back, nothing was written\n"
    assert table_checksum(products) == before


# -- the server stops mid-import ------------------------------------------------------------


@pytest.fixture
def own_server():
    """A throwaway server of this test's own, which it may stop and start."""
    from csvload.server.embedded import LocalServer

    home = Path(tempfile.mkdtemp(prefix="csvload-stop-", dir="/tmp"))
    home.chmod(0o755)
    server = LocalServer(home)
    try:
        yield server, server.ensure()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("phase", ["COPY", MERGING], ids=["copy", "merge"])
def test_server_stopping_mid_import_fails_in_one_line(own_server, files, phase):
    server, dsn = own_server
    with psycopg.connect(dsn) as c:
        schema.create_products(c)
    done = subprocess.run(
        csvload_cmd("import", str(files[0]), "--dsn", dsn, "--quiet"), capture_output=True
    )
    assert done.returncode == 0
    before = table_checksum(dsn)

    proc = start_import(dsn, files[1])
    assert wait_for(proc, dsn, active(phase)) is not None
    server.stop()
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"Error: {files[1]}: database connection lost: ")
    assert lines[0].endswith("nothing was written")

    server.start()
    assert table_checksum(dsn) == before


# -- connection, locks, missing table and privileges ----------------------------------------


def run_import(dsn: str, path: Path, *extra: str, timeout: float = WAIT):
    started = time.monotonic()
    done = subprocess.run(
        csvload_cmd("import", str(path), "--dsn", dsn, "--quiet", *extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_connect_timeout_against_a_silent_server(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,b\n")
    # A listening socket nobody accepts from: the TCP handshake completes (the backlog),
    # but the server's startup reply never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        dsn = f"host=127.0.0.1 port={port} dbname=x user=x"
        done, seconds = run_import(dsn, path, "--connect-timeout", "1", timeout=30)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(f"Error: cannot connect to x on 127.0.0.1:{port}: ")
    assert "(check the DSN, or that the server is running)" in line
    assert seconds < 10  # libpq may try twice (with and without SSL) within the timeout


def test_lock_timeout_names_the_cause_and_the_option(products, tmp_path):
    with psycopg.connect(products) as c:
        c.execute("INSERT INTO products (sku, name) VALUES ('keep', 'me')")
    before = table_checksum(products)
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,b\nkeep,changed\n")
    with psycopg.connect(products) as holder:
        holder.execute("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        done, _ = run_import(products, path, "--lock-timeout", "1")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(f"Error: {path}: canceling statement due to lock timeout")
    assert line.endswith("(another session holds the table; raise --lock-timeout)")
    assert table_checksum(products) == before


def test_statement_timeout_names_the_option(products, server_dsn, files, references):
    prefill(products, references["base"][0])
    before = table_checksum(products)
    done, _ = run_import(products, files[1], "--statement-timeout", "0.05")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line == (
        f"Error: {files[1]}: canceling statement due to statement timeout"
        " (raise --statement-timeout)"
    )
    assert table_checksum(products) == before


def test_no_table_says_run_init(dsn, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,b\n")
    done, _ = run_import(dsn, path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line == "Error: products: the table does not exist (run 'csvload init' first)"


@pytest.fixture
def unprivileged(products, server_dsn):
    """The products DSN, connecting as a fresh role that may not touch products."""
    role = f"nopriv_{uuid.uuid4().hex[:8]}"
    ours = psycopg.conninfo.conninfo_to_dict(products)
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN')
        schema_name = ours["options"].split("=")[1]
        # CREATE on the schema lets the run recorder make csvload_runs, so the error under
        # test is the one on products.
        c.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema_name}" TO "{role}"')
    try:
        dsn = psycopg.conninfo.make_conninfo(products, user=role)
        try:
            psycopg.connect(dsn).close()
        except psycopg.OperationalError as e:
            pytest.skip(f"the test server does not let a new role log in: {e}")
        yield dsn
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as c:
            c.execute(f'DROP OWNED BY "{role}"')
            c.execute(f'DROP ROLE "{role}"')


def test_permission_denied_is_one_line(products, unprivileged, tmp_path):
    with psycopg.connect(products) as c:
        c.execute("INSERT INTO products (sku, name) VALUES ('keep', 'me')")
    before = table_checksum(products)
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,b\n")
    done, _ = run_import(unprivileged, path)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith(f"Error: {path}: permission denied: permission denied for table")
    assert line.endswith("(GRANT the user access)")
    assert table_checksum(products) == before


def test_disk_full_translation_is_not_exercised_here():
    """DiskFull (SQLSTATE 53100) cannot be produced safely on a shared machine; the
    translation is checked on a real error object of that class instead."""
    from csvload.server.database import translate

    error = psycopg.errors.DiskFull("could not extend file: No space left on device")
    line = str(translate(error, "p.csv"))
    assert line.startswith("p.csv: the database server is out of disk space: ")
    assert "\n" not in line
