"""Issue 19, the binding and SQL-value findings: names the user writes bind exactly before
ignoring case, and ambiguity is a usage error; identifiers quoted in hints and index
definitions; varchar(n)/char(n) values as their cast gives them; --decimal-comma never
guesses; the key's own collation for the dedupe; partitions; wide files; types without
an equality operator; --statement-timeout while the table is described.  Against
PostgreSQL 15 and 18 (major_dsn)."""

from __future__ import annotations

import csv
import json
import time
from decimal import Decimal

import psycopg
import pytest
from helpers.cli import error_line, quiet_cli
from helpers.db import execute, query
from helpers.files import write_file
from helpers.library import target_of

from csvload.errors import MappingError
from csvload.table.binding import Binding, bind

# -- item 8: one resolver for every name -----------------------------------------------------


def test_header_binds_to_the_exactly_spelt_column_first(major_dsn, tmp_path):
    execute(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    path = write_file(tmp_path, "sku,name,Name\nA-1,lower,upper\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 0, result.stderr
    assert query(major_dsn, 'SELECT sku, name, "Name" FROM cc') == [("A-1", "lower", "upper")]
    path = write_file(tmp_path, "sku,name\nA-2,only\n", "b.csv")
    assert quiet_cli(major_dsn, "import", path, "--table", "cc").exit_code == 0
    assert query(major_dsn, "SELECT name, \"Name\" FROM cc WHERE sku = 'A-2'") == [("only", None)]


def test_header_two_columns_match_ignoring_case_is_a_usage_error(major_dsn, tmp_path):
    execute(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    path = write_file(tmp_path, "sku,NAME\nA-1,x\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: {path} line 1: 'NAME' matches name and \"Name\" ignoring case"
        " (rename the header as the column is spelt, or --map NAME=COLUMN)"
    )
    assert query(major_dsn, "SELECT count(*) FROM cc") == [(0,)]


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
    execute(
            major_dsn,
            'CREATE TABLE cc (sku text PRIMARY KEY, "Sku" text, name text, "Name" text,'
            ' stamp timestamptz, "Stamp" timestamptz)',
    )
    path = write_file(tmp_path, "sku,label\nA-1,x\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "cc", *option)
    assert result.exit_code == 2, result.stderr
    assert error_line(result) == f"Error: {message} (write the column exactly as it is spelt)"
    assert query(major_dsn, "SELECT count(*) FROM cc") == [(0,)]


def test_map_and_default_bind_the_exactly_spelt_column(major_dsn, tmp_path):
    execute(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
    path = write_file(tmp_path, "sku,label\nA-1,x\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "cc", "--map", "label=Name",
                       "--default", "name=d")
    assert result.exit_code == 0, result.stderr
    assert query(major_dsn, 'SELECT name, "Name" FROM cc') == [("d", "x")]


def test_key_found_in_the_header_exactly_first(major_dsn, tmp_path):
    """The key check before connecting (Source.find_keys) matches as bind() does."""
    execute(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, "SKU" text)')
    path = write_file(tmp_path, "SKU,sku\nupper,A-1\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 0, result.stderr
    assert query(major_dsn, 'SELECT sku, "SKU" FROM cc') == [("A-1", "upper")]


def test_two_headers_folding_to_the_key_is_a_usage_error(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE cc (sku text PRIMARY KEY)")
    path = write_file(tmp_path, "SKU,Sku\nA-1,A-2\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "cc")
    assert result.exit_code == 2
    assert error_line(result) == (
        f"Error: {path} line 1: 'sku' matches \"SKU\" and \"Sku\" ignoring case"
        " (rename one, or --map one of them to sku)"
    )


def test_bind_library_refuses_an_ambiguous_header(major_dsn):
    execute(major_dsn, 'CREATE TABLE cc (sku text PRIMARY KEY, name text, "Name" text)')
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
    execute(major_dsn, statements)
    path = write_file(tmp_path, f"{key},note\nA-1,x\nA-1,y\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "k", "--key", key, "--json")
    assert result.exit_code == 0, result.stderr
    assert query(major_dsn, "SELECT note FROM k") == [("y",)]


def test_no_unique_index_hint_is_valid_sql(major_dsn, tmp_path):
    execute(major_dsn, 'CREATE TABLE "order" ("user" text, "SKU" text)')
    path = write_file(tmp_path, "user,SKU\na,b\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", '"order"', "--key", "user,SKU")
    assert result.exit_code == 1
    line = error_line(result)
    assert line == (
        'Error: "order": no unique index or constraint on (user, SKU), so rows cannot be'
        ' matched by that key (create one: CREATE UNIQUE INDEX ON "order" ("user", "SKU"))'
    )
    execute(major_dsn, line.split("create one: ")[1][:-1])  # the hint runs as it is
    assert quiet_cli(major_dsn, "import", path, "--table", '"order"', "--key", "user,SKU"
               ).exit_code == 0


# -- item 12: varchar(n) and char(n) values are what their cast gives ------------------------


def import_json(dsn: str, path: str, *extra: str) -> dict:
    result = quiet_cli(dsn, "import", path, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_trailing_spaces_past_n_are_dropped_and_a_reimport_is_unchanged(major_dsn, tmp_path):
    execute(
            major_dsn,
            "CREATE TABLE w (sku varchar(6) PRIMARY KEY, v varchar(3), c char(3), k char(4),"
            " updated_at timestamptz NOT NULL DEFAULT now())",
    )
    path = write_file(tmp_path,
                      'sku,v,c,k\n"A-1   ","abc ","ab ","x"\n"B-2","a  ","abc  ","y   "\n', "t.csv")
    first = import_json(major_dsn, path, "--table", "w")
    assert first["inserted"] == 2
    stored = query(major_dsn, "SELECT sku, v, c::text, k::text, updated_at FROM w ORDER BY sku")
    assert [r[:4] for r in stored] == [("A-1   ", "abc", "ab", "x"), ("B-2", "a  ", "abc", "y")]
    again = import_json(major_dsn, path, "--table", "w")
    assert (again["unchanged"], again["updated"], again["inserted"]) == (2, 0, 0)
    assert query(major_dsn, "SELECT sku, v, c::text, k::text, updated_at FROM w ORDER BY sku"
                ) == stored
    verified = quiet_cli(major_dsn, "verify", path, "--table", "w")
    assert verified.exit_code == 0, verified.stderr


def test_longer_than_n_in_more_than_spaces_is_still_a_reject(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE w (sku text PRIMARY KEY, v varchar(3))")
    path = write_file(tmp_path, 'sku,v\nA-1,"ab  c"\nB-2,"abc   "\n', "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "w", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    assert query(major_dsn, "SELECT sku, v FROM w") == [("B-2", "abc")]
    assert "v is 5 characters, longer than character varying(3)" in (
        tmp_path / "t.csv.rejects.csv").read_text()


# -- item 16: types without an equality operator ---------------------------------------------


def has_xml(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute("SELECT '<a/>'::xml")
        except psycopg.errors.FeatureNotSupported:
            return False
    return True


def test_types_without_equality_reimport_unchanged_then_changed(major_dsn, tmp_path):
    """point, xml (when the server is built with it), json, box (whose = compares areas)
    and point[]: no btree equality, compared by their text."""
    xml = has_xml(major_dsn)
    execute(
            major_dsn,
            "CREATE TABLE g (sku text PRIMARY KEY, pt point, doc " + ("xml" if xml else "text")
            + ", j json, b box, ps point[], updated_at timestamptz NOT NULL DEFAULT now())",
    )
    header = "sku,pt,doc,j,b,ps\n"
    path = write_file(tmp_path, header + 'A-1,"(1,2)",<a>x</a>,"{""a"": 1}","(1,1),(0,0)",'
                      '"{""(1,2)""}"\n', "t.csv")
    assert import_json(major_dsn, path, "--table", "g")["inserted"] == 1
    before = query(major_dsn, "SELECT g::text FROM g")
    again = import_json(major_dsn, path, "--table", "g")
    assert (again["unchanged"], again["updated"]) == (1, 0)
    assert query(major_dsn, "SELECT g::text FROM g") == before
    for changed in ('"(1,3)",<a>x</a>,"{""a"": 1}","(1,1),(0,0)","{""(1,2)""}"',
                    '"(1,2)",<a>y</a>,"{""a"": 1}","(1,1),(0,0)","{""(1,2)""}"',
                    '"(1,2)",<a>y</a>,"{""a"": 2}","(1,1),(0,0)","{""(1,2)""}"',
                    # The same area, another box: box's = would call them equal.
                    '"(1,2)",<a>y</a>,"{""a"": 2}","(2,2),(1,1)","{""(1,2)""}"',
                    '"(1,2)",<a>y</a>,"{""a"": 2}","(2,2),(1,1)","{""(5,5)""}"'):
        p = write_file(tmp_path, header + "A-1," + changed + "\n", "c.csv")
        assert import_json(major_dsn, p, "--table", "g")["updated"] == 1, changed
    assert query(major_dsn, "SELECT pt::text, doc::text, j::text, b::text, ps::text FROM g"
                ) == [("(1,2)", "<a>y</a>", '{"a": 2}', "(2,2),(1,1)", '{"(5,5)"}')]
    verified = quiet_cli(major_dsn, "verify", p, "--table", "g")
    assert verified.exit_code == 0, verified.stderr


# -- item 13: --decimal-comma never guesses --------------------------------------------------

ACCEPTED = [("1234,56", "1234.56"), ("1.234,56", "1234.56"), ("1.234.567,8", "1234567.8"),
            ("-3", "-3"), ("12", "12"), ("1.234", "1234"), (" 7,5 ", "7.5"), ("+0,25", "0.25")]
REFUSED = ["2.50", "1.5e3", "1,2,3", "1.23,4", "12.3456,7", ",5", "1.2345"]


def test_decimal_comma_reads_its_form_and_rejects_the_rest(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE n (sku text PRIMARY KEY, price numeric(12,2), score float8)")
    lines = [f'A{i},"{raw}","{raw}"' for i, (raw, _) in enumerate(ACCEPTED)]
    lines += [f'B{i},"{raw}",' for i, raw in enumerate(REFUSED)]
    path = write_file(tmp_path, "sku,price,score\n" + "\n".join(lines) + "\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "n", "--decimal-comma",
                       "--max-errors", str(len(REFUSED)))
    assert result.exit_code == 3, result.stderr
    assert query(major_dsn, "SELECT sku, price::text, score::text FROM n ORDER BY sku") == [
        (f"A{i}", str(Decimal(want).quantize(Decimal("0.01"))), str(float(want)).removesuffix(
            ".0")) for i, (_, want) in enumerate(ACCEPTED)
    ]
    with open(tmp_path / "t.csv.rejects.csv", newline="") as f:
        rejects = list(csv.reader(f))[1:]
    assert [reason for _, reason, _ in rejects] == [
        f"price '{raw}' is not a decimal-comma number (like 1.234,56)" for raw in REFUSED
    ]


# -- item 16: --statement-timeout bounds describing the table --------------------------------


def test_statement_timeout_bounds_the_wait_to_describe_a_locked_table(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE s (sku text PRIMARY KEY, name text)")
    path = write_file(tmp_path, "sku,name\nA-1,x\n", "t.csv")
    with psycopg.connect(major_dsn) as holder:
        holder.execute("LOCK TABLE s IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = quiet_cli(major_dsn, "import", path, "--table", "s", "--statement-timeout", "1")
        elapsed = time.monotonic() - started
        holder.rollback()
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {path}: canceling statement due to statement timeout"
        " (raise --statement-timeout)"
    )
    assert elapsed < 10
    assert query(major_dsn, "SELECT count(*) FROM s") == [(0,)]


# -- item 16: a nondeterministic (ICU) key collation groups the file's keys ------------------


def test_case_insensitive_icu_key_last_occurrence_wins(major_dsn, tmp_path):
    try:
        execute(major_dsn, "CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2',"
                       " deterministic = false)")
    except psycopg.Error as e:
        pytest.skip(f"the server has no ICU collations: {e}")
    execute(major_dsn, "CREATE TABLE u (sku text COLLATE ci UNIQUE, name text)")
    path = write_file(tmp_path, "sku,name\nA-1,first\na-1,second\nB-2,b\n", "t.csv")
    first = import_json(major_dsn, path, "--table", "u")
    assert (first["inserted"], first["duplicates"]) == (2, 1)
    assert query(major_dsn, "SELECT sku, name FROM u ORDER BY name") == [
        ("B-2", "b"), ("a-1", "second")]
    again = write_file(tmp_path, "sku,name\nA-1,third\nb-2,b\n", "b.csv")
    second = import_json(major_dsn, again, "--table", "u")
    # The key's collation says b-2 is B-2: the row is found, and (an exact key, equal by
    # its own definition) left as it is spelt.
    assert (second["inserted"], second["updated"], second["unchanged"]) == (0, 1, 1)
    assert query(major_dsn, "SELECT sku, name FROM u ORDER BY name") == [
        ("B-2", "b"), ("a-1", "third")]


# -- item 16: a file wider than PostgreSQL's tables ------------------------------------------


def test_file_wider_than_a_table_fails_in_one_line_before_writing(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE s (sku text PRIMARY KEY, name text)")
    extra = [f"x{i}" for i in range(1698)]
    path = write_file(tmp_path, ",".join(["sku", "name", *extra]) + "\n"
                      + ",".join(["A-1", "n", *("" for _ in extra)]) + "\n", "wide.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "s")
    assert result.exit_code != 0
    assert error_line(result) == (
        f"Error: {path} line 1: 1700 columns; PostgreSQL tables hold at most 1600"
        " (csvload stages at most 1599)"
    )
    assert query(major_dsn, "SELECT count(*) FROM s") == [(0,)]


# -- item 16: --default fills an empty text field of a new row -------------------------------


def test_default_fills_empty_text_fields_of_new_rows_only(major_dsn, tmp_path):
    execute(major_dsn, "CREATE TABLE d (sku text PRIMARY KEY, label text, note varchar(9),"
                   " qty int); INSERT INTO d VALUES ('OLD', 'kept', 'kept', 1)")
    path = write_file(tmp_path, "sku,label,note,qty\nOLD,,,\nNEW,,given,\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "d", "--default", "label=none",
                       "--default", "note=n/a", "--default", "qty=0")
    assert result.exit_code == 0, result.stderr
    assert query(major_dsn, "SELECT * FROM d ORDER BY sku") == [
        ("NEW", "none", "given", 0), ("OLD", "", "", None)]
