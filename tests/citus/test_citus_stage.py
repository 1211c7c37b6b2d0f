"""The distributed stage (csvload.load.distributed_stage) on a real Citus coordinator with two
workers: which targets get one, that the merge from it is pushed down and counted
exactly, that the identity column is numbered from its own sequence, that nothing is
left behind (commit, dry run, failure; kill -9 is test_citus_import's kill test), that
creating it holds no lock another import waits for, and that rows which do not fit are
still rejects.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from helpers.citus_cluster import STAGE_SCHEMAS, leftovers
from helpers.cli import cli, imported
from psycopg import conninfo

from csvload.load import distributed_stage
from csvload.load.loader import ImportOptions, import_source, prepare
from csvload.read.source import Source, SourceOptions


def stage_kind(dsn: str, path, **options) -> tuple[str | None, object]:
    """Import `path`, and while it merges read from its own connection how its stage is
    stored: 'h' and co-located with the target when distributed, None for a temp table."""
    seen: list = []
    with Source(SourceOptions(str(path))) as source, psycopg.connect(dsn) as conn:
        opts = ImportOptions(**options)

        def probe(progress) -> None:
            if progress.phase == "merging":
                seen.append(conn.execute(
                    "SELECT s.partmethod::text, s.colocationid = t.colocationid"
                    " FROM pg_dist_partition s, pg_dist_partition t"
                    " WHERE s.logicalrelid = to_regclass('csvload_stage')"
                    " AND t.logicalrelid = to_regclass(%s)", (opts.table,)
                ).fetchone())

        result = import_source(conn, source, opts, progress=probe)
    assert len(seen) == 1
    if seen[0] is None:
        return None, result
    method, colocated = seen[0]
    assert colocated
    return method, result


def test_products_stage_is_distributed_and_counted_exactly(distributed, tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("sku,name\nAB-1,one\nab-2,two\nAB-2,two again\nc-3,three\n")
    kind, first = stage_kind(distributed, f)
    assert kind == "h"
    assert (first.inserted, first.updated, first.unchanged, first.duplicates) == (3, 0, 0, 1)
    f.write_text("sku,name\nAB-1,one\nAb-2,two again\nc-3,THREE\nd-4,four\nd-4,four\n")
    kind, again = stage_kind(distributed, f)
    assert kind == "h"
    # Ab-2's new spelling and c-3's new name are updates; AB-1 is as it was.
    assert (again.inserted, again.updated, again.unchanged, again.duplicates) == (1, 2, 1, 1)
    assert again.rows_read == again.inserted + again.updated + again.unchanged + again.duplicates
    with psycopg.connect(distributed) as c:
        rows = c.execute("SELECT sku::text, name FROM products ORDER BY 1").fetchall()
        assert rows == [("AB-1", "one"), ("Ab-2", "two again"), ("c-3", "THREE"),
                        ("d-4", "four")]
        # The ids come from the identity's own sequence, and it goes on after them.
        ids = [r[0] for r in c.execute("SELECT id FROM products").fetchall()]
        assert len(set(ids)) == 4
        c.execute("INSERT INTO products (sku, name) VALUES ('e-5', 'five')")
        later = c.execute("SELECT id FROM products WHERE sku = 'e-5'").fetchone()[0]
        assert later > max(ids)


def test_the_merge_is_pushed_down_and_holds_no_lock_before_the_import_lock(distributed, tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("sku,name\nAB-1,one\n")
    with Source(SourceOptions(str(f))) as source, psycopg.connect(distributed) as conn:
        plan = prepare(conn, source, ImportOptions())
        with psycopg.connect(distributed) as other, conn.transaction():
            stage = distributed_stage.create(_Db(conn), plan, 2, (), None)
            assert stage is not None and stage.identity is not None
            # Creating the stage (and its EXPLAIN) left no lock that another import's
            # LOCK would wait for: two imports would otherwise deadlock on it.
            other.execute("LOCK TABLE products IN SHARE ROW EXCLUSIVE MODE NOWAIT")
            other.rollback()
            merge = distributed_stage._upsert(plan, stage, 0, distributed_stage.upsert_now(conn))
            explained = "\n".join(
                r[0] for r in conn.execute(b"EXPLAIN (COSTS OFF) " + merge.as_bytes(conn))
            )
            assert "INSERT/SELECT method" not in explained  # neither pulled nor repartitioned
            assert "Insert on products_" in explained  # the INSERT runs on each shard
            raise_rollback()


def raise_rollback():
    raise psycopg.Rollback()


class _Db:
    """loader.Statements' interface, without the count."""

    def __init__(self, conn):
        self.cur = conn.cursor()

    def execute(self, query, params=None):
        return self.cur.execute(query, params)


