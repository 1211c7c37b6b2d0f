"""Issue 21, guards on how much and how far a feed may change the table: --min-rows,
--max-updated and --max-change (docs/guards.md).  Each guard tripping (exit 1, the exact
line, the table unchanged, --dry-run the same) and passing; the held-back row as a reject
(its rejects-file row, --max-errors, --missing); a csvload.toml feed setting them; bad
values.  On csvload's products (with a price column added) and on a user table with typed
columns and a composite key, on PostgreSQL 15 and 18."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from helpers.cli import assert_balanced, cli, only_line
from helpers.db import execute, query, written_checksum
from helpers.files import write_file, write_toml

from csvload.table import schema

# A supplier's items: a composite key, a nullable price, a NOT NULL stock (an empty field
# keeps it), a double precision weight.
ITEM_DDL = """
CREATE TABLE guard_item (
    id serial PRIMARY KEY,
    supplier varchar(16) NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    price numeric(10, 2),
    stock integer NOT NULL DEFAULT 0,
    weight double precision,
    active boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT guard_item_supplier_sku UNIQUE (supplier, sku)
)
"""


@dataclass(frozen=True)
class Kind:
    id: str
    table: str
    args: tuple[str, ...]
    header: str

    def create(self, dsn: str) -> None:
        with psycopg.connect(dsn) as c:
            if self.table == "products":
                schema.create_products(c)
                c.execute("ALTER TABLE products ADD COLUMN price numeric(10, 2)")
            else:
                c.execute(ITEM_DDL)

    def line(self, sku: str, price: str) -> str:
        if self.table == "products":
            return f"{sku},Name {sku},{price}"
        return f"ACME,{sku},Name {sku},{price}"

    def csv(self, prices: dict[str, str]) -> str:
        return "\n".join([self.header, *(self.line(s, p) for s, p in prices.items())]) + "\n"


PRODUCTS = Kind("products", "products", (), "sku,name,price")
ITEMS = Kind(
    "user_table", "guard_item", ("--table", "guard_item", "--key", "supplier,sku"),
    "supplier,sku,name,price",
)
KINDS = pytest.mark.parametrize("kind", [PRODUCTS, ITEMS], ids=lambda k: k.id)
PRICES = {f"K{i:02}": f"{10 + i}.00" for i in range(20)}


@pytest.fixture
def dsn(major_dsn):
    return major_dsn


def load(dsn: str, kind: Kind, path, *args: str):
    return cli(dsn, "import", str(path), *kind.args, "--quiet", *args)


def seeded(dsn: str, kind: Kind, tmp_path: Path, prices=PRICES) -> str:
    """The target with one row per sku, loaded by csvload; its checksum."""
    kind.create(dsn)
    result = load(dsn, kind, write_file(tmp_path, kind.csv(prices), "seed.csv"))
    assert result.exit_code == 0, result.stderr
    return written_checksum(dsn, kind.table)


def summary(result) -> dict:
    assert result.stdout, result.stderr
    s = json.loads(result.stdout)
    assert_balanced(s)
    return s


def prices(dsn: str, kind: Kind) -> dict[str, str | None]:
    return {
        sku: None if price is None else str(price)
        for sku, price in query(dsn, f"SELECT sku, price FROM {kind.table}")
    }


def rejects(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


# -- --min-rows --------------------------------------------------------------------------------


@KINDS
@pytest.mark.parametrize(
    ("limit", "share"),
    [("5", ""), ("90%", " (90% of 20 rows in scope)")],
    ids=["count", "share"],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry_run"])
def test_min_rows_refuses_a_truncated_file(dsn, tmp_path, kind, limit, share, dry_run):
    before = seeded(dsn, kind, tmp_path)
    short = dict(list(PRICES.items())[:4])  # the export broke off after 4 rows
    short["K00"] = "99.00"
    path = write_file(tmp_path, kind.csv(short), "feed.csv")
    result = load(dsn, kind, path, "--min-rows", limit, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {path}: 4 data rows, fewer than --min-rows {limit}{share}; nothing was"
        " changed (lower --min-rows if the file really is this short)"
    )
    assert written_checksum(dsn, kind.table) == before


@KINDS
@pytest.mark.parametrize("limit", ["18", "90%", "0"])
def test_min_rows_lets_a_long_enough_file_through(dsn, tmp_path, kind, limit):
    seeded(dsn, kind, tmp_path)
    rows = dict(list(PRICES.items())[:18])  # 18 of 20: exactly 90%
    rows["K00"] = "11.00"
    path = write_file(tmp_path, kind.csv(rows), "feed.csv")
    result = load(dsn, kind, path, "--min-rows", limit, "--json")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["updated"] == 1
    assert prices(dsn, kind)["K00"] == "11.00"


def test_min_rows_counts_a_repeated_key_once_and_rejected_rows(dsn, tmp_path):
    """Data rows: rows read, less a preset's skipped rows and the repeats of a key; a
    rejected row counts (its key is in the file)."""
    kind = ITEMS
    before = seeded(dsn, kind, tmp_path)
    lines = [kind.line("K01", "1.00"), kind.line("K01", "2.00"), kind.line("K02", "2.00"),
             kind.line("K03", "abc")]  # fmt: skip
    path = write_file(tmp_path, "\n".join([kind.header, *lines]) + "\n", "feed.csv")
    result = load(dsn, kind, path, "--min-rows", "4", "--max-errors", "1")
    assert result.exit_code == 1
    assert only_line(result.stderr).startswith(
        f"Error: {path}: 3 data rows, fewer than --min-rows 4;"
    )
    assert written_checksum(dsn, kind.table) == before
    passed = load(dsn, kind, path, "--min-rows", "3", "--max-errors", "1", "--json")
    assert passed.exit_code == 3, passed.stderr  # the rejected row
    s = summary(passed)
    assert (s["rows_read"], s["duplicates"], s["rejected"]) == (4, 1, 1)


def test_min_rows_refuses_an_empty_file_and_an_empty_table_asks_for_no_share(dsn, tmp_path):
    kind = PRODUCTS
    kind.create(dsn)
    empty = write_file(tmp_path, kind.header + "\n", "empty.csv")
    result = load(dsn, kind, empty, "--min-rows", "1")
    assert result.exit_code == 1
    assert "0 data rows, fewer than --min-rows 1;" in only_line(result.stderr)
    # 90% of an empty table is no row: the first import of a feed goes through.
    first = write_file(tmp_path, kind.csv({"A": "1.00"}), "first.csv")
    assert load(dsn, kind, first, "--min-rows", "90%").exit_code == 0


# -- --max-updated -----------------------------------------------------------------------------


@KINDS
@pytest.mark.parametrize(
    ("limit", "share"),
    [("2", ""), ("10%", " (10% of 20 rows in scope)")],
    ids=["count", "share"],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry_run"])
def test_max_updated_refuses_too_many_updates(dsn, tmp_path, kind, limit, share, dry_run):
    before = seeded(dsn, kind, tmp_path)
    changed = {sku: "1.00" if sku in ("K00", "K01", "K02") else p for sku, p in PRICES.items()}
    path = write_file(tmp_path, kind.csv(changed | {"NEW": "5.00"}), "feed.csv")
    result = load(dsn, kind, path, "--max-updated", limit, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {path}: 3 rows of {kind.table} would be updated, more than --max-updated"
        f" {limit}{share}; nothing was changed (raise --max-updated if the changes are"
        " expected)"
    )
    assert written_checksum(dsn, kind.table) == before


@KINDS
@pytest.mark.parametrize("limit", ["3", "15%"])
def test_max_updated_lets_what_its_limit_allows_through(dsn, tmp_path, kind, limit):
    seeded(dsn, kind, tmp_path)
    changed = {sku: "1.00" if sku in ("K00", "K01", "K02") else p for sku, p in PRICES.items()}
    path = write_file(tmp_path, kind.csv(changed | {"NEW": "5.00"}), "feed.csv")
    result = load(dsn, kind, path, "--max-updated", limit, "--json")
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert (s["inserted"], s["updated"], s["unchanged"]) == (1, 3, 17)
    assert prices(dsn, kind)["K02"] == "1.00"


def test_max_updated_with_dry_run_reports_the_same_passing_outcome(dsn, tmp_path):
    kind = ITEMS
    before = seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(PRICES | {"K00": "1.00"}), "feed.csv")
    result = load(dsn, kind, path, "--max-updated", "1", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["updated"] == 1
    assert written_checksum(dsn, kind.table) == before


# -- --max-change ------------------------------------------------------------------------------


def _broken_export(kind: Kind) -> dict[str, str]:
    """K00 and K01 come as 0.00 (a broken export); K02 moves 40%, K03 +60%."""
    return PRICES | {"K00": "0.00", "K01": "0.00", "K02": "7.20", "K03": "20.80"}


@KINDS
def test_max_change_holds_back_the_rows_that_move_too_far(dsn, tmp_path, kind):
    seeded(dsn, kind, tmp_path)
    stamps = dict(query(dsn, f"SELECT sku, (updated_at, xmin::text)::text FROM {kind.table}"))
    path = write_file(tmp_path, kind.csv(_broken_export(kind)), "feed.csv")
    rejected = tmp_path / "rejects.csv"
    result = load(dsn, kind, path, "--max-change", "price=50%", "--max-errors", "3",
                  "--rejects", str(rejected), "--json")
    assert result.exit_code == 3, result.stderr  # rows were rejected
    s = summary(result)
    assert (s["rejected"], s["updated"], s["unchanged"]) == (3, 1, 16)
    after = prices(dsn, kind)
    assert (after["K00"], after["K01"], after["K02"], after["K03"]) == (
        "10.00", "11.00", "7.20", "13.00")  # fmt: skip
    now = dict(query(dsn, f"SELECT sku, (updated_at, xmin::text)::text FROM {kind.table}"))
    assert (now["K00"], now["K01"], now["K03"]) == (stamps["K00"], stamps["K01"], stamps["K03"])
    assert now["K02"] != stamps["K02"]
    record = "{sku},Name {sku},{price}" if kind is PRODUCTS else "ACME,{sku},Name {sku},{price}"
    assert rejects(rejected) == [
        ["line", "reason", "record"],
        ["2", "price 10.00 -> 0.00 moves 100%, more than --max-change price=50%",
         record.format(sku="K00", price="0.00")],
        ["3", "price 11.00 -> 0.00 moves 100%, more than --max-change price=50%",
         record.format(sku="K01", price="0.00")],
        ["5", "price 13.00 -> 20.80 moves 60%, more than --max-change price=50%",
         record.format(sku="K03", price="20.80")],
    ]


@KINDS
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry_run"])
def test_held_back_rows_count_against_max_errors(dsn, tmp_path, kind, dry_run):
    before = seeded(dsn, kind, tmp_path)
    everything_zero = {sku: "0.00" for sku in PRICES}  # every price 0.00
    path = write_file(tmp_path, kind.csv(everything_zero), "feed.csv")
    rejected = tmp_path / "rejects.csv"
    result = load(dsn, kind, path, "--max-change", "price=50%", "--max-errors", "2",
                  "--rejects", str(rejected), *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: 20 rows rejected, more than --max-errors 2; nothing was imported"
        f" (see {rejected})"
    )
    assert written_checksum(dsn, kind.table) == before
    assert len(rejects(rejected)) == 21


@KINDS
@pytest.mark.parametrize("mode", ["deactivate", "delete"])
def test_a_held_back_row_is_never_deactivated_or_deleted(dsn, tmp_path, kind, mode):
    seeded(dsn, kind, tmp_path)
    listed = dict(list(PRICES.items())[:19]) | {"K00": "0.00"}  # K19 is gone
    path = write_file(tmp_path, kind.csv(listed), "feed.csv")
    result = load(dsn, kind, path, "--missing", mode, "--max-change", "price=50%",
                  "--max-errors", "1", "--json")
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert s["rejected"] == 1 and s["deactivated" if mode == "deactivate" else "deleted"] == 1
    rows = {sku: rest for sku, *rest in query(dsn, f"SELECT sku, price::text, active"
                                                    f" FROM {kind.table}")}
    assert rows["K00"] == ["10.00", True]
    assert ("K19" in rows) == (mode == "deactivate")


def test_max_change_rules_for_zero_null_empty_and_repeated_keys(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    execute(dsn, "UPDATE guard_item SET price = 0 WHERE sku = 'K00'")
    execute(dsn, "UPDATE guard_item SET price = NULL WHERE sku = 'K01'")
    execute(dsn, "UPDATE guard_item SET stock = 10, weight = 2 WHERE sku IN ('K02', 'K03')")
    header = "supplier,sku,name,price,stock,weight"
    lines = [
        "ACME,K00,Name K00,99.00,,",  # stored 0: free to move
        "ACME,K01,Name K01,5.00,,",  # stored NULL: free to move
        "ACME,K02,Name K02,12.00,,",  # stock empty: kept (NOT NULL); weight empty: cleared
        "ACME,K03,Name K03,13.00,11,2.5",  # stock +10%, weight +25%: within
        "ACME,K04,Name K04,,,",  # price empty: cleared, 100%
        "ACME,K05,Name K05,1.00,,",  # an earlier row that moves too far...
        "ACME,K05,Name K05,15.50,,",  # ...and the last, which the import writes
        "ACME,K06,Name K06,16.50,,",  # the first row moves a little...
        "ACME,K06,Name K06,1.00,,",  # ...the last too far: neither is written
    ]
    path = write_file(tmp_path, "\n".join([header, *lines]) + "\n", "feed.csv")
    rejected = tmp_path / "rejects.csv"
    result = load(dsn, kind, path, *kind.args, "--max-change", "price=50%", "--max-change",
                  "stock=20%", "--max-change", "weight=30%", "--max-errors", "5", "--rejects",
                  str(rejected), "--json")
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert (s["rejected"], s["duplicates"]) == (3, 2)
    assert [r[:2] for r in rejects(rejected)[1:]] == [
        ["4", "weight 2 -> empty moves 100%, more than --max-change weight=30%"],
        ["6", "price 14.00 -> empty moves 100%, more than --max-change price=50%"],
        ["10", "price 16.00 -> 1.00 moves 93.75%, more than --max-change price=50%"],
    ]
    rows = {sku: (str(p) if p is not None else None, stock, weight)
            for sku, p, stock, weight in query(dsn, "SELECT sku, price, stock, weight"
                                                     " FROM guard_item")}  # fmt: skip
    assert rows["K00"][0] == "99.00" and rows["K01"][0] == "5.00"
    assert rows["K02"] == ("12.00", 10, 2.0)  # held back whole: its price is not written
    assert rows["K03"] == ("13.00", 11, 2.5)
    assert rows["K04"][0] == "14.00" and rows["K05"][0] == "15.50" and rows["K06"][0] == "16.00"


def test_max_change_reads_decimal_comma_and_moves_either_way(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    text = "supplier;sku;name;price\nACME;K00;Name K00;1.000,00\nACME;K01;Name K01;5,50\n"
    path = write_file(tmp_path, text, "feed.csv")
    rejected = tmp_path / "rejects.csv"
    result = load(dsn, kind, path, "--delimiter", ";", "--decimal-comma", "--max-change",
                  "price=100%", "--max-errors", "5", "--rejects", str(rejected), "--json")
    assert result.exit_code == 3, result.stderr
    assert rejects(rejected)[1:] == [
        ["2", "price 10.00 -> 1000.00 moves 9900%, more than --max-change price=100%",
         "ACME;K00;Name K00;1.000,00"],
    ]
    assert prices(dsn, kind)["K01"] == "5.50"  # -50%: within


def test_max_change_sets_a_bad_value_aside_first(dsn, tmp_path):
    """A value that does not fit the column is a reject as without the guard, and the
    held-back row one beside it."""
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(PRICES | {"K00": "abc", "K01": "0.00"}), "feed.csv")
    rejected = tmp_path / "rejects.csv"
    result = load(dsn, kind, path, "--max-change", "price=50%", "--max-errors", "2",
                  "--rejects", str(rejected), "--json")
    assert result.exit_code == 3, result.stderr
    assert summary(result)["rejected"] == 2
    assert [r[1] for r in rejects(rejected)[1:]] == [
        "price is 'abc', not a numeric(10,2)",
        "price 11.00 -> 0.00 moves 100%, more than --max-change price=50%",
    ]


def test_max_change_does_nothing_on_an_empty_table_or_without_the_column(dsn, tmp_path):
    kind = ITEMS
    kind.create(dsn)
    path = write_file(tmp_path, kind.csv(PRICES), "feed.csv")
    result = load(dsn, kind, path, "--max-change", "price=1%", "--json")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["inserted"] == 20
    names = write_file(tmp_path, "supplier,sku,name\nACME,K00,Renamed\n", "names.csv")
    assert load(dsn, kind, names, "--max-change", "price=1%").exit_code == 0


# -- no statement without a guard --------------------------------------------------------------


def test_a_guard_costs_no_statement_unless_it_needs_one(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(PRICES | {"K00": "11.00"}), "feed.csv")

    def statements(*args: str) -> int:
        result = load(dsn, kind, path, "--dry-run", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return summary(result)["statements"]

    plain = statements()
    assert statements("--min-rows", "1", "--max-updated", "5") == plain
    assert statements("--min-rows", "1%", "--max-updated", "5%") == plain + 1  # the count
    assert statements("--max-change", "price=50%") == plain + 1  # nothing moved too far


# -- csvload.toml ------------------------------------------------------------------------------


def test_a_feed_sets_the_guards_and_the_command_line_overrides_them(dsn, tmp_path):
    kind = ITEMS
    before = seeded(dsn, kind, tmp_path)
    write_toml(tmp_path, """
        [feeds.acme]
        table = "guard_item"
        key = ["supplier", "sku"]
        min_rows = "90%"
        max_updated = 5
        max_change = { price = "50%" }
        max_errors = 5
    """)  # fmt: skip
    config = str(tmp_path / "csvload.toml")
    short = write_file(tmp_path, kind.csv(dict(list(PRICES.items())[:3])), "short.csv")
    result = cli(dsn, "import", "--feed", "acme", "--config", config, str(short), "--quiet")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {short}: 3 data rows, fewer than --min-rows 90% (90% of 20 rows in scope);"
        " nothing was changed (lower --min-rows if the file really is this short)"
    )
    assert written_checksum(dsn, kind.table) == before
    zero = write_file(tmp_path, kind.csv(PRICES | {"K00": "0.00"}), "zero.csv")
    held = cli(dsn, "import", "--feed", "acme", "--config", config, str(zero), "--quiet",
               "--json")
    assert held.exit_code == 3, held.stderr
    assert summary(held)["rejected"] == 1
    assert prices(dsn, kind)["K00"] == "10.00"
    # The command line wins: --max-change price=200% lets the drop through.
    passed = cli(dsn, "import", "--feed", "acme", "--config", config, str(zero), "--quiet",
                 "--max-change", "price=100%")
    assert passed.exit_code == 0, passed.stderr
    assert prices(dsn, kind)["K00"] == "0.00"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('min_rows = "lots"', 'min_rows must be an integer >= 0 or a percentage like "10%",'
                              ' not "lots"'),
        ("max_updated = -1", 'max_updated must be an integer >= 0 or a percentage like "10%",'
                             " not -1"),
        ('max_change = "price=50%"', 'max_change must be a table of column = "P%", not'
                                     ' "price=50%"'),
        ("max_change = { price = 50 }", 'max_change.price must be a percentage like "50%",'
                                        " not 50"),
    ],
    ids=["min_rows", "max_updated", "max_change_string", "max_change_number"],
)
def test_a_bad_guard_in_the_feed_is_a_usage_error(dsn, tmp_path, line, message):
    write_toml(tmp_path, f"""
        [feeds.shop]
        {line}
    """)  # fmt: skip
    path = write_file(tmp_path, "sku,name\na,b\n", "feed.csv")
    result = cli(dsn, "import", "--feed", "shop", "--config", str(tmp_path / "csvload.toml"),
                 path, "--quiet")
    assert result.exit_code == 2
    assert only_line(result.stderr) == (
        f"Error: {tmp_path / 'csvload.toml'} line 2: feed 'shop': {message}"
    )


# -- bad values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--min-rows", "ten"), "--min-rows 'ten': give a number of rows (500) or a share of"),
        (("--max-updated", "-1"), "--max-updated '-1': give a number of rows (500) or a share"),
        (("--max-updated", "101%"), "--max-updated '101%': give a number of rows (500)"),
        (("--max-change", "price"), "--max-change 'price': give a numeric column and a share"),
        (("--max-change", "price=abc"), "--max-change price= 'abc': give a share of the"),
        (("--max-change", "price=50"), "--max-change price= '50': give a share of the stored"),
        (("--max-change", "price=-5%"), "--max-change price= '-5%': give a share of the"),
    ],
    ids=["min_rows", "max_updated", "max_updated_share", "no_share", "not_a_number",
         "no_percent", "negative"],
)
def test_a_bad_guard_value_is_a_usage_error(dsn, tmp_path, args, message):
    path = write_file(tmp_path, "sku,name\na,b\n", "feed.csv")
    result = cli(dsn, "import", path, *args)
    assert result.exit_code == 2
    assert message in result.stderr


@KINDS
@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("colour", "{table} has no such column"),
        ("name", "{table}.name is text, not a number"),
    ],
    ids=["unknown", "text"],
)
def test_max_change_on_a_column_that_is_no_number_is_a_usage_error(dsn, tmp_path, kind, column,
                                                                   why):
    before = seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(PRICES), "feed.csv")
    result = load(dsn, kind, path, "--max-change", f"{column}=50%")
    assert result.exit_code == 2
    numeric = "price" if kind is PRODUCTS else "id, price, stock, weight"
    assert only_line(result.stderr) == (
        f"Error: --max-change {column}=50%: {why.format(table=kind.table)} (numeric columns:"
        f" {numeric})"
    )
    assert written_checksum(dsn, kind.table) == before


def test_max_change_names_a_column_once(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(PRICES), "feed.csv")
    result = load(dsn, kind, path, "--max-change", "price=50%", "--max-change", "Price=10%")
    assert result.exit_code == 2
    assert only_line(result.stderr) == (
        "Error: --max-change Price=10%: --max-change names price twice"
    )


def test_max_change_with_a_bad_value_a_check_and_a_held_back_row(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    execute(dsn, "ALTER TABLE guard_item ADD CONSTRAINT stock_not_negative CHECK (stock >= 0)")
    header = "supplier,sku,name,price,stock"
    lines = ["ACME,K00,Name K00,abc,1", "ACME,K01,Name K01,11.00,-1", "ACME,K02,Name K02,0.00,1",
             "ACME,K03,Name K03,13.50,1"]  # fmt: skip
    path = write_file(tmp_path, "\n".join([header, *lines]) + "\n", "feed.csv")
    rejected = tmp_path / "rejects.csv"
    result = load(dsn, kind, path, "--max-change", "price=50%", "--max-errors", "3",
                  "--rejects", str(rejected), "--json")
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert (s["rejected"], s["updated"]) == (3, 1)
    assert [r[:2] for r in rejects(rejected)[1:]] == [
        ["2", "price is 'abc', not a numeric(10,2)"],
        ["3", "stock -1 violates stock_not_negative"],
        ["4", "price 12.00 -> 0.00 moves 100%, more than --max-change price=50%"],
    ]
    assert prices(dsn, kind)["K03"] == "13.50"


# -- Citus -----------------------------------------------------------------------------------------


def test_on_citus_the_row_guards_work_and_max_change_is_refused(distributed, tmp_path):
    """--min-rows and --max-updated read counts the Citus writers return; --max-change's
    join of the coordinator's stage with the table is refused up front."""
    names = {f"K{i:02}": f"Name K{i:02}" for i in range(20)}

    def feed(rows: dict[str, str], name: str) -> str:
        return write_file(tmp_path, "sku,name\n" + "".join(f"{k},{v}\n" for k, v in rows.items()),
                          name)

    def content() -> list[tuple]:
        return query(distributed, "SELECT sku, name, updated_at FROM products ORDER BY sku")

    assert cli(distributed, "import", feed(names, "seed.csv"), "--quiet").exit_code == 0
    before = content()
    short = feed(dict(list(names.items())[:3]), "short.csv")
    result = cli(distributed, "import", short, "--quiet", "--min-rows", "50%")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {short}: 3 data rows, fewer than --min-rows 50% (50% of 20 rows in scope);"
        " nothing was changed (lower --min-rows if the file really is this short)"
    )
    renamed = feed(names | {"K00": "New", "K01": "New", "K02": "New"}, "renamed.csv")
    result = cli(distributed, "import", renamed, "--quiet", "--max-updated", "2")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {renamed}: 3 rows of products would be updated, more than --max-updated 2;"
        " nothing was changed (raise --max-updated if the changes are expected)"
    )
    result = cli(distributed, "import", renamed, "--quiet", "--max-change", "price=50%")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        "Error: products: is a distributed table of Citus; --max-change does not work on"
        " tables Citus manages yet"
    )
    assert content() == before
    passed = cli(distributed, "import", renamed, "--quiet", "--max-updated", "3",
                 "--min-rows", "100%")
    assert passed.exit_code == 0, passed.stderr
    assert [name for _, name, _ in content()][:3] == ["New", "New", "New"]


