"""Issue 13, typed values: every supported type stored as the column's type, the empty-field
rules, and the values that do not fit: each a reject with its line, column and reason,
counted against --max-errors.  A duplicate of another unique index fails the import in one
line.  Against PostgreSQL 15 and 18 (major_dsn)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from helpers.cli import error_line, quiet_cli
from helpers.files import write_file

TYPED = """
CREATE TYPE colour AS ENUM ('red', 'green', 'blue');
CREATE TABLE catalog_category (id integer PRIMARY KEY);
INSERT INTO catalog_category VALUES (1), (2);
CREATE TABLE catalog_product (
    sku varchar(64) NOT NULL UNIQUE,
    name varchar(255),
    code char(4),
    price numeric(10,2),
    stock integer CHECK (stock >= 0),
    small smallint,
    big bigint,
    ratio real,
    score double precision,
    active boolean,
    born date,
    seen timestamp,
    at timestamptz,
    opens time,
    uid uuid,
    doc json,
    data jsonb,
    colour colour,
    tags text[],
    sizes integer[],
    category_id integer REFERENCES catalog_category (id),
    barcode text UNIQUE
);
"""

HEADER = (
    "sku,name,code,price,stock,small,big,ratio,score,active,born,seen,at,opens,uid,doc,data,"
    "colour,tags,sizes,category_id,barcode"
)
COLUMNS = HEADER.split(",")
UID = "0b5e2d1c-8f3a-4c1e-9d2b-7a6f5e4d3c2b"


def record(**values: str) -> str:
    """One CSV record of the typed table, each field empty unless given (quoted as needed)."""
    values.setdefault("barcode", "B-" + values.get("sku", ""))  # barcode is UNIQUE, '' too
    out = []
    for c in COLUMNS:
        v = values.get(c, "")
        out.append('"' + v.replace('"', '""') + '"' if any(x in v for x in ',"\n') else v)
    return ",".join(out)


@pytest.fixture
def typed(major_dsn):
    with psycopg.connect(major_dsn, autocommit=True) as conn:
        conn.execute(TYPED)
    return major_dsn


def fetch(dsn: str, columns: str = "*", where: str = "true") -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT {columns} FROM catalog_product WHERE {where} ORDER BY sku"
        ).fetchall()


def checksum(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT coalesce(md5(string_agg(p::text, E'\\n' ORDER BY sku)), 'empty')"
            " FROM catalog_product p"
        ).fetchone()[0]


def load(dsn: str, path: str, *extra: str):
    return quiet_cli(dsn, "import", path, "--table", "catalog_product", "--json", *extra)


# -- every type, stored as itself -------------------------------------------------------------

FULL = dict(
    sku="A-1",
    name="Oak table",
    code="AB",
    price="1234.5",
    stock="7",
    small="-32768",
    big="9223372036854775807",
    ratio="0.25",
    score="-1.5e10",
    active="Yes",
    born="2024-02-29",
    seen="2024-01-02 03:04:05.5",
    at="2024-01-02T03:04:05+02:00",
    opens="08:30",
    uid=UID,
    doc='{"b": 1, "a": [1, 2]}',
    data='{"b": 1, "a": null}',
    colour="green",
    tags='{oak,"big table",""}',
    sizes="{1,2,3}",
    category_id="2",
    barcode="4006381333931",
)


def test_every_type_is_stored_as_the_column_type(typed, tmp_path):
    result = load(typed, write_file(tmp_path, HEADER + "\n" + record(**FULL) + "\n", "t.csv"))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["inserted"] == 1
    with psycopg.connect(typed) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        row = conn.execute("SELECT * FROM catalog_product").fetchone()
        doc_text = conn.execute("SELECT doc::text FROM catalog_product").fetchone()[0]
    assert row == (
        "A-1",
        "Oak table",
        "AB  ",  # char(4) pads
        Decimal("1234.50"),
        7,
        -32768,
        9223372036854775807,
        0.25,
        -1.5e10,
        True,
        dt.date(2024, 2, 29),
        dt.datetime(2024, 1, 2, 3, 4, 5, 500000),
        dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC),
        dt.time(8, 30),
        uuid.UUID(UID),
        {"b": 1, "a": [1, 2]},
        {"a": None, "b": 1},
        "green",
        ["oak", "big table", ""],
        [1, 2, 3],
        2,
        "4006381333931",
    )
    assert doc_text == '{"b": 1, "a": [1, 2]}'  # json keeps the text as written


@pytest.mark.parametrize(
    "raw,stored",
    [
        ("yes", True), ("YES", True), ("Yes", True), ("no", False), ("NO", False),
        ("nO", False), ("true", True), ("FALSE", False), ("t", True), ("f", False),
        ("1", True), ("0", False), ("on", True), ("off", False), ("y", True), ("n", False),
    ],
)
def test_booleans_take_yes_and_no_in_any_case(typed, tmp_path, raw, stored):
    result = load(typed, write_file(tmp_path, f"sku,active\nA,{raw}\n", "t.csv"))
    assert result.exit_code == 0, result.stderr
    assert fetch(typed, "active") == [(stored,)]


def test_decimal_comma_reads_thousands_dots_and_a_comma(typed, tmp_path):
    text = 'sku,price,ratio,score,stock\nA,"1.234,56","0,5","-1.000,25",12\nB,"12,5",1,2,3\n'
    result = load(typed, write_file(tmp_path, text, "t.csv"), "--decimal-comma")
    assert result.exit_code == 0, result.stderr
    assert fetch(typed, "sku, price, ratio, score, stock") == [
        ("A", Decimal("1234.56"), 0.5, -1000.25, 12),
        ("B", Decimal("12.50"), 1.0, 2.0, 3),
    ]


# -- values that do not fit --------------------------------------------------------------------

LONG = "x" * 256

# (fields of one record, its reason); each record on its own line from line 3 on.
MISFITS = [
    (dict(price="abc"), "price is 'abc', not a numeric(10,2)"),
    (dict(price="123456789.00"), "price is '123456789.00', out of range for numeric(10,2)"),
    (dict(price="12,50"), "price is '12,50', not a numeric(10,2) (use --decimal-comma)"),
    (dict(price="12.345"), "price is '12.345', more decimals than numeric(10,2) holds"),
    (dict(stock="1.5"), "stock is '1.5', not an integer (a whole number is needed)"),
    (dict(stock="99999999999"), "stock is '99999999999', out of range for integer"),
    (dict(small="40000"), "small is '40000', out of range for smallint"),
    (dict(name=LONG), "name is 256 characters, longer than character varying(255)"),
    (dict(code="ABCDE"), "code is 5 characters, longer than character(4)"),
    (dict(born="2024-02-30"), "born is '2024-02-30', not a date"),
    (dict(at="yesterday noon"), "at is 'yesterday noon', not a timestamp with time zone"),
    (dict(opens="25:61"), "opens is '25:61', not a time without time zone"),
    (dict(uid="0b5e2d1c-nope"), "uid is '0b5e2d1c-nope', not a uuid"),
    (dict(doc='{"a": '), "doc is '{\"a\": ', not a json"),
    (dict(data="[1,"), "data is '[1,', not a jsonb"),
    (dict(colour="purple"), "colour is 'purple', not a label of colour (red, green, blue)"),
    (dict(sizes="{1,x}"), "sizes is '{1,x}', not an integer[]"),
    (dict(active="maybe"), "active is 'maybe', not a boolean (use true/false, t/f, 1/0 or yes/no)"),
    (dict(stock="-3"), "stock -3 violates catalog_product_stock_check"),
    (dict(category_id="99"), "category_id 99 has no row in catalog_category"),
]


def misfit_file() -> tuple[str, bytes]:
    """The file (a good first row, then one misfit per line) and its exact rejects file."""
    lines = [HEADER, record(sku="GOOD-0", price="1.00", stock="0", category_id="1")]
    rejects = [b"line,reason,record\r\n"]
    for i, (fields, reason) in enumerate(MISFITS):
        rec = record(sku=f"BAD-{i:02}", **fields)
        lines.append(rec)
        quoted = ('"' + rec.replace('"', '""') + '"') if any(x in rec for x in ',"') else rec
        reason_text = ('"' + reason.replace('"', '""') + '"') if any(
            x in reason for x in ',"') else reason
        rejects.append(f"{len(lines)},{reason_text},{quoted}\r\n".encode())
    lines.append(record(sku="GOOD-1", price="2.5", stock="5", colour="red"))
    return "\n".join(lines) + "\n", b"".join(rejects)


@pytest.mark.parametrize("filled", [False, True], ids=["empty-table", "filled-table"])
def test_each_misfit_is_a_reject_with_line_column_and_reason(typed, tmp_path, filled):
    if filled:
        with psycopg.connect(typed) as conn:
            conn.execute("INSERT INTO catalog_product (sku, price) VALUES ('OLD', 9)")
    text, rejects = misfit_file()
    path = write_file(tmp_path, text, "t.csv")
    result = load(typed, path, "--max-errors", str(len(MISFITS)))
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["inserted"], summary["rejected"]) == (
        len(MISFITS) + 2, 2, len(MISFITS)
    )
    assert Path(path + ".rejects.csv").read_bytes() == rejects
    assert fetch(typed, "sku, price, stock, colour, category_id") == [
        ("GOOD-0", Decimal("1.00"), 0, None, 1),
        ("GOOD-1", Decimal("2.50"), 5, "red", None),
        *([("OLD", Decimal("9.00"), None, None, None)] if filled else []),
    ]


def test_rejects_count_against_max_errors_and_nothing_is_written(typed, tmp_path):
    with psycopg.connect(typed) as conn:
        conn.execute("INSERT INTO catalog_product (sku, price) VALUES ('OLD', 9)")
    before = checksum(typed)
    text, rejects = misfit_file()
    path = write_file(tmp_path, text, "t.csv")
    result = load(typed, path, "--max-errors", str(len(MISFITS) - 1))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {len(MISFITS)} rows rejected, more than --max-errors {len(MISFITS) - 1};"
        f" nothing was imported (see {path}.rejects.csv)"
    ]
    assert checksum(typed) == before
    assert Path(path + ".rejects.csv").read_bytes() == rejects


def test_reader_and_value_rejects_together_against_max_errors(typed, tmp_path):
    """Two reader rejects (a short row) and one value reject: 3 > 2 fails."""
    before = checksum(typed)
    text = "sku,stock\nA,1\nB\nC\nD,x\n"
    result = load(typed, write_file(tmp_path, text, "t.csv"), "--max-errors", "2")
    assert result.exit_code == 1
    assert error_line(result).startswith("Error: 3 rows rejected, more than --max-errors 2;")
    assert checksum(typed) == before


def test_reject_lines_are_right_after_multiline_records_and_blank_lines(typed, tmp_path):
    text = (
        "sku,name,stock\n"  # 1
        'A,"two\nlines",1\n'  # 2-3
        "\n"  # 4
        "B,b,x\n"  # 5
        'C,"three\r\nline\nname",2\n'  # 6-8
        "\n\n"  # 9-10
        'D,"d\n",-1\n'  # 11-12
        "E,e,1.5\n"  # 13
    )
    path = write_file(tmp_path, text, "t.csv")
    result = load(typed, path, "--max-errors", "3")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b"5,\"stock is 'x', not an integer\",\"B,b,x\"\r\n"
        b'11,stock -1 violates catalog_product_stock_check,"D,""d\n"",-1"\r\n'
        b"13,\"stock is '1.5', not an integer (a whole number is needed)\",\"E,e,1.5\"\r\n"
    )
    assert fetch(typed, "sku, name, stock") == [("A", "two\nlines", 1),
                                                  ("C", "three\r\nline\nname", 2)]


def test_deferrable_foreign_key_as_django_makes_it_is_a_reject(typed, tmp_path):
    with psycopg.connect(typed, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE catalog_product DROP CONSTRAINT catalog_product_category_id_fkey;"
            " ALTER TABLE catalog_product ADD CONSTRAINT"
            " catalog_product_category_id_35bf920b_fk_catalog_category_id"
            " FOREIGN KEY (category_id) REFERENCES catalog_category (id)"
            " DEFERRABLE INITIALLY DEFERRED"
        )
        conn.execute("INSERT INTO catalog_product (sku, category_id) VALUES ('OLD', 1)")
    path = write_file(tmp_path, "sku,category_id\nOLD,99\nNEW,98\nOK,2\n", "t.csv")
    result = load(typed, path, "--max-errors", "2")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b'2,category_id 99 has no row in catalog_category,"OLD,99"\r\n'
        b'3,category_id 98 has no row in catalog_category,"NEW,98"\r\n'
    )
    assert fetch(typed, "sku, category_id") == [("OK", 2), ("OLD", 1)]


@pytest.mark.parametrize("where", ["in-file", "in-table"])
def test_duplicate_of_another_unique_index_fails_in_one_line(typed, tmp_path, where):
    with psycopg.connect(typed) as conn:
        conn.execute("INSERT INTO catalog_product (sku, barcode) VALUES ('OLD', '111')")
    before = checksum(typed)
    if where == "in-file":
        text = "sku,barcode\nA,200\nB,222\nC,300\nD,222\n"
    else:
        text = "sku,barcode\nA,200\nB,201\nC,111\n"
    path = write_file(tmp_path, text, "t.csv")
    result = load(typed, path, "--max-errors", "5")
    assert result.exit_code == 1
    value, line = ("222", 5) if where == "in-file" else ("111", 4)
    assert error_line(result) == (
        f"Error: {path} line {line}: barcode '{value}' is already used by another row of"
        " catalog_product or of the file (unique index catalog_product_barcode_key);"
        " nothing was written"
    )
    assert checksum(typed) == before


# -- empty fields ------------------------------------------------------------------------------

EMPTY_TABLE = """
CREATE TABLE t (
    sku text PRIMARY KEY,
    label text NOT NULL,
    note text,
    qty integer,
    price numeric(10,2) NOT NULL DEFAULT 1.50,
    active boolean NOT NULL DEFAULT true,
    stock integer NOT NULL,
    born date
);
INSERT INTO t VALUES ('OLD', 'old', 'n', 5, 9.99, false, 4, '2020-01-01');
"""


def test_empty_fields_mean_no_value(major_dsn, tmp_path):
    with psycopg.connect(major_dsn, autocommit=True) as conn:
        conn.execute(EMPTY_TABLE)
    text = (
        "sku,label,note,qty,price,active,stock,born\n"
        "OLD,,,,,,,\n"  # existing: text '' / NULL / stored value kept
        "NEW,,,,,,3,\n"  # new: the defaults, NULL where nullable
        "BAD,x,,,,,,\n"  # new, stock NOT NULL without default: a reject
    )
    path = write_file(tmp_path, text, "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "t", "--max-errors", "1", "--json")
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["updated"], summary["rejected"]) == (1, 1, 1)
    with psycopg.connect(major_dsn) as conn:
        assert conn.execute("SELECT * FROM t ORDER BY sku").fetchall() == [
            ("NEW", "", "", None, Decimal("1.50"), True, 3, None),
            ("OLD", "", "", None, Decimal("9.99"), False, 4, None),
        ]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b'4,"stock is empty, and t.stock is NOT NULL with no default for a new row'
        b' (add --default stock=VALUE)","BAD,x,,,,,,"\r\n'
    )


def test_default_fills_empty_fields_of_new_rows_only(major_dsn, tmp_path):
    with psycopg.connect(major_dsn, autocommit=True) as conn:
        conn.execute(EMPTY_TABLE)
    path = write_file(tmp_path, "sku,label,stock,price\nOLD,o,,\nNEW,n,,\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "t", "--default", "stock=0",
                       "--default", "price=2.25")
    assert result.exit_code == 0, result.stderr
    with psycopg.connect(major_dsn) as conn:
        assert conn.execute("SELECT sku, label, stock, price FROM t ORDER BY sku").fetchall() == [
            ("NEW", "n", 0, Decimal("2.25")),
            ("OLD", "o", 4, Decimal("9.99")),
        ]


def test_reimport_of_every_type_is_unchanged_then_one_change_updates(typed, tmp_path):
    """The merge compares every type, json (which has no = operator) and arrays included."""
    path = write_file(tmp_path, HEADER + "\n" + record(**FULL) + "\n", "t.csv")
    assert load(typed, path).exit_code == 0
    before = checksum(typed)
    again = load(typed, path)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["unchanged"] == 1
    assert checksum(typed) == before
    verified = quiet_cli(typed, "verify", path, "--table", "catalog_product")
    assert verified.exit_code == 0, verified.stderr
    changed = write_file(tmp_path, HEADER + "\n" + record(**{**FULL, "doc": '{"b": 2}'}) + "\n",
                         "c.csv")
    result = load(typed, changed)
    assert (json.loads(result.stdout)["updated"], fetch(typed, "doc")) == (1, [({"b": 2},)])


def test_columns_named_like_csvloads_own_stage_columns(major_dsn, tmp_path):
    """The stage's columns are c1..cN and ord: a table may have columns of those names."""
    with psycopg.connect(major_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (c1 integer UNIQUE, c2 integer NOT NULL,"
            " ord text CHECK (ord <> 'bad'));"
            " INSERT INTO t VALUES (1, 5, 'x')"
        )
    path = write_file(tmp_path, "c1,c2,ord\n1,,first\n1,,last\n2,,z\n3,7,bad\n4,8,ok\n", "t.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "t", "--key", "c1", "--max-errors",
                       "2",
                       "--json")
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["updated"], summary["inserted"], summary["duplicates"]) == (1, 1, 1)
    with psycopg.connect(major_dsn) as conn:
        assert conn.execute("SELECT * FROM t ORDER BY c1").fetchall() == [
            (1, 5, "last"), (4, 8, "ok"),
        ]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b'4,"c2 is empty, and t.c2 is NOT NULL with no default for a new row'
        b' (add --default c2=VALUE)","2,,z"\r\n'
        b"5,ord bad violates t_ord_check,\"3,7,bad\"\r\n"
    )
