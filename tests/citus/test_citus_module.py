"""csvload.table.citus against a real Citus cluster, and its 'not Citus' answers against the plain
test server."""

from __future__ import annotations

import threading

import psycopg
import pytest

from csvload.errors import CitusError, NoTableError
from csvload.table import schema
from csvload.table.citus import (
    Kind,
    TableKind,
    citext_schema,
    create_distributed_products,
    is_citus,
    table_kind,
)


def _catalog_snapshot(conn: psycopg.Connection) -> tuple:
    """What create_distributed_products could change: shards, indexes, columns, rows."""
    return (
        conn.execute(
            "SELECT shardid, shardminvalue, shardmaxvalue FROM pg_dist_shard"
            " WHERE logicalrelid = 'products'::regclass ORDER BY shardid"
        ).fetchall(),
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE tablename = 'products' AND schemaname = current_schema() ORDER BY 1"
        ).fetchall(),
        conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attidentity FROM pg_attribute"
            " WHERE attrelid = 'products'::regclass AND attnum > 0 ORDER BY attnum"
        ).fetchall(),
        conn.execute("SELECT * FROM products ORDER BY id").fetchall(),
    )


# ------------------------------------------------------------------ not Citus


def test_plain_postgresql_is_not_citus_and_its_tables_are_local(dsn):
    with psycopg.connect(dsn) as c:
        schema.create_products(c)
        assert is_citus(c) is False
        assert table_kind(c, "products") == TableKind(Kind.LOCAL)
        assert not table_kind(c, "products").is_distributed
        assert not table_kind(c, "products").citus_plans


def test_table_kind_of_a_missing_table_is_no_table_error(dsn):
    with psycopg.connect(dsn) as c, pytest.raises(NoTableError) as e:
        table_kind(c, "nosuch")
    assert str(e.value) == "table nosuch does not exist"


def test_create_distributed_products_refuses_plain_postgresql_and_creates_nothing(dsn):
    with psycopg.connect(dsn) as c:
        with pytest.raises(CitusError) as e:
            create_distributed_products(c, 4)
        assert str(e.value) == (
            "cannot create a distributed products table: the citus extension is not installed"
            " in this database (connect to a Citus coordinator)"
        )
        assert c.execute("SELECT to_regclass('products')").fetchone() == (None,)


def test_shards_out_of_range_is_refused_before_the_database(dsn):
    with psycopg.connect(dsn) as c:
        for bad in (0, -1, 64001):
            with pytest.raises(ValueError, match="between 1 and 64000"):
                create_distributed_products(c, bad)


# ------------------------------------------------------------------ table_kind on Citus


def test_citus_database_is_citus(citus_dsn):
    with psycopg.connect(citus_dsn) as c:
        assert is_citus(c) is True


def test_table_kind_tells_every_kind_of_citus_table(citus_dsn):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        for name in ("hashed", "ref", "plain", "citus_local", "single"):
            c.execute(f"CREATE TABLE {name} (k text PRIMARY KEY, v int)")
        c.execute("SELECT create_distributed_table('hashed', 'k', shard_count => 6)")
        c.execute("SELECT create_reference_table('ref')")
        c.execute("SELECT citus_add_local_table_to_metadata('citus_local')")
        c.execute("SELECT create_distributed_table('single', NULL)")
        c.execute('CREATE TABLE "Odd Name" (k text)')
        c.execute("SELECT create_distributed_table('\"Odd Name\"', 'k', shard_count => 2)")
        schema_name = c.execute("SELECT current_schema()").fetchone()[0]

        assert table_kind(c, "hashed") == TableKind(Kind.DISTRIBUTED, "k", 6)
        assert table_kind(c, f"{schema_name}.hashed") == TableKind(Kind.DISTRIBUTED, "k", 6)
        assert table_kind(c, '"Odd Name"') == TableKind(Kind.DISTRIBUTED, "k", 2)
        assert table_kind(c, "ref") == TableKind(Kind.REFERENCE, None, 1)
        assert table_kind(c, "plain") == TableKind(Kind.LOCAL)
        assert table_kind(c, "citus_local") == TableKind(Kind.CITUS_LOCAL, None, 1)
        assert table_kind(c, "single") == TableKind(Kind.SINGLE_SHARD, None, 1)
        names = ("hashed", "single", "ref", "citus_local", "plain")
        assert [table_kind(c, t).is_distributed for t in names] == [True, True, False, False, False]
        assert [table_kind(c, t).citus_plans for t in names] == [True, True, True, True, False]
        with pytest.raises(NoTableError):
            table_kind(c, "nosuch")


def test_table_kind_needs_no_public_on_the_search_path(citus_dsn):
    # citus_tables is a view in public; pg_dist_partition is in pg_catalog.
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE hashed (k text PRIMARY KEY)")
        c.execute("SELECT create_distributed_table('hashed', 'k', shard_count => 2)")
        assert "public" not in c.execute("SHOW search_path").fetchone()[0]
        assert table_kind(c, "hashed") == TableKind(Kind.DISTRIBUTED, "k", 2)


# ------------------------------------------------------------------ distributed products


