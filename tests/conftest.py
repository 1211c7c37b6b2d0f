"""The PostgreSQL the tests run against, and per-test isolation.

Order: $CSVLOAD_TEST_DSN or $DATABASE_URL; else testcontainers when a Docker engine answers
within about 2 s; else a throwaway cluster started through csvload's own managed-server
code (as an unprivileged uid when the tests run as root).  Each test gets its own schema,
selected through the DSN's search_path, so tests never see each other's products table.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from csvload.table import schema

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=2,
        )
    except (subprocess.TimeoutExpired, OSError):
        return False
    return probe.returncode == 0


@pytest.fixture(scope="session")
def server_dsn():
    dsn = os.environ.get("CSVLOAD_TEST_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        yield dsn
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    from csvload.server.embedded import LocalServer

    # A short path under /tmp: the unix socket path must stay under ~100 bytes, and the
    # server's unprivileged uid must be able to traverse it (pytest's tmp is 0700 root).
    home = Path(tempfile.mkdtemp(prefix="csvload-test-", dir="/tmp"))
    home.chmod(0o755)
    server = LocalServer(home)
    try:
        yield server.ensure()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def with_search_path(dsn: str, schema_name: str) -> str:
    return conninfo.make_conninfo(dsn, options=f"-c search_path={schema_name}")


@contextlib.contextmanager
def own_schema(server_dsn: str) -> Iterator[str]:
    """A DSN whose search_path is a fresh, empty schema, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_search_path(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def dsn(server_dsn):
    """A DSN whose search_path is a fresh, empty schema of this test's own."""
    with own_schema(server_dsn) as d:
        yield d


@pytest.fixture
def conn(dsn):
    with psycopg.connect(dsn) as c:
        yield c


@pytest.fixture
def products(dsn):
    """An initialised, empty products table; yields the DSN."""
    with psycopg.connect(dsn) as c:
        schema.create_products(c)
    return dsn


def fetch_products(dsn: str) -> list[tuple]:
    """(sku, name, description, active) for every product, by lower(sku)."""
    with psycopg.connect(dsn) as c:
        return c.execute(
            'SELECT sku, name, description, active FROM products ORDER BY lower(sku) COLLATE "C"'
        ).fetchall()


def table_checksum(dsn: str) -> str:
    """A digest of every column of every row: 'unchanged' means this is equal."""
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT coalesce(md5(string_agg(p::text, E'\\n' ORDER BY id)), 'empty') FROM products p"
        ).fetchone()[0]


def content_checksum(dsn: str) -> str:
    """A digest of what an import decides (not ids or timestamps), by lower(sku)."""
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT coalesce(md5(string_agg(concat_ws('|', sku, name, description, active),"
            " E'\\n' ORDER BY lower(sku) COLLATE \"C\")), 'empty') FROM products"
        ).fetchone()[0]


def csvload_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "csvload", *args]


def csv_records(text: str) -> list[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank data record, as Python's csv module reads it:
    the oracle that staged rows are compared with."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    records, last = [], 0
    for row in reader:
        if row:
            records.append((last + 1, row))
        last = reader.line_num
    return records[1:]


# -- one throwaway server per PostgreSQL major (tests of the typed target) --------------------

PG_MAJORS = ("15", "18")


@pytest.fixture(scope="session", params=PG_MAJORS, ids=[f"pg{m}" for m in PG_MAJORS])
def major_server_dsn(request):
    """A throwaway csvload.server.embedded.LocalServer of one PostgreSQL major (15, then 18);
    skipped with the reason when no binaries of that major are installed."""
    from csvload.server.embedded import LocalServer, find_bindir

    major = request.param
    bindir = find_bindir(major)
    if bindir is None:
        pytest.skip(f"no PostgreSQL {major} server binaries among csvload's candidates")
    home = Path(tempfile.mkdtemp(prefix=f"csvload-pg{major}-", dir="/tmp"))
    home.chmod(0o755)
    server = LocalServer(home, bindirs=[bindir])
    try:
        dsn = server.ensure()
        with psycopg.connect(dsn) as c:
            assert c.info.server_version // 10000 == int(major)
        yield dsn
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def major_dsn(major_server_dsn):
    """Like dsn, on major_server_dsn: a fresh schema of this test's own as search_path."""
    with own_schema(major_server_dsn) as d:
        yield d
