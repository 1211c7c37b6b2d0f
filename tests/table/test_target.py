"""Issue 13, the target: describe() reads a table from the catalog (the key's unique index and
how keys match under it; what kind of relation it is) and bind() maps a header onto its
columns with --map, --default and --touch; every refusal is one line, before anything is
read or written.  Against PostgreSQL 15 and 18 (major_dsn)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from helpers.cli import cli, error_line, quiet_cli
from helpers.db import execute, query
from helpers.files import write_file
from helpers.library import target_of

from csvload.errors import MappingError, MissingColumnError, TargetError
from csvload.table.binding import Binding, bind
from csvload.table.catalog import CITEXT, EXACT, LOWER

# -- the key and how it matches --------------------------------------------------------------

KEY_TABLES = {
    "lower-index": (
        "CREATE TABLE t (sku text NOT NULL, name text);"
        " CREATE UNIQUE INDEX t_sku_lower ON t (lower(sku))",
        ("sku",), (LOWER,), "t_sku_lower",
    ),
    "lower-index-on-varchar": (
        "CREATE TABLE t (sku varchar(64) NOT NULL, name text);"
        " CREATE UNIQUE INDEX t_sku_ci ON t (lower(sku))",
        ("sku",), (LOWER,), "t_sku_ci",
    ),
    "unique-constraint": (
        "CREATE TABLE t (sku varchar(64) NOT NULL UNIQUE, name text)",
        ("sku",), (EXACT,), "t_sku_key",
    ),
    "primary-key": (
        "CREATE TABLE t (sku text PRIMARY KEY, name text)",
        ("sku",), (EXACT,), "t_pkey",
    ),
    "citext": (
        "CREATE EXTENSION citext SCHEMA {schema};"
        " CREATE TABLE t (sku citext NOT NULL UNIQUE, name text)",
        ("sku",), (CITEXT,), "t_sku_key",
    ),
    "composite": (
        "CREATE TABLE t (supplier text NOT NULL, sku text NOT NULL, name text,"
        " CONSTRAINT t_supplier_sku UNIQUE (supplier, sku))",
        ("supplier", "sku"), (EXACT, EXACT), "t_supplier_sku",
    ),
    "composite-in-other-order": (
        "CREATE TABLE t (supplier text NOT NULL, sku text NOT NULL, name text,"
        " CONSTRAINT t_supplier_sku UNIQUE (supplier, sku))",
        ("sku", "supplier"), (EXACT, EXACT), "t_supplier_sku",
    ),
    "composite-half-lowered": (
        "CREATE TABLE t (supplier integer NOT NULL, sku text NOT NULL, name text);"
        " CREATE UNIQUE INDEX t_supplier_lower_sku ON t (supplier, lower(sku))",
        ("supplier", "sku"), (EXACT, LOWER), "t_supplier_lower_sku",
    ),
    "quoted-mixed-case-column": (
        'CREATE TABLE t ("Sku Code" text NOT NULL, name text);'
        ' CREATE UNIQUE INDEX t_code ON t (lower("Sku Code"))',
        ("Sku Code",), (LOWER,), "t_code",
    ),
    "primary-key-preferred": (
        "CREATE TABLE t (sku text PRIMARY KEY, name text);"
        " CREATE UNIQUE INDEX a_first_by_name ON t (sku)",
        ("sku",), (EXACT,), "t_pkey",
    ),
}


@pytest.mark.parametrize("case", list(KEY_TABLES))
def test_keys_match_as_their_unique_index_does(major_dsn, case):
    statements, key, matches, index = KEY_TABLES[case]
    schema = query(major_dsn, "SELECT current_schema()")[0][0]
    execute(major_dsn, statements.format(schema=schema))
    target = target_of(major_dsn, "t", key)
    assert (target.key, target.matches, target.key_index) == (key, matches, index)
    assert target.case_insensitive == (matches != (EXACT,) * len(key))
    assert not target.own


def test_key_is_resolved_case_insensitively(major_dsn):
    execute(major_dsn, "CREATE TABLE t (sku text PRIMARY KEY)")
    assert target_of(major_dsn, "t", ("SKU",)).key == ("sku",)


NO_INDEX = {
    "none": "CREATE TABLE t (sku text, name text)",
    "plain-index": "CREATE TABLE t (sku text, name text); CREATE INDEX t_sku ON t (sku)",
    "partial-unique": (
        "CREATE TABLE t (sku text, name text);"
        " CREATE UNIQUE INDEX t_sku ON t (sku) WHERE name IS NOT NULL"
    ),
    "wider-unique": "CREATE TABLE t (sku text, name text, UNIQUE (sku, name))",
    "other-expression": (
        "CREATE TABLE t (sku text, name text); CREATE UNIQUE INDEX t_sku ON t (upper(sku))"
    ),
}


@pytest.mark.parametrize("case", list(NO_INDEX))
def test_no_unique_index_on_the_key_stops_before_reading(major_dsn, tmp_path, case):
    execute(major_dsn, NO_INDEX[case] + "; INSERT INTO t (sku, name) VALUES ('KEEP', 'kept')")
    # Line 3 is not UTF-8: had csvload read the file, it would be a reject.
    path = tmp_path / "t.csv"
    path.write_bytes(b"sku,name\na,1\nb,\xff\n")
    result = quiet_cli(major_dsn, "import", str(path), "--table", "t")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: t: no unique index or constraint on (sku), so rows cannot be matched by that"
        " key (create one: CREATE UNIQUE INDEX ON t (sku))"
    )
    assert query(major_dsn, "SELECT sku, name FROM t") == [("KEEP", "kept")]
    assert not Path(str(path) + ".rejects.csv").exists()
    # It never creates the index itself.
    assert query(major_dsn, "SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass"
                 " AND indisunique AND indpred IS NULL AND indnkeyatts = 1"
                 " AND pg_get_indexdef(indexrelid, 1, true) IN ('sku', 'lower(sku)')") == [(0,)]


def test_composite_key_without_its_index_names_both_columns(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE t (supplier text, sku text UNIQUE)")
    result = quiet_cli(major_dsn, "import", write_file(tmp_path, "supplier,sku\ns,a\n", "t.csv"),
                       "--table", "t",
                       "--key", "supplier,sku")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: t: no unique index or constraint on (supplier, sku), so rows cannot be matched"
        " by that key (create one: CREATE UNIQUE INDEX ON t (supplier, sku))"
    )


def test_key_column_the_table_lacks_is_a_usage_error(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE t (sku text PRIMARY KEY, name text)")
    result = quiet_cli(major_dsn, "import", write_file(tmp_path, "code,name\na,1\n", "t.csv"),
                       "--table", "t",
                       "--key", "code")
    assert result.exit_code == 2
    assert error_line(result) == "Error: --key 'code': t has no such column (columns: sku, name)"


def test_missing_table_is_one_line(major_dsn, tmp_path):
    result = quiet_cli(major_dsn, "import", write_file(tmp_path, "sku\na\n", "t.csv"), "--table",
                       "nope")
    assert result.exit_code == 1
    assert error_line(result) == "Error: nope: the table does not exist (create it first)"


# -- relations csvload refuses -----------------------------------------------------------------

REFUSED = {
    "view": (
        "CREATE TABLE base (sku text PRIMARY KEY, name text);"
        " CREATE VIEW t AS SELECT sku, name FROM base",
        "t: is a view; csvload loads only into a plain table",
    ),
    "materialized-view": (
        "CREATE TABLE base (sku text PRIMARY KEY, name text);"
        " CREATE MATERIALIZED VIEW t AS SELECT sku, name FROM base;"
        " CREATE UNIQUE INDEX ON t (sku)",
        "t: is a materialized view; csvload loads only into a plain table",
    ),
    "partitioned": (
        "CREATE TABLE t (sku text PRIMARY KEY, name text) PARTITION BY HASH (sku);"
        " CREATE TABLE t_0 PARTITION OF t FOR VALUES WITH (MODULUS 1, REMAINDER 0)",
        "t: is a partitioned table; csvload loads only into a plain table"
        " (load into one of its partitions)",
    ),
    "rules": (
        "CREATE TABLE base (sku text PRIMARY KEY, name text);"
        " CREATE TABLE t (sku text PRIMARY KEY, name text);"
        " CREATE RULE t_redirect AS ON INSERT TO t DO INSTEAD"
        " INSERT INTO base VALUES (NEW.sku, NEW.name)",
        "t: has rewrite rules, which MERGE and COPY-based merging cannot honour;"
        " csvload refuses tables with rules",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_relations_it_cannot_load_are_refused_in_one_line(major_dsn, tmp_path, case):
    statements, message = REFUSED[case]
    execute(major_dsn, statements)
    result = quiet_cli(major_dsn, "import", write_file(tmp_path, "sku,name\na,1\n", "t.csv"),
                       "--table", "t")
    assert result.exit_code == 1
    assert error_line(result) == f"Error: {message}"
    if case in ("view", "rules"):
        assert query(major_dsn, "SELECT * FROM base") == []
    if case == "partitioned":
        assert query(major_dsn, "SELECT * FROM t") == []
        # Its partition is a plain table, and loads.
        ok = quiet_cli(major_dsn, "import", write_file(tmp_path, "sku,name\na,1\n", "p.csv"),
                       "--table", "t_0")
        assert ok.exit_code == 0, ok.stderr
        assert query(major_dsn, "SELECT * FROM t") == [("a", "1")]


def test_foreign_table_is_refused_in_one_line(major_dsn, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    wrapper, server = f"csvload_test_fdw_{suffix}", f"csvload_test_srv_{suffix}"
    execute(major_dsn, f"CREATE FOREIGN DATA WRAPPER {wrapper};"
                   f" CREATE SERVER {server} FOREIGN DATA WRAPPER {wrapper};"
                   f" CREATE FOREIGN TABLE t (sku text, name text) SERVER {server}")
    try:
        result = quiet_cli(major_dsn, "import", write_file(tmp_path, "sku,name\na,1\n", "t.csv"),
                           "--table", "t")
        assert result.exit_code == 1
        assert error_line(result) == (
            "Error: t: is a foreign table; csvload loads only into a plain table"
        )
    finally:
        execute(major_dsn, f"DROP FOREIGN DATA WRAPPER {wrapper} CASCADE")


# -- binding the header: --map ---------------------------------------------------------------

WRITABLE_TABLE = (
    "CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " seq bigint GENERATED BY DEFAULT AS IDENTITY, sku text NOT NULL UNIQUE, name text,"
    " price numeric(10,2), gross numeric GENERATED ALWAYS AS (price * 1.2) STORED)"
)


@pytest.mark.parametrize(
    "mapping,why",
    [
        ("Code=id", "cannot write its GENERATED ALWAYS identity column 'id'"),
        ("Code=gross", "cannot write its generated column 'gross'"),
        ("Code=colour", "has no such column 'colour'"),
    ],
    ids=["identity-always", "generated", "nonexistent"],
)
def test_map_to_a_column_it_cannot_write_is_a_usage_error(major_dsn, tmp_path, mapping, why):
    execute(major_dsn, WRITABLE_TABLE + "; INSERT INTO t (sku, name) VALUES ('KEEP', 'kept')")
    path = write_file(tmp_path, "sku,name,Code\na,1,2\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "t", "--map", mapping)
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: --map {mapping}: t {why} (writable columns: seq, sku, name, price)"
    )
    assert query(major_dsn, "SELECT sku, name FROM t") == [("KEEP", "kept")]


def test_default_for_a_column_it_cannot_write_is_a_usage_error(major_dsn, tmp_path):
    execute(major_dsn, WRITABLE_TABLE)
    result = quiet_cli(major_dsn, "import", write_file(tmp_path, "sku\na\n", "t.csv"), "--table",
                       "t",
                       "--default", "gross=1")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: --default gross=1: t cannot write its generated column 'gross'"
        " (writable columns: seq, sku, name, price)"
    )


def test_map_renames_headers_onto_any_writable_column(major_dsn, tmp_path):
    execute(major_dsn, WRITABLE_TABLE)
    path = write_file(tmp_path, "Article No,Title,Colour,Seq Nr\nA-1,Oak,red,7\n", "t.csv")
    result = cli(major_dsn, "import", path, "--table", "t", "--map", "Article No=sku",
                 "--map", "title=name", "--map", "Seq Nr=seq")
    assert result.exit_code == 0, result.stderr
    assert "ignoring unknown columns: Colour" in result.stderr
    assert query(major_dsn, "SELECT sku, name, seq, price FROM t") == [("A-1", "Oak", 7, None)]


def test_headers_bind_case_insensitively_and_unknown_ones_are_ignored(major_dsn):
    execute(major_dsn, WRITABLE_TABLE)
    target = target_of(major_dsn, "t")
    plan = bind(target, ["\ufeffSKU", "Colour", "Price", "ID"], Binding(), "t.csv line 1")
    assert [(f.column.name, f.index) for f in plan.fields] == [("sku", 0), ("price", 2)]
    # id is GENERATED ALWAYS: a header of that name is ignored, not written.
    assert plan.ignored == ("Colour", "ID")
    assert plan.touch is None  # no updated_at column


def test_two_headers_for_one_column_is_a_usage_error(major_dsn):
    execute(major_dsn, WRITABLE_TABLE)
    target = target_of(major_dsn, "t")
    with pytest.raises(MappingError) as e:
        bind(target, ["sku", "Name", "Title"], Binding(mapping=(("Title", "name"),)), "f line 1")
    assert str(e.value) == (
        "f line 1: columns 'Name' and 'Title' both map to name (rename one, or --map it to"
        " another column)"
    )


def test_key_column_missing_from_the_header(major_dsn):
    execute(major_dsn, WRITABLE_TABLE)
    with pytest.raises(MissingColumnError) as e:
        bind(target_of(major_dsn, "t"), ["name", "price"], Binding(), "f line 1")
    assert str(e.value) == (
        "f line 1: no sku column in the header (found 'name', 'price'; use --map 'Your Column=sku')"
    )


# -- columns new rows need; --touch ----------------------------------------------------------

DJANGO_LIKE = (
    'CREATE TABLE "catalog_product" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY DEFAULT'
    ' AS IDENTITY, "sku" varchar(64) NOT NULL UNIQUE, "name" varchar(255) NOT NULL,'
    ' "active" boolean NOT NULL, "created_at" timestamp with time zone NOT NULL,'
    ' "updated_at" timestamp with time zone NOT NULL, "stock" integer NOT NULL)'
)


def test_not_null_column_without_default_names_the_fix(major_dsn, tmp_path):
    execute(major_dsn, DJANGO_LIKE)
    path = write_file(tmp_path, "sku,name,active,stock\na,x,true,1\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "catalog_product")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: catalog_product.created_at is NOT NULL and has no default;"
        " add --default created_at=now"
    )
    # Each in turn, until every column new rows need is filled.
    result = quiet_cli(major_dsn, "import",
                       write_file(tmp_path, "sku,name,active\na,x,true\n", "b.csv"),
                       "--table", "catalog_product", "--default", "created_at=now")
    assert error_line(result) == (
        "Error: catalog_product.stock is NOT NULL and has no default; add --default stock=VALUE"
    )
    assert query(major_dsn, "SELECT count(*) FROM catalog_product") == [(0,)]
    ok = quiet_cli(major_dsn, "import", path, "--table", "catalog_product", "--default",
                   "created_at=now")
    assert ok.exit_code == 0, ok.stderr
    assert query(major_dsn, "SELECT sku, name, active, stock, created_at = updated_at"
                 " FROM catalog_product") == [("a", "x", True, 1, True)]


def test_no_touch_leaves_updated_at_to_be_filled(major_dsn, tmp_path):
    execute(major_dsn, DJANGO_LIKE)
    result = quiet_cli(major_dsn, "import",
                       write_file(tmp_path, "sku,name,active,stock\na,x,t,1\n", "t.csv"),
                       "--table", "catalog_product", "--default", "created_at=now", "--no-touch")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: catalog_product.updated_at is NOT NULL and has no default;"
        " add --default updated_at=now"
    )


def test_touch_binding(major_dsn):
    execute(major_dsn, DJANGO_LIKE + "; ALTER TABLE catalog_product ADD seen_at timestamp,"
            " ADD note text")
    target = target_of(major_dsn, "catalog_product")
    header = ["sku", "name", "active", "stock", "created_at"]
    assert bind(target, header, Binding(), "f").touch.name == "updated_at"
    assert bind(target, header, Binding(touch="seen_at", defaults=(("updated_at", "now"),)),
                "f").touch.name == "seen_at"
    no_touch = Binding(no_touch=True, defaults=(("updated_at", "now"),))
    assert bind(target, header, no_touch, "f").touch is None
    # A file that supplies updated_at itself is not touched over.
    assert bind(target, [*header, "updated_at"], Binding(), "f").touch is None
    with pytest.raises(MappingError) as e:
        bind(target, header, Binding(touch="note"), "f")
    assert str(e.value) == "--touch note: catalog_product.note is text, not a timestamp"
    with pytest.raises(MappingError) as e:
        bind(target, header, Binding(touch="created_at"), "f")
    assert str(e.value) == (
        "--touch created_at: the file has that column too; touch a column the file does not"
        " supply"
    )
    with pytest.raises(TargetError):
        bind(target, header[:-1], Binding(), "f")  # created_at: nothing fills it


def test_touch_and_no_touch_together_is_a_usage_error(major_dsn, tmp_path):
    execute(major_dsn, DJANGO_LIKE)
    result = quiet_cli(major_dsn, "import", write_file(tmp_path, "sku\na\n", "t.csv"), "--table",
                       "catalog_product",
                       "--touch", "updated_at", "--no-touch")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: --touch and --no-touch contradict each other"
    )