def test_create_distributed_products_distributes_by_a_citext_sku(citus_dsn):
    with psycopg.connect(citus_dsn) as c:
        assert create_distributed_products(c, 4) is True
        assert table_kind(c, "products") == TableKind(Kind.DISTRIBUTED, "sku", 4)
        citext = citext_schema(c)
        assert citext == "public"
        columns = c.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, attidentity"
            " FROM pg_attribute WHERE attrelid = 'products'::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
        assert columns == [
            ("id", "bigint", True, "a"),
            ("sku", "public.citext", True, ""),
            ("name", "text", True, ""),
            ("description", "text", False, ""),
            ("active", "boolean", True, ""),
            ("created_at", "timestamp with time zone", True, ""),
            ("updated_at", "timestamp with time zone", True, ""),
        ]
        indexes = dict(
            c.execute(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE tablename = 'products' AND schemaname = current_schema()"
            ).fetchall()
        )
        assert sorted(indexes) == sorted(
            ["products_pkey"] + [i.name for i in schema.INDEXES if not i.unique]
        )
        assert indexes["products_pkey"].endswith("USING btree (sku)")
        # Every shard got the indexes and the fillfactor.
        on_shards = c.execute(
            "SELECT success, result FROM run_command_on_shards('products',"
            " $$SELECT (SELECT count(*) FROM pg_index WHERE indrelid = '%1$s'::regclass)"
            " || ' ' || array_to_string((SELECT reloptions FROM pg_class"
            " WHERE oid = '%1$s'::regclass), ',')$$)"
        ).fetchall()
        assert on_shards == [(True, "4 fillfactor=70")] * 4


def test_distributed_products_skus_are_unique_case_insensitively_across_shards(citus_dsn):
    with psycopg.connect(citus_dsn) as c:
        create_distributed_products(c, 8)
        c.execute(
            "INSERT INTO products (sku, name)"
            " SELECT 'Sku-' || g, 'n' FROM generate_series(1, 200) g"
        )
        c.commit()
        shards_used = c.execute(
            "SELECT count(DISTINCT get_shard_id_for_distribution_column('products', sku))"
            " FROM products"
        ).fetchone()[0]
        assert shards_used == 8
        for spelling in ("SKU-17", "sku-17", "sKu-17"):
            with pytest.raises(psycopg.errors.UniqueViolation):
                c.execute("INSERT INTO products (sku, name) VALUES (%s, 'dup')", (spelling,))
            c.rollback()
        ids = c.execute("SELECT count(DISTINCT id), min(id) >= 1 FROM products").fetchone()
        assert ids == (200, True)


def test_create_distributed_products_again_changes_nothing(citus_dsn):
    with psycopg.connect(citus_dsn) as c:
        assert create_distributed_products(c, 4) is True
        c.execute("INSERT INTO products (sku, name) VALUES ('A-1', 'one'), ('b-2', 'two')")
        c.commit()
        before = _catalog_snapshot(c)
        assert create_distributed_products(c, 4) is False
        # Another shard count does not redistribute an existing table either.
        assert create_distributed_products(c, 12) is False
        assert create_distributed_products(c) is False
        assert _catalog_snapshot(c) == before


def test_create_distributed_products_refuses_a_local_products_table(citus_dsn):
    with psycopg.connect(citus_dsn) as c:
        schema.create_products(c)
        c.execute("INSERT INTO products (sku, name) VALUES ('A-1', 'one')")
        c.commit()
        with pytest.raises(CitusError) as e:
            create_distributed_products(c, 4)
        assert str(e.value) == (
            "products already exists as a local table, not distributed by sku (csvload never"
            " converts a table; use create_distributed_table() or drop it first)"
        )
        c.rollback()
        assert table_kind(c, "products") == TableKind(Kind.LOCAL)
        assert c.execute("SELECT sku, name FROM products").fetchall() == [("A-1", "one")]


def test_create_distributed_products_refuses_products_distributed_otherwise(citus_dsn):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE products (id bigint, sku text NOT NULL, name text)")
        c.execute("SELECT create_distributed_table('products', 'id', shard_count => 2)")
        with pytest.raises(CitusError, match=r"^products already exists as distributed by id,"):
            create_distributed_products(c)
        c.execute("DROP TABLE products")
        c.execute("CREATE TABLE products (sku text PRIMARY KEY, name text)")
        c.execute("SELECT create_reference_table('products')")
        with pytest.raises(CitusError, match=r"^products already exists as a reference table,"):
            create_distributed_products(c)


def test_two_concurrent_creates_make_one_table(citus_dsn):
    barrier = threading.Barrier(2)
    results: list[bool] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            with psycopg.connect(citus_dsn) as c:
                barrier.wait()
                results.append(create_distributed_products(c, 4))
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(results) == [False, True]


def test_without_citext_on_the_search_path_equality_is_case_sensitive(citus_dsn):
    # Why the module docstring tells loaders to keep citext's schema on the search_path or to
    # write OPERATOR(public.=): text's = wins silently when citext's is not visible.
    with psycopg.connect(citus_dsn) as c:
        create_distributed_products(c, 2)
        c.execute("INSERT INTO products (sku, name) VALUES ('AB-1', 'x')")
        assert "public" not in c.execute("SHOW search_path").fetchone()[0]
        find = "SELECT count(*) FROM products WHERE sku {} 'ab-1'"
        assert c.execute(find.format("=")).fetchone() == (0,)
        assert c.execute(find.format("OPERATOR(public.=)")).fetchone() == (1,)
        c.execute("SELECT set_config('search_path', current_setting('search_path') || ', public',"
                  " true)")  # fmt: skip
        assert c.execute(find.format("=")).fetchone() == (1,)