# -- with the rules of what a feed may change (issue 21) ---------------------------------------


@pytest.mark.parametrize(
    "rule",
    [("--keep", "price"), ("--update", "name"), ("--mode", "insert"), ("--fill", "price")],
    ids=["keep", "update-leaves-it-out", "insert-only", "fill"],
)
def test_max_change_ignores_a_column_the_feed_may_not_change(dsn, tmp_path, rule):
    """A price the writer would not change cannot move: no row is held back for it."""
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    broken = {sku: "0.00" for sku in PRICES}
    path = write_file(tmp_path, kind.csv(broken), "broken.csv")
    result = load(dsn, kind, path, "--max-change", "price=50%", *rule, "--json")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["rejected"] == 0
    assert prices(dsn, kind) == dict(PRICES)


def test_max_change_with_empty_keep_does_not_count_an_empty_field(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv({**PRICES, "K03": ""}), "gaps.csv")
    kept = load(dsn, kind, path, "--max-change", "price=50%", "--empty", "keep", "--json")
    assert kept.exit_code == 0, kept.stderr
    assert summary(kept)["rejected"] == 0 and prices(dsn, kind)["K03"] == "13.00"
    cleared = load(dsn, kind, path, "--max-change", "price=50%", "--max-errors", "1", "--json")
    assert cleared.exit_code == 3, cleared.stderr
    assert summary(cleared)["rejected"] == 1 and prices(dsn, kind)["K03"] == "13.00"
