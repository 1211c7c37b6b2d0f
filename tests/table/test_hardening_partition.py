"""Issue 19, a leaf partition as the target: a row outside its bound ("violates partition
constraint", a CheckViolation with no constraint name) is a reject with its line and a
plain reason, counted against --max-errors, like a CHECK; list, range over a typed value
(date, integer), hash, DEFAULT and sub-partitioned leaves; a re-import; and the
partitioned parent, which csvload refuses.  Against PostgreSQL 15 and 18 (major_dsn)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.cli import error_line, quiet_cli
from helpers.db import execute, query
from helpers.files import write_file

CAT = """
CREATE TABLE cat (sku text, region text, name text, PRIMARY KEY (sku, region))
    PARTITION BY LIST (region);
CREATE TABLE cat_eu PARTITION OF cat FOR VALUES IN ('eu');
CREATE TABLE cat_us PARTITION OF cat FOR VALUES IN ('us');
INSERT INTO cat VALUES ('OLD', 'eu', 'old eu'), ('OLD', 'us', 'old us');
"""

CAT_FILE = "sku,region,name\nA,eu,Alpha\nB,us,Beta\nC,eu,Gamma\n"
CAT_REJECTS = (
    b"line,reason,record\r\n"
    b"3,region 'us' is outside partition cat_eu (FOR VALUES IN ('eu')),\"B,us,Beta\"\r\n"
)


def contents(dsn: str) -> list[tuple]:
    """Every row of the partition tree, with the partition that holds it."""
    return query(dsn, "SELECT tableoid::regclass::text, * FROM cat ORDER BY 1, 2, 3")


def load(dsn: str, path: str, table: str, key: str, *extra: str):
    return quiet_cli(dsn, "import", path, "--table", table, "--key", key, "--json", *extra)


def test_list_partition_row_outside_is_a_reject(major_dsn, tmp_path):
    execute(major_dsn, CAT)
    path = write_file(tmp_path, CAT_FILE, "t.csv")
    result = load(major_dsn, path, "cat_eu", "sku,region", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["inserted"], summary["rejected"]) == (3, 2, 1)
    assert Path(path + ".rejects.csv").read_bytes() == CAT_REJECTS
    assert contents(major_dsn) == [
        ("cat_eu", "A", "eu", "Alpha"),
        ("cat_eu", "C", "eu", "Gamma"),
        ("cat_eu", "OLD", "eu", "old eu"),
        ("cat_us", "OLD", "us", "old us"),
    ]


def test_list_partition_rejects_over_max_errors_fail_and_change_nothing(major_dsn, tmp_path):
    execute(major_dsn, CAT)
    before = contents(major_dsn)
    path = write_file(tmp_path, CAT_FILE, "t.csv")
    result = load(major_dsn, path, "cat_eu", "sku,region", "--max-errors", "0")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: 1 rows rejected, more than --max-errors 0; nothing was imported"
        f" (see {path}.rejects.csv)"
    )
    assert contents(major_dsn) == before
    assert Path(path + ".rejects.csv").read_bytes() == CAT_REJECTS


def test_reimport_into_a_partition(major_dsn, tmp_path):
    """The same file twice: the second run changes nothing and rejects the same row."""
    execute(major_dsn, CAT)
    path = write_file(tmp_path, CAT_FILE, "t.csv")
    first = load(major_dsn, path, "cat_eu", "sku,region", "--max-errors", "1")
    assert first.exit_code == 3, first.stderr
    after_first = contents(major_dsn)
    again = load(major_dsn, path, "cat_eu", "sku,region", "--max-errors", "1")
    assert again.exit_code == 3, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["inserted"], summary["updated"], summary["unchanged"],
            summary["rejected"]) == (0, 0, 2, 1)
    assert Path(path + ".rejects.csv").read_bytes() == CAT_REJECTS
    assert contents(major_dsn) == after_first
    changed = write_file(tmp_path, "sku,region,name\nA,eu,Alpha 2\nC,eu,Gamma\n", "b.csv")
    result = load(major_dsn, changed, "cat_eu", "sku,region")
    assert result.exit_code == 0, result.stderr
    assert (json.loads(result.stdout)["updated"], json.loads(result.stdout)["unchanged"]) == (1, 1)
    assert query(major_dsn, "SELECT name FROM cat_eu WHERE sku = 'A'") == [("Alpha 2",)]


# (partition key type, its bounds, the file's values: within, outside), compared as the
# column's type: as text, '9' is not below '10', nor 'Jun 1 2024' below '2025-01-01'.
RANGES = {
    "date": ("date", "FROM ('2024-01-01') TO ('2025-01-01')",
             ["Jun 1 2024", "2024-12-31"], ["2023-12-31", "2025-01-01"]),
    "integer": ("integer", "FROM (1) TO (10)", ["9", "1"], ["10", "0"]),
}


@pytest.mark.parametrize("case", list(RANGES))
def test_range_partition_compares_typed_values(major_dsn, tmp_path, case):
    type_, bounds, within, outside = RANGES[case]
    execute(
            major_dsn,
            f"CREATE TABLE sales (sku text, slot {type_}, qty integer, PRIMARY KEY (sku, slot))"
            " PARTITION BY RANGE (slot);"
            f" CREATE TABLE sales_p PARTITION OF sales FOR VALUES {bounds};"
            " CREATE TABLE sales_rest PARTITION OF sales DEFAULT",
    )
    lines = ["sku,slot,qty", f"A,{within[0]},1", f"B,{outside[0]},2", f"C,{within[1]},3",
             f"D,{outside[1]},4"]
    path = write_file(tmp_path, "\n".join(lines) + "\n", "t.csv")
    result = load(major_dsn, path, "sales_p", "sku,slot", "--max-errors", "2")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        f"line,reason,record\r\n"
        f"3,slot '{outside[0]}' is outside partition sales_p (FOR VALUES {bounds}),"
        f"\"B,{outside[0]},2\"\r\n"
        f"5,slot '{outside[1]}' is outside partition sales_p (FOR VALUES {bounds}),"
        f"\"D,{outside[1]},4\"\r\n"
    ).encode()
    assert query(major_dsn, "SELECT sku, qty FROM sales_p ORDER BY sku") == [("A", 1), ("C", 3)]
    assert query(major_dsn, "SELECT count(*) FROM sales_rest") == [(0,)]


def test_sub_partitioned_leaf_names_the_outermost_bound_a_row_is_outside(major_dsn, tmp_path):
    execute(
            major_dsn,
            "CREATE TABLE cat (sku text, region text, born date, PRIMARY KEY (sku, region, born))"
            " PARTITION BY LIST (region);"
            " CREATE TABLE cat_eu PARTITION OF cat FOR VALUES IN ('eu') PARTITION BY RANGE (born);"
            " CREATE TABLE cat_eu_2024 PARTITION OF cat_eu"
            " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    )
    text = ("sku,region,born\nA,eu,2024-06-01\nB,us,2024-06-01\nC,eu,2023-06-01\n"
            "D,us,2023-06-01\n")
    path = write_file(tmp_path, text, "t.csv")
    result = load(major_dsn, path, "cat_eu_2024", "sku,region,born", "--max-errors", "3")
    assert result.exit_code == 3, result.stderr
    region = "is outside partition cat_eu_2024: it lies within cat_eu (FOR VALUES IN ('eu'))"
    assert Path(path + ".rejects.csv").read_bytes() == (
        "line,reason,record\r\n"
        f"3,region 'us' {region},\"B,us,2024-06-01\"\r\n"
        "4,born '2023-06-01' is outside partition cat_eu_2024"
        " (FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')),\"C,eu,2023-06-01\"\r\n"
        f"5,region 'us' {region},\"D,us,2023-06-01\"\r\n"
    ).encode()
    assert query(major_dsn, "SELECT sku FROM cat_eu_2024") == [("A",)]


def test_default_and_hash_partitions(major_dsn, tmp_path):
    execute(
            major_dsn,
            CAT
            + "CREATE TABLE cat_rest PARTITION OF cat DEFAULT;"
            " CREATE TABLE h (id integer PRIMARY KEY, name text) PARTITION BY HASH (id);"
            " CREATE TABLE h_0 PARTITION OF h FOR VALUES WITH (MODULUS 2, REMAINDER 0);"
            " CREATE TABLE h_1 PARTITION OF h FOR VALUES WITH (MODULUS 2, REMAINDER 1);",
    )
    path = write_file(tmp_path, "sku,region,name\nA,jp,Alpha\nB,eu,Beta\n", "t.csv")
    result = load(major_dsn, path, "cat_rest", "sku,region", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b"3,region 'eu' is outside partition cat_rest"
        b" (DEFAULT: only what no other partition of cat takes),\"B,eu,Beta\"\r\n"
    )
    assert query(major_dsn, "SELECT sku, region FROM cat_rest") == [("A", "jp")]
    # Which ids hash into h_0 is the server's to say: ask it, through the parent.
    execute(major_dsn, "INSERT INTO h SELECT g, 'seed' FROM generate_series(1, 20) g")
    (_, inside), (_, outside) = query(
        major_dsn, "SELECT tableoid::regclass::text, min(id) FROM h GROUP BY 1 ORDER BY 1"
    )
    execute(major_dsn, "TRUNCATE h")
    path = write_file(tmp_path, f"id,name\n{inside},in\n{outside},out\n", "h.csv")
    result = load(major_dsn, path, "h_0", "id", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        f"line,reason,record\r\n"
        f"3,\"id '{outside}' is outside partition h_0"
        f" (FOR VALUES WITH (modulus 2, remainder 0))\",\"{outside},out\"\r\n"
    ).encode()
    assert query(major_dsn, "SELECT id, name FROM h") == [(inside, "in")]


def test_bound_is_checked_when_the_file_gives_the_partition_key(major_dsn, tmp_path):
    """Without the partition key column, fit.find() cannot evaluate the bound (and must not
    fail trying): another row's bad value is still a reject.  With it, the bound is
    checked."""
    execute(
            major_dsn,
            "CREATE TABLE cat (sku text, region text DEFAULT 'eu', stock integer)"
            " PARTITION BY LIST (region);"
            " CREATE TABLE cat_eu PARTITION OF cat FOR VALUES IN ('eu');"
            " CREATE UNIQUE INDEX ON cat_eu (sku)",
    )
    path = write_file(tmp_path, "sku,stock\nA,1\nB,x\n", "t.csv")
    result = load(major_dsn, path, "cat_eu", "sku", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n3,\"stock is 'x', not an integer\",\"B,x\"\r\n"
    )
    assert query(major_dsn, "SELECT sku, region, stock FROM cat") == [("A", "eu", 1)]
    path = write_file(tmp_path, "sku,region,stock\nC,eu,3\nD,us,4\n", "b.csv")
    result = load(major_dsn, path, "cat_eu", "sku", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b"3,region 'us' is outside partition cat_eu (FOR VALUES IN ('eu')),\"D,us,4\"\r\n"
    )
    assert query(major_dsn, "SELECT sku, region, stock FROM cat ORDER BY sku") == [
        ("A", "eu", 1), ("C", "eu", 3)
    ]


def test_partitioned_parent_is_refused(major_dsn, tmp_path):
    """The parent routes rows itself, and csvload does not load into it: one line, exit 2
    or 1 as for any target refused, the tree unchanged."""
    execute(major_dsn, CAT)
    before = contents(major_dsn)
    path = write_file(tmp_path, CAT_FILE, "t.csv")
    result = load(major_dsn, path, "cat", "sku,region", "--max-errors", "5")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: cat: is a partitioned table; csvload loads only into a plain table"
        " (load into one of its partitions)"
    )
    assert contents(major_dsn) == before
    assert not Path(path + ".rejects.csv").exists()