@pytest.mark.parametrize(
    ("key_type", "distributed_kind"),
    # varchar(20): the INSERT's length coercion of the staged varchar hides the
    # distribution column from Citus, which then repartitions: EXPLAIN tells, and the
    # import stages on the coordinator.  An integer cannot be staged typed.
    [("text", "h"), ("varchar", "h"), ("varchar(20)", None), ("integer", None)],
)
def test_which_user_tables_get_a_distributed_stage(
    citus_dsn, tmp_path, key_type, distributed_kind
):
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE items (code {key_type} PRIMARY KEY, name text NOT NULL)")
        c.execute("SELECT create_distributed_table('items', 'code', shard_count => 4)")
    f = tmp_path / "i.csv"
    f.write_text("code,name\n1,one\n2,two\n1,uno\n")
    kind, result = stage_kind(citus_dsn, f, table="items", key=("code",))
    assert kind == distributed_kind
    assert (result.inserted, result.duplicates) == (2, 1)
    f.write_text("code,name\n1,uno\n2,dos\n3,tres\n")
    kind, again = stage_kind(citus_dsn, f, table="items", key=("code",))
    assert kind == distributed_kind
    assert (again.inserted, again.updated, again.unchanged) == (1, 1, 1)
    with psycopg.connect(citus_dsn) as c:
        rows = c.execute("SELECT code::text, name FROM items ORDER BY 1").fetchall()
    assert rows == [("1", "uno"), ("2", "dos"), ("3", "tres")]


def test_a_volatile_default_keeps_the_stage_on_the_coordinator(citus_dsn, tmp_path):
    # A serial's nextval() default cannot be pushed down: EXPLAIN tells, before the COPY.
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (code text PRIMARY KEY, n bigserial, name text)")
        c.execute("SELECT create_distributed_table('items', 'code', shard_count => 4)")
    f = tmp_path / "i.csv"
    f.write_text("code,name\na,one\nb,two\n")
    kind, result = stage_kind(citus_dsn, f, table="items", key=("code",))
    assert kind is None
    assert result.inserted == 2


def test_rows_that_do_not_fit_are_rejects_from_a_distributed_stage(citus_dsn, tmp_path):
    # fit.py's queries join the stage with a temp table, which Citus refuses for a
    # distributed one: the stage moves to the coordinator for them (localize()).
    with psycopg.connect(citus_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE items (code text PRIMARY KEY, label varchar(3), qty int NOT NULL)")
        c.execute("SELECT create_distributed_table('items', 'code', shard_count => 4)")
    assert cli(citus_dsn, "init").exit_code == 0  # the runs table
    f = tmp_path / "i.csv"
    kind, _ = stage_kind(citus_dsn, _write(f, "code,label,qty\nabc,a,1\n"), table="items",
                         key=("code",))
    assert kind == "h"
    f.write_text("code,label,qty\nabc,a,1\nabd,abcd,2\nxyz,x,x\nabc,b,3\n")
    result = cli(citus_dsn, "import", str(f), "--table", "items", "--key", "code",
                 "--max-errors", "2", "--json", "-q")
    assert result.exit_code == 3, result.stderr  # imported, with rejects
    with psycopg.connect(citus_dsn) as c:
        assert c.execute("SELECT code, label, qty FROM items").fetchall() == [("abc", "b", 3)]
        assert c.execute(STAGE_SCHEMAS).fetchone()[0] == 0


def test_a_user_who_cannot_create_schemas_stages_on_the_coordinator(distributed, tmp_path):
    # The distributed stage needs CREATE on the database (for its schema), which a role
    # does not have by default: create() rolls back to before it, and the import runs as
    # on the coordinator's temp stage, with the same result.
    role = f"csvload_user_{uuid.uuid4().hex[:8]}"
    schema = conninfo.conninfo_to_dict(distributed)["options"].split("=", 1)[1]
    with psycopg.connect(distributed, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} LOGIN")
        c.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        c.execute(f"GRANT SELECT, INSERT, UPDATE ON products TO {role}")
        c.execute(f"GRANT USAGE ON SEQUENCE products_id_seq TO {role}")
    as_role = conninfo.make_conninfo(distributed, user=role)
    f = _write(tmp_path / "p.csv", "sku,name\nAB-1,one\nab-1,one again\nc-3,three\n")
    try:
        kind, result = stage_kind(as_role, f)
        assert kind is None
        assert (result.inserted, result.duplicates) == (2, 1)
        kind, again = stage_kind(as_role, _write(f, "sku,name\nab-1,one again\nC-3,3\n"))
        assert kind is None
        assert (again.inserted, again.updated, again.unchanged) == (0, 1, 1)
        with psycopg.connect(distributed) as c:
            rows = c.execute("SELECT sku::text, name FROM products").fetchall()
            assert sorted(rows) == [("C-3", "3"), ("ab-1", "one again")]
            assert c.execute(STAGE_SCHEMAS).fetchone()[0] == 0
    finally:
        with psycopg.connect(distributed, autocommit=True) as c:
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")


def test_nothing_is_left_behind(citus, distributed, citus_files, tmp_path):
    # And after kill -9: see test_citus_import's kill test.
    imported(distributed, citus_files["a"])
    imported(distributed, citus_files["renamed"], "--dry-run")
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,name,active\nx-1,n,maybe\n")  # one reject, more than 0
    assert cli(distributed, "import", str(bad)).exit_code == 1
    assert leftovers(citus) == [0] * 6


def _write(path, text: str):
    path.write_text(text)
    return path
