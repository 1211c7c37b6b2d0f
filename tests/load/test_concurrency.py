"""Concurrency: two imports at once serialise on the products lock (no deadlock, no lost
update, the result of one serial order), and plain readers are not blocked by a re-import.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from helpers.cli import csvload_cmd
from helpers.db import content_checksum, with_search_path

from csvload.generate import generate_file
from csvload.table import schema

ROWS = 100_000
ROUNDS = 5
WAIT = 120.0


def import_cmd(dsn: str, path, *extra: str) -> list[str]:
    return csvload_cmd("import", str(path), "--dsn", dsn, *extra)


def run_ok(dsn: str, path) -> None:
    done = subprocess.run(import_cmd(dsn, path, "--quiet"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """base fills the table; a and b have the same SKUs but rename different names, so the
    two serial orders end differently."""
    where = tmp_path_factory.mktemp("concurrency")
    paths = {k: where / f"{k}.csv" for k in ("base", "a", "b")}
    generate_file(paths["base"], ROWS, seed=7, duplicates=0.02)
    generate_file(paths["a"], ROWS, seed=7, duplicates=0.02, rename_fraction=0.3)
    generate_file(paths["b"], ROWS, seed=7, duplicates=0.02, rename_fraction=0.6)
    return paths


@pytest.fixture(scope="module")
def serial(server_dsn, files):
    """Content checksums of base then A then B, and base then B then A."""
    names = [f"s_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(server_dsn, autocommit=True) as c:
        for name in names:
            c.execute(f'CREATE SCHEMA "{name}"')
    sums = {}
    for name, order in zip(names, ("ab", "ba"), strict=True):
        dsn = with_search_path(server_dsn, name)
        with psycopg.connect(dsn) as c:
            schema.create_products(c)
        for key in ("base", *order):
            run_ok(dsn, files[key])
        sums[order] = content_checksum(dsn)
    yield sums
    with psycopg.connect(server_dsn, autocommit=True) as c:
        for name in names:
            c.execute(f'DROP SCHEMA "{name}" CASCADE')


def test_serial_orders_differ(serial):
    # Otherwise the concurrency test below could not tell a lost update from a serial order.
    assert serial["ab"] != serial["ba"]


def test_two_concurrent_imports_equal_a_serial_order(products, files, serial):
    waited = 0
    for _ in range(ROUNDS):
        with psycopg.connect(products) as c:
            c.execute("TRUNCATE products")
        run_ok(products, files["base"])
        procs = [
            subprocess.Popen(
                import_cmd(products, files[k]),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in ("a", "b")
        ]
        errs = []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                pytest.fail("deadlock: an import did not finish")
            assert proc.returncode == 0, err
            assert "Traceback" not in err
            errs.append(err)
        waited += sum("waiting for another import into the table" in e for e in errs)
        final = content_checksum(products)
        assert final in (serial["ab"], serial["ba"]), "not the result of either serial order"
    assert waited >= 1, "no import ever said it was waiting for the other"


def test_reader_is_not_blocked_by_a_reimport(products, files):
    run_ok(products, files["base"])
    proc = subprocess.Popen(
        import_cmd(products, files["a"], "--quiet"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until the import holds its products lock, then read.
    deadline = time.monotonic() + WAIT
    with psycopg.connect(products, autocommit=True) as admin:
        while True:
            held = admin.execute(
                "SELECT count(*) FROM pg_locks WHERE relation = 'products'::regclass"
                " AND mode = 'ShareRowExclusiveLock' AND granted"
            ).fetchone()[0]
            if held or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        assert held, "the import never took its lock"
        counted: list[int] = []

        def read() -> None:
            with psycopg.connect(products) as c:
                counted.append(c.execute("SELECT count(*) FROM products").fetchone()[0])

        # A thread, so that a blocked reader fails this test instead of hanging it.
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=5)
        overlapped = proc.poll() is None
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert counted, "the reader was blocked by the import"
    assert counted[0] > 0
    assert overlapped, "the import ended before the read: the test proved nothing"
