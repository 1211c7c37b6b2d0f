"""Issue 19, the binding and SQL-value findings: names the user writes bind exactly before
ignoring case, and ambiguity is a usage error; identifiers quoted in hints and index
definitions; varchar(n)/char(n) values as their cast gives them; --decimal-comma never
guesses; the key's own collation for the dedupe; partitions; wide files; types without
an equality operator; --statement-timeout while the table is described.  Against
PostgreSQL 15 and 18 (major_dsn)."""

from __future__ import annotations

import pytest
from test_target import cli, ddl, error_line, put, rows, target_of

from csvload.errors import MappingError
from csvload.target import Binding, bind

# -- item 8: one resolver for every name -----------------------------------------------------


def test_header_binds_to_the_exactly_spelt_column_first(major_dsn, tmp_path):
    ddl(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    path = put(tmp_path, "sku,name,Name\nA-1,lower,upper\n")
    result = cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 0, result.stderr
    assert rows(major_dsn, 'SELECT sku, name, "Name" FROM cc') == [("A-1", "lower", "upper")]
    path = put(tmp_path, "sku,name\nA-2,only\n", "b.csv")
    assert cli(major_dsn, "import", path, "--table", "cc").exit_code == 0
    assert rows(major_dsn, "SELECT name, \"Name\" FROM cc WHERE sku = 'A-2'") == [("only", None)]


def test_header_two_columns_match_ignoring_case_is_a_usage_error(major_dsn, tmp_path):
    ddl(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    path = put(tmp_path, "sku,NAME\nA-1,x\n")
    result = cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: {path} line 1: 'NAME' matches name and \"Name\" ignoring case"
        " (rename the header as the column is spelt, or --map NAME=COLUMN)"
    )
    assert rows(major_dsn, "SELECT count(*) FROM cc") == [(0,)]


@pytest.mark.parametrize(
    "option, message",
    [
        (("--default", "NAME=x"),
         "--default NAME=x: 'NAME' matches name and \"Name\" ignoring case"),
        (("--touch", "STAMP"),
         "--touch STAMP: 'STAMP' matches stamp and \"Stamp\" ignoring case"),
        (("--scope", "NAME=x"),
         "--scope NAME=x: 'NAME' matches name and \"Name\" ignoring case"),
        (("--map", "label=NAME"),
         "--map label=NAME: 'NAME' matches name and \"Name\" ignoring case"),
        (("--key", "SKU"), "--key SKU: 'SKU' matches sku and \"Sku\" ignoring case"),
    ],
)
def test_option_naming_two_columns_ignoring_case_is_a_usage_error(
    major_dsn, tmp_path, option, message
):
    ddl(
        major_dsn,
        'CREATE TABLE cc (sku text PRIMARY KEY, "Sku" text, name text, "Name" text,'
        ' stamp timestamptz, "Stamp" timestamptz)',
    )
    path = put(tmp_path, "sku,label\nA-1,x\n")
    result = cli(major_dsn, "import", path, "--table", "cc", *option)
    assert result.exit_code == 2, result.stderr
    assert error_line(result) == f"Error: {message} (write the column exactly as it is spelt)"
    assert rows(major_dsn, "SELECT count(*) FROM cc") == [(0,)]


def test_map_and_default_bind_the_exactly_spelt_column(major_dsn, tmp_path):
    ddl(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    path = put(tmp_path, "sku,label\nA-1,x\n")
    result = cli(major_dsn, "import", path, "--table", "cc", "--map", "label=Name",
                 "--default", "name=d")
    assert result.exit_code == 0, result.stderr
    assert rows(major_dsn, 'SELECT name, "Name" FROM cc') == [("d", "x")]


def test_key_found_in_the_header_exactly_first(major_dsn, tmp_path):
    """The key check before connecting (Source.find_keys) matches as bind() does."""
    ddl(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, "SKU" text)')
    path = put(tmp_path, "SKU,sku\nupper,A-1\n")
    result = cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 0, result.stderr
    assert rows(major_dsn, 'SELECT sku, "SKU" FROM cc') == [("A-1", "upper")]


def test_two_headers_folding_to_the_key_is_a_usage_error(major_dsn, tmp_path):
    ddl(major_dsn, "CREATE TABLE cc (sku text PRIMARY KEY)")
    path = put(tmp_path, "SKU,Sku\nA-1,A-2\n")
    result = cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: {path} line 1: 'sku' matches \"SKU\" and \"Sku\" ignoring case"
        " (rename one, or --map one of them to sku)"
    )


def test_bind_library_refuses_an_ambiguous_header(major_dsn):
    ddl(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    with pytest.raises(MappingError):
        bind(target_of(major_dsn, "cc"), ["sku", "NAME"], Binding(), "f line 1")


# -- item 16: keys named like keywords, quoted everywhere -------------------------------------

KEYWORD_KEYS = {
    "order": ('CREATE TABLE k ("order" text, note text); CREATE UNIQUE INDEX ON k ("order")',
              "order"),
    "lower-user": (
        'CREATE TABLE k ("user" text, note text); CREATE UNIQUE INDEX ON k (lower("user"))',
        "user",
    ),
    "mixed-case": ('CREATE TABLE k ("SKU" varchar(9), note text, UNIQUE ("SKU"))', "SKU"),
    "lower-mixed-case": (
        'CREATE TABLE k ("SKU" varchar(9), note text); CREATE UNIQUE INDEX ON k (lower("SKU"))',
        "SKU",
    ),
}


@pytest.mark.parametrize("case", list(KEYWORD_KEYS))
def test_key_named_like_a_keyword_or_in_capitals_is_found(major_dsn, tmp_path, case):
    statements, key = KEYWORD_KEYS[case]
    ddl(major_dsn, statements)
    path = put(tmp_path, f"{key},note\nA-1,x\nA-1,y\n")
    result = cli(major_dsn, "import", path, "--table", "k", "--key", key, "--json")
    assert result.exit_code == 0, result.stderr
    assert rows(major_dsn, "SELECT note FROM k") == [("y",)]


def test_no_unique_index_hint_is_valid_sql(major_dsn, tmp_path):
    ddl(major_dsn, 'CREATE TABLE "order" ("user" text, "SKU" text)')
    path = put(tmp_path, "user,SKU\na,b\n")
    result = cli(major_dsn, "import", path, "--table", '"order"', "--key", "user,SKU")
    assert result.exit_code == 1
    line = error_line(result)
    assert line == (
        'Error: "order": no unique index or constraint on (user, SKU), so rows cannot be'
        ' matched by that key (create one: CREATE UNIQUE INDEX ON "order" ("user", "SKU"))'
    )
    ddl(major_dsn, line.split("create one: ")[1][:-1])  # the hint runs as it is
    assert cli(major_dsn, "import", path, "--table", '"order"', "--key", "user,SKU"
               ).exit_code == 0
