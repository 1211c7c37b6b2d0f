"""Issue 14, full feeds: --missing deactivate|delete, reactivation, the --max-missing guard,
rejected rows counting as present, --scope for suppliers sharing a table, --dry-run, the new
counts in --json, the summary line, the run record and the webhook, and verify --missing.
On csvload's products and on a user table with a composite key (supplier, sku)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from helpers.cli import cli, only_line
from helpers.db import execute, written_checksum
from helpers.feeds import ITEM_DDL
from helpers.files import write_file
from psycopg import conninfo

from csvload.table import schema


@pytest.fixture
def dsn(major_dsn):
    """Every test here on PostgreSQL 15 and 18: a full feed is sql.merge()'s WITH statement
    before 17 (18 with --changes) and one MERGE with WHEN NOT MATCHED BY SOURCE after."""
    return major_dsn


@dataclass(frozen=True)
class Kind:
    """How one kind of target is set up, written to and read back."""

    id: str
    table: str
    args: tuple[str, ...]  # what the CLI needs to load it
    header: str
    key_sql: str  # the key as text, as csvload's messages spell it

    def create(self, dsn: str) -> None:
        with psycopg.connect(dsn) as c:
            if self.table == "products":
                schema.create_products(c)
            else:
                c.execute(ITEM_DDL)

    def line(self, sku: str, name: str, price: str = "1.00") -> str:
        if self.table == "products":
            return f"{sku},{name}"
        return f"ACME,{sku},{name},{price}"

    def key(self, sku: str) -> str:
        return sku if self.table == "products" else f"ACME,{sku}"

    def csv(self, skus, renamed: dict[str, str] | None = None) -> str:
        renamed = renamed or {}
        return "\n".join(
            [self.header, *(self.line(s, renamed.get(s, f"Name {s}")) for s in skus)]
        ) + "\n"


PRODUCTS = Kind("products", "products", (), "sku,name", "sku")
ITEMS = Kind(
    "user_table",
    "feed_item",
    ("--table", "feed_item", "--key", "supplier,sku"),
    "supplier,sku,name,price",
    "supplier || ',' || sku",
)
KINDS = pytest.mark.parametrize("kind", [PRODUCTS, ITEMS], ids=lambda k: k.id)
SKUS = [f"K{i:02}" for i in range(20)]


@dataclass(frozen=True)
class Row:
    name: str
    active: bool
    updated_at: object
    xmin: str


def state(dsn: str, kind: Kind) -> dict[str, Row]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            f"SELECT {kind.key_sql}, name, active, updated_at, xmin::text FROM {kind.table}"
        ).fetchall()
    return {k: Row(*rest) for k, *rest in rows}


def load(dsn: str, kind: Kind, path: Path, *args: str):
    return cli(dsn, "import", str(path), *kind.args, *args)


def summary(result) -> dict:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def seeded(dsn: str, kind: Kind, tmp_path: Path, skus=SKUS) -> dict[str, Row]:
    """The target with one row per sku, loaded by csvload; its state."""
    kind.create(dsn)
    first = load(dsn, kind, write_file(tmp_path, kind.csv(skus), "seed.csv"), "--quiet")
    assert first.exit_code == 0, first.stderr
    return state(dsn, kind)


def deactivate(dsn: str, kind: Kind, *skus: str) -> dict[str, Row]:
    execute(
        dsn,
        f"UPDATE {kind.table} SET active = false WHERE {kind.key_sql} = ANY(%s)",
        ([kind.key(s) for s in skus],),
    )
    return state(dsn, kind)


# -- deactivate, reactivate, delete -----------------------------------------------------------


@KINDS
def test_deactivate_sets_active_false_and_touches_only_the_missing_rows(major_dsn, tmp_path, kind):
    seeded(major_dsn, kind, tmp_path)
    before = deactivate(major_dsn, kind, "K19")  # missing too, but already inactive
    listed = SKUS[:17]  # K17 and K18 are gone from the file
    path = write_file(tmp_path, kind.csv(listed + ["K50"], {"K00": "Renamed"}), "feed.csv")
    result = load(major_dsn, kind, path, "--missing", "deactivate", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert (s["inserted"], s["updated"], s["unchanged"]) == (1, 1, 16)
    assert (s["deactivated"], s["reactivated"], s["deleted"]) == (2, 0, 0)
    after = state(major_dsn, kind)
    for sku in ("K17", "K18"):
        row, old = after[kind.key(sku)], before[kind.key(sku)]
        assert row.active is False and row.name == old.name
        assert row.updated_at > old.updated_at and row.xmin != old.xmin
    assert after[kind.key("K19")] == before[kind.key("K19")]  # not written again
    for sku in SKUS[1:17]:
        assert after[kind.key(sku)] == before[kind.key(sku)]
    assert after[kind.key("K00")].name == "Renamed" and after[kind.key("K00")].active
    assert after[kind.key("K50")].active


@KINDS
def test_keep_is_the_default_and_leaves_missing_rows_alone(dsn, tmp_path, kind):
    before = seeded(dsn, kind, tmp_path)
    result = load(dsn, kind, write_file(tmp_path, kind.csv(SKUS[:5]), "feed.csv"), "--json",
                  "--quiet")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["deactivated"] == 0
    assert state(dsn, kind) == before


@KINDS
def test_an_inactive_row_listed_again_is_reactivated(major_dsn, tmp_path, kind):
    seeded(major_dsn, kind, tmp_path)
    before = deactivate(major_dsn, kind, "K05", "K06")
    result = load(
        major_dsn, kind, write_file(tmp_path, kind.csv(SKUS),
                                    "feed.csv"), "--missing", "deactivate", "--json",
        "--quiet",
    )
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    # A reactivated row is written, so it is one of the updated ones too.
    assert (s["reactivated"], s["updated"], s["unchanged"], s["deactivated"]) == (2, 2, 18, 0)
    after = state(major_dsn, kind)
    for sku in ("K05", "K06"):
        assert after[kind.key(sku)].active is True
        assert after[kind.key(sku)].updated_at > before[kind.key(sku)].updated_at
    assert {k: v for k, v in after.items() if k not in (kind.key("K05"), kind.key("K06"))} == {
        k: v for k, v in before.items() if k not in (kind.key("K05"), kind.key("K06"))
    }


@KINDS
def test_an_inactive_row_the_file_says_is_inactive_stays_so(major_dsn, tmp_path, kind):
    seeded(major_dsn, kind, tmp_path)
    before = deactivate(major_dsn, kind, "K05", "K06", "K07")
    header = kind.header + ",active"
    flags = {"K06": "false", "K07": "false", "K08": "false"}
    text = "\n".join(
        [header, *(f"{kind.line(s, f'Name {s}')},{flags.get(s, 'true')}" for s in SKUS)]
    ) + "\n"
    result = load(
        major_dsn, kind, write_file(tmp_path, text,
                                    "feed.csv"), "--missing", "deactivate", "--json", "--quiet"
    )
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    # K05 comes back; K06 and K07 stay inactive (unchanged); K08 is switched off by the file,
    # which is an update, not a deactivation of a missing row.
    assert (s["reactivated"], s["updated"], s["unchanged"], s["deactivated"]) == (1, 2, 18, 0)
    after = state(major_dsn, kind)
    assert after[kind.key("K05")].active is True
    assert after[kind.key("K06")] == before[kind.key("K06")]
    assert after[kind.key("K07")] == before[kind.key("K07")]
    assert after[kind.key("K08")].active is False


def test_reactivated_is_counted_when_the_server_keeps_no_table_statistics(dsn, tmp_path):
    kind = PRODUCTS
    seeded(dsn, kind, tmp_path)
    deactivate(dsn, kind, "K05")
    options = conninfo.conninfo_to_dict(dsn)["options"]
    no_stats = conninfo.make_conninfo(dsn, options=f"{options} -c track_counts=off")
    result = load(
        no_stats, kind, write_file(tmp_path, kind.csv(SKUS),
                                   "feed.csv"), "--missing", "deactivate", "--json",
        "--quiet",
    )
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert state(dsn, kind)[kind.key("K05")].active is True
    assert (s["updated"], s["reactivated"]) == (1, 1)


@KINDS
def test_delete_deletes_the_missing_rows_and_nothing_else(major_dsn, tmp_path, kind):
    before = seeded(major_dsn, kind, tmp_path)
    result = load(
        major_dsn, kind, write_file(tmp_path, kind.csv(SKUS[:18]),
                                    "feed.csv"), "--missing", "delete", "--json",
        "--quiet",
    )
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert (s["deleted"], s["deactivated"], s["unchanged"]) == (2, 0, 18)
    assert state(major_dsn, kind) == {
        k: v for k, v in before.items() if k not in (kind.key("K18"), kind.key("K19"))
    }


def test_delete_blocked_by_a_foreign_key_names_the_constraint_and_a_key(dsn, tmp_path):
    kind = PRODUCTS
    seeded(dsn, kind, tmp_path)
    execute(
        dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, product_id bigint REFERENCES products (id));"
        " INSERT INTO orders SELECT 1, id FROM products WHERE sku = 'K18'",
    )
    before = written_checksum(dsn, "products")
    path = write_file(tmp_path, kind.csv(SKUS[:18] + ["K60"], {"K00": "Renamed"}), "feed.csv")
    changes = tmp_path / "changes.csv"
    result = load(dsn, kind, path, "--missing", "delete", "--quiet", "--changes", str(changes))
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {path}: cannot delete the rows missing from the file: products row 'K18'"
        " is still referenced from orders (foreign key orders_product_id_fkey); nothing was"
        " changed (--missing deactivate keeps them)"
    )
    assert written_checksum(dsn, "products") == before
    assert not changes.exists() and list(tmp_path.glob(".changes.csv.*")) == []


def test_delete_blocked_by_a_composite_deferred_foreign_key(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    execute(
        dsn,
        "CREATE TABLE order_line (id int PRIMARY KEY, supplier text, sku text,"
        " CONSTRAINT order_line_item FOREIGN KEY (supplier, sku)"
        " REFERENCES feed_item (supplier, sku) DEFERRABLE INITIALLY DEFERRED);"
        " INSERT INTO order_line VALUES (1, 'ACME', 'K19')",
    )
    before = written_checksum(dsn, "feed_item")
    path = write_file(tmp_path, kind.csv(SKUS[:18]), "feed.csv")
    result = load(dsn, kind, path, "--missing", "delete", "--quiet")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {path}: cannot delete the rows missing from the file: feed_item row"
        " 'ACME,K19' is still referenced from order_line (foreign key order_line_item);"
        " nothing was changed (--missing deactivate keeps them)"
    )
    assert written_checksum(dsn, "feed_item") == before


# -- the guard ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mode", "limit", "share"),
    [
        (PRODUCTS, "deactivate", None, " (10% of 20 rows in scope)"),  # default: 10% of 20
        (ITEMS, "deactivate", None, " (10% of 20 rows in scope)"),
        (ITEMS, "delete", None, " (10% of 20 rows in scope)"),
        (PRODUCTS, "deactivate", "2", ""),
        (ITEMS, "delete", "2", ""),
        (PRODUCTS, "delete", "5%", " (5% of 20 rows in scope)"),
        (ITEMS, "deactivate", "14.9%", " (14.9% of 20 rows in scope)"),  # 2.98 rows: 2
    ],
    ids=lambda v: v.id if isinstance(v, Kind) else str(v)[:12],
)
def test_the_guard_fails_the_import_and_changes_nothing(dsn, tmp_path, kind, mode, limit, share):
    seeded(dsn, kind, tmp_path)
    before = written_checksum(dsn, kind.table)
    path = write_file(tmp_path, kind.csv(SKUS[:17] + ["K70"], {"K00": "Renamed"}), "feed.csv")
    changes = tmp_path / "changes.csv"
    args = ["--missing", mode, "--quiet", "--changes", str(changes)]
    if limit is not None:
        args += ["--max-missing", limit]
    result = load(dsn, kind, path, *args)
    assert result.exit_code == 1
    verb = "deactivated" if mode == "deactivate" else "deleted"
    shown = limit or "10%"
    assert only_line(result.stderr) == (
        f"Error: {path}: 3 rows of {kind.table} would be {verb}, more than --max-missing"
        f" {shown}{share}; nothing was changed (raise --max-missing if the file really is"
        " complete)"
    )
    assert written_checksum(dsn, kind.table) == before
    assert not changes.exists()


@pytest.mark.parametrize(
    ("kind", "limit"), [(PRODUCTS, "3"), (ITEMS, "15%"), (PRODUCTS, "100%")],
    ids=["products-3", "user_table-15%", "products-100%"],
)
def test_the_guard_lets_through_what_its_limit_allows(dsn, tmp_path, kind, limit):
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(SKUS[:17]), "feed.csv")
    result = load(dsn, kind, path, "--missing", "deactivate", "--max-missing", limit, "--json",
                  "--quiet")
    assert result.exit_code == 0, result.stderr
    assert summary(result)["deactivated"] == 3
    assert sum(not r.active for r in state(dsn, kind).values()) == 3


def test_the_guard_counts_the_rows_in_scope_before_the_import(dsn, tmp_path):
    """New rows in the file do not raise the limit: 10% of the 20 there before is 2."""
    kind = PRODUCTS
    seeded(dsn, kind, tmp_path)
    before = written_checksum(dsn, "products")
    new = [f"N{i:02}" for i in range(30)]
    path = write_file(tmp_path, kind.csv(SKUS[:17] + new), "feed.csv")
    result = load(dsn, kind, path, "--missing", "deactivate", "--quiet")
    assert result.exit_code == 1
    assert "3 rows of products would be deactivated" in only_line(result.stderr)
    assert written_checksum(dsn, "products") == before


@pytest.mark.parametrize("value", ["-1", "ten", "101%", "%"])
def test_a_bad_max_missing_is_a_usage_error(dsn, tmp_path, value):
    result = cli(dsn, "import", str(write_file(tmp_path, "sku,name\na,b\n", "feed.csv")),
                 "--max-missing", value)
    assert result.exit_code == 2
    assert f"--max-missing {value!r}: give a number of rows (500) or a share" in result.stderr


# -- files that list nothing -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mode"), [(PRODUCTS, "deactivate"), (ITEMS, "delete")],
    ids=["products-deactivate", "user_table-delete"],
)
def test_an_empty_file_never_deactivates_or_deletes(dsn, tmp_path, kind, mode):
    seeded(dsn, kind, tmp_path)
    before = written_checksum(dsn, kind.table)
    path = write_file(tmp_path, kind.header + "\n", "feed.csv")
    result = load(dsn, kind, path, "--missing", mode, "--max-missing", "100%", "--json",
                  "--quiet")
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert (s["rows_read"], s["deactivated"], s["deleted"]) == (0, 0, 0)
    assert written_checksum(dsn, kind.table) == before


@pytest.mark.parametrize(
    ("kind", "mode"), [(PRODUCTS, "delete"), (ITEMS, "deactivate")],
    ids=["products-delete", "user_table-deactivate"],
)
def test_a_file_of_rejects_only_never_deactivates_or_deletes(dsn, tmp_path, kind, mode):
    seeded(dsn, kind, tmp_path)
    before = written_checksum(dsn, kind.table)
    blank_key = kind.line(" ", "No key")  # rejected by the reader, its key unreadable
    short = kind.line("K90", "Short").rsplit(",", 1)[0]  # too few fields
    path = write_file(tmp_path, "\n".join([kind.header, blank_key, short, blank_key]) + "\n",
                      "feed.csv")
    result = load(dsn, kind, path, "--missing", mode, "--max-missing", "100%", "--max-errors",
                  "10", "--json", "--quiet")
    assert result.exit_code == 3, result.stderr  # rejected rows
    s = summary(result)
    assert (s["rows_read"], s["rejected"], s["deactivated"], s["deleted"]) == (3, 3, 0, 0)
    assert written_checksum(dsn, kind.table) == before


def test_a_file_of_value_rejects_only_never_deactivates(dsn, tmp_path):
    kind = ITEMS
    seeded(dsn, kind, tmp_path)
    before = written_checksum(dsn, kind.table)
    path = write_file(tmp_path, kind.header + "\nACME,N1,New,abc\nACME,N2,New,x.y\n", "feed.csv")
    result = load(dsn, kind, path, "--missing", "deactivate", "--max-missing", "100%",
                  "--max-errors", "10", "--json", "--quiet")
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert (s["rejected"], s["deactivated"]) == (2, 0)
    assert written_checksum(dsn, kind.table) == before


# -- rejected rows count as present ------------------------------------------------------------


@KINDS
@pytest.mark.parametrize("mode", ["deactivate", "delete"])
def test_the_keys_of_rejected_rows_are_never_deactivated_or_deleted(dsn, tmp_path, kind, mode):
    before = seeded(dsn, kind, tmp_path)
    header = kind.header + ",active"
    good = [f"{kind.line(s, f'Name {s}')},true" for s in SKUS[:15]]
    # A reader reject with its key readable (one field too many; spelled in lower case,
    # which products' lower(sku) key matches), and a value reject (a boolean that is not;
    # on the user table a price that is not a number too).
    reader = f"{kind.line('k15' if kind is PRODUCTS else 'K15', 'Extra')},true,surplus"
    value = f"{kind.line('K16', 'Bad', 'abc')},{'maybe' if kind is PRODUCTS else 'true'}"
    text = "\n".join([header, *good, reader, value]) + "\n"
    path = write_file(tmp_path, text, "feed.csv")
    result = load(dsn, kind, path, "--missing", mode, "--max-missing", "3", "--max-errors", "2",
                  "--json", "--quiet")
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert s["rejected"] == 2
    assert s["deactivated" if mode == "deactivate" else "deleted"] == 3  # K17, K18, K19
    after = state(dsn, kind)
    for sku in ("K15", "K16"):
        assert after[kind.key(sku)] == before[kind.key(sku)]
    gone = {kind.key(s) for s in ("K17", "K18", "K19")}
    if mode == "delete":
        assert set(after) == set(before) - gone
    else:
        assert {k for k, r in after.items() if not r.active} == gone


# -- --scope: suppliers sharing one table ------------------------------------------------------


def two_suppliers(dsn: str) -> None:
    ITEMS.create(dsn)
    execute(
        dsn,
        "INSERT INTO feed_item (supplier, sku, name, price)"
        " SELECT s, 'K' || lpad(i::text, 2, '0'), s || ' ' || i, i FROM"
        " unnest(ARRAY['acme', 'bolt']) s, generate_series(0, 9) i",
    )


def by_supplier(dsn: str, supplier: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT sku, name, price::text, active, updated_at, xmin::text FROM feed_item"
            " WHERE supplier = %s",
            (supplier,),
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("mode", ["deactivate", "delete"])
def test_scope_syncs_one_supplier_and_never_touches_the_other(major_dsn, tmp_path, mode):
    two_suppliers(major_dsn)
    bolt = by_supplier(major_dsn, "bolt")
    acme = by_supplier(major_dsn, "acme")
    # acme's feed has no supplier column: K09 is gone, K00 renamed, K20 new, and K08 a reader
    # reject whose key is readable.
    lines = ["sku,name,price", "K00,Renamed,0"]
    lines += [f"K0{i},acme {i},{i}" for i in range(1, 8)]
    lines += ["K08,acme 8,8,surplus", "K20,New,20"]
    path = write_file(tmp_path, "\n".join(lines) + "\n", "feed.csv")
    result = cli(
        major_dsn, "import", str(path), "--table", "feed_item", "--scope", "supplier=acme",
        "--key", "supplier,sku", "--missing", mode, "--max-missing", "1", "--max-errors", "1",
        "--json", "--quiet",
    )
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert (s["inserted"], s["updated"], s["unchanged"], s["rejected"]) == (1, 1, 7, 1)
    assert s["deactivated" if mode == "deactivate" else "deleted"] == 1
    assert by_supplier(major_dsn, "bolt") == bolt
    after = by_supplier(major_dsn, "acme")
    assert after["K08"] == acme["K08"]
    assert after["K00"][0] == "Renamed" and after["K20"][:3] == ("New", "20.00", True)
    if mode == "delete":
        assert "K09" not in after
    else:
        assert after["K09"][2] is False
    with psycopg.connect(major_dsn) as c:
        assert c.execute("SELECT count(*) FROM feed_item WHERE supplier NOT IN"
                         " ('acme', 'bolt')").fetchone()[0] == 0


def test_scope_guard_counts_only_the_rows_in_scope(dsn, tmp_path):
    """10% of acme's 10 rows is 1, though the table holds 20."""
    two_suppliers(dsn)
    before = written_checksum(dsn, "feed_item")
    path = write_file(tmp_path, "sku,name,price\n" + "".join(f"K0{i},a,{i}\n" for i in range(8)),
                      "feed.csv")
    result = cli(dsn, "import", str(path), "--table", "feed_item", "--scope", "supplier=acme",
                 "--key", "supplier,sku", "--missing", "deactivate", "--quiet")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {path}: 2 rows of feed_item would be deactivated, more than --max-missing"
        " 10% (10% of 10 rows in scope); nothing was changed (raise --max-missing if the"
        " file really is complete)"
    )
    assert written_checksum(dsn, "feed_item") == before


def test_scope_and_a_file_column_of_the_same_name_are_refused(dsn, tmp_path):
    two_suppliers(dsn)
    path = write_file(tmp_path, "supplier,sku,name\nbolt,K00,x\n", "feed.csv")
    result = cli(dsn, "import", str(path), "--table", "feed_item", "--scope", "supplier=acme",
                 "--key", "supplier,sku")
    assert result.exit_code == 2
    assert only_line(result.stderr) == (
        "Error: --scope supplier=acme: the file has a supplier column too; --scope sets it"
        " for every row (drop one of them)"
    )


# -- --dry-run ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "mode"), [(PRODUCTS, "deactivate"), (ITEMS, "deactivate"), (ITEMS, "delete")],
    ids=["products-deactivate", "user_table-deactivate", "user_table-delete"],
)
def test_dry_run_reports_the_counts_and_changes_nothing(dsn, tmp_path, kind, mode):
    seeded(dsn, kind, tmp_path)
    deactivate(dsn, kind, "K05")
    before = written_checksum(dsn, kind.table)
    path = write_file(tmp_path, kind.csv(SKUS[:18]), "feed.csv")
    result = load(dsn, kind, path, "--missing", mode, "--dry-run", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert s["status"] == "dry_run"
    if mode == "deactivate":
        assert (s["deactivated"], s["reactivated"], s["deleted"]) == (2, 1, 0)
    else:
        assert (s["deactivated"], s["reactivated"], s["deleted"]) == (0, 0, 2)
    assert written_checksum(dsn, kind.table) == before


# -- the counts everywhere ---------------------------------------------------------------------


@KINDS
def test_the_counts_in_json_summary_line_run_record_and_webhook(dsn, tmp_path, kind,
                                                                receiver):
    seeded(dsn, kind, tmp_path)
    deactivate(dsn, kind, "K03")
    path = write_file(tmp_path, kind.csv(SKUS[:18]), "feed.csv")
    result = load(dsn, kind, path, "--missing", "deactivate", "--json", "--webhook",
                  receiver.url)
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert (s["deactivated"], s["reactivated"], s["deleted"]) == (2, 1, 0)
    line = result.stderr.splitlines()[-1]
    assert re.fullmatch(
        rf"{re.escape(str(path))}: imported: 18 rows read, 0 inserted, 1 updated, 17 unchanged,"
        r" 0 duplicates, 0 rejected, 2 deactivated, 1 reactivated in \d+\.\d s"
        rf" \([\d,]+ rows/s\); run {s['run_id']}",
        line,
    ), line
    runs = json.loads(cli(dsn, "runs", "--json").stdout)
    assert runs[0]["run_id"] == s["run_id"]
    assert (runs[0]["deactivated"], runs[0]["reactivated"], runs[0]["deleted"]) == (2, 1, 0)
    assert runs[0]["options"]["missing"] == "deactivate"
    assert len(receiver.requests) == 1
    event = receiver.requests[0].json()
    assert event["event"] == "import.completed"
    assert (event["deactivated"], event["reactivated"], event["deleted"]) == (2, 1, 0)
    assert event["table"] == kind.table

    deleting = load(dsn, kind, write_file(tmp_path, kind.csv(SKUS[:17]), "less.csv"), "--missing",
                    "delete", "--max-missing", "3", "--json", "--webhook", receiver.url)
    assert deleting.exit_code == 0, deleting.stderr
    assert summary(deleting)["deleted"] == 3  # K17 (active) and K18, K19 (inactive)
    assert ", 0 rejected, 3 deleted in " in deleting.stderr.splitlines()[-1]
    runs = json.loads(cli(dsn, "runs", "--json").stdout)
    assert (runs[0]["deactivated"], runs[0]["deleted"]) == (0, 3)
    assert receiver.requests[1].json()["deleted"] == 3


def test_a_failed_guard_is_recorded_and_sent_as_failed(dsn, tmp_path, receiver):
    kind = PRODUCTS
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(SKUS[:10]), "feed.csv")
    result = load(dsn, kind, path, "--missing", "deactivate", "--quiet", "--webhook",
                  receiver.url)
    assert result.exit_code == 1
    runs = json.loads(cli(dsn, "runs", "--json").stdout)
    assert runs[0]["status"] == "failed"
    assert "10 rows of products would be deactivated" in runs[0]["error"]
    event = receiver.requests[0].json()
    assert event["event"] == "import.failed" and event["deactivated"] == 0
    assert "10 rows of products would be deactivated" in event["error"]


# -- verify --missing --------------------------------------------------------------------------


@KINDS
def test_verify_missing_deactivate_expects_the_missing_rows_inactive(dsn, tmp_path, kind):
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(SKUS[:18]), "feed.csv")
    assert load(dsn, kind, path, "--missing", "deactivate", "--quiet").exit_code == 0
    checked = cli(dsn, "verify", str(path), *kind.args, "--missing", "deactivate", "--json")
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["ok"] is True
    # A missing row someone switched back on is what a completed feed would not leave.
    execute(dsn, f"UPDATE {kind.table} SET active = true WHERE {kind.key_sql} = %s",
            (kind.key("K19"),))
    checked = cli(dsn, "verify", str(path), *kind.args, "--missing", "deactivate", "--json")
    assert checked.exit_code == 1
    result = json.loads(checked.stdout)
    assert (result["ok"], result["missing"], result["different"]) == (False, 0, 0)
    assert checked.stderr.splitlines()[-1].endswith(
        f"; 1 rows the file no longer lists are still active: {kind.key('K19')}"
    )
    # Without --missing, verify only looks at the file's keys.
    plain = cli(dsn, "verify", str(path), *kind.args, "--quiet")
    assert plain.exit_code == 0, plain.stderr


@KINDS
def test_verify_missing_delete_expects_the_missing_rows_gone(dsn, tmp_path, kind):
    seeded(dsn, kind, tmp_path)
    path = write_file(tmp_path, kind.csv(SKUS[:18]), "feed.csv")
    checked = cli(dsn, "verify", str(path), *kind.args, "--missing", "delete", "--json")
    assert checked.exit_code == 1
    assert json.loads(checked.stdout)["ok"] is False
    assert load(dsn, kind, path, "--missing", "delete", "--quiet").exit_code == 0
    checked = cli(dsn, "verify", str(path), *kind.args, "--missing", "delete", "--quiet")
    assert checked.exit_code == 0, checked.stderr


def test_verify_missing_deactivate_with_scope(dsn, tmp_path):
    two_suppliers(dsn)
    execute(dsn, "UPDATE feed_item SET active = false WHERE supplier = 'acme' AND sku = 'K09'")
    text = "sku,name,price\n" + "".join(f"K0{i},acme {i},{i}\n" for i in range(9))
    path = write_file(tmp_path, text, "feed.csv")
    args = ("--table", "feed_item", "--scope", "supplier=acme", "--key", "supplier,sku",
            "--missing", "deactivate", "--json")
    before = written_checksum(dsn, "feed_item")
    checked = cli(dsn, "verify", str(path), *args)
    assert checked.exit_code == 0, checked.stderr  # bolt's K09 is active, and not acme's
    report = json.loads(checked.stdout)
    assert (report["ok"], report["rows_read"], report["matching"], report["missing"],
            report["different"], report["stale"]) == (True, 9, 9, 0, 0, 0)
    assert written_checksum(dsn, "feed_item") == before  # verify only reads
    # In the scope, acme's K09 switched back on is what a completed feed would not leave.
    execute(dsn, "UPDATE feed_item SET active = true WHERE supplier = 'acme' AND sku = 'K09'")
    checked = cli(dsn, "verify", str(path), *args)
    assert checked.exit_code == 1
    report = json.loads(checked.stdout)
    assert (report["ok"], report["stale"], report["stale_examples"]) == (False, 1, ["acme,K09"])
    assert checked.stderr.splitlines()[-1].endswith(
        "; 1 rows the file no longer lists are still active: acme,K09"
    )


def test_a_rejected_row_whose_key_is_not_of_the_key_type_fails_nothing(major_dsn, tmp_path):
    """An integer key: a value reject 'xx' and a reader reject 'yy' name no row; a reader
    reject with key 9 does, and keeps it."""
    execute(major_dsn, "CREATE TABLE coded (id serial PRIMARY KEY, code int NOT NULL UNIQUE,"
                       " name text NOT NULL, active boolean NOT NULL DEFAULT true)")
    seed = write_file(tmp_path, "code,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 11)),
                      "s.csv")
    args = ("--table", "coded", "--key", "code")
    assert cli(major_dsn, "import", str(seed), *args, "--quiet").exit_code == 0
    text = "code,name\n" + "".join(f"{i},n{i}\n" for i in range(1, 9))
    text += "xx,n\nyy,n,surplus\n9,n9,surplus\n"
    for mode, count in (("deactivate", "deactivated"), ("delete", "deleted")):
        result = cli(major_dsn, "import", str(write_file(tmp_path, text, "feed.csv")), *args,
                     "--missing", mode,
                     "--max-missing", "1", "--max-errors", "3", "--json", "--quiet")
        assert result.exit_code == 3, result.stderr
        s = summary(result)
        assert (s["rejected"], s[count]) == (3, 1)
    with psycopg.connect(major_dsn) as c:
        assert c.execute("SELECT code, active FROM coded WHERE code > 8 ORDER BY code")\
            .fetchall() == [(9, True)]


def test_verify_missing_with_a_rejected_key_not_of_the_key_type(dsn, tmp_path):
    execute(dsn, "CREATE TABLE coded (id serial PRIMARY KEY, code int NOT NULL UNIQUE,"
                 " name text NOT NULL, active boolean NOT NULL DEFAULT true)")
    seed = write_file(tmp_path, "code,name\n1,a\n2,b\n", "s.csv")
    args = ("--table", "coded", "--key", "code")
    assert cli(dsn, "import", str(seed), *args, "--quiet").exit_code == 0
    path = write_file(tmp_path, "code,name\n1,a\n2,b\nyy,c,surplus\n", "feed.csv")
    checked = cli(dsn, "verify", str(path), *args, "--missing", "deactivate", "--json")
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["rejected"] == 1


def test_two_full_feeds_with_rejects_on_one_connection(dsn, tmp_path):
    from csvload.load.loader import ImportOptions, import_source
    from csvload.read.source import Source, SourceOptions

    execute(dsn, "CREATE TABLE coded (id serial PRIMARY KEY, code int NOT NULL UNIQUE,"
                 " name text NOT NULL, active boolean NOT NULL DEFAULT true)")
    options = ImportOptions(table="coded", key=("code",), missing="deactivate",
                            max_missing="100%", max_errors=5)
    files = [write_file(tmp_path, "code,name\n1,a\n2,b\n", "1.csv"),
             write_file(tmp_path, "code,name\n1,a\nyy,b,surplus\n", "2.csv"),
             write_file(tmp_path, "code,name,active\n1,a,true\n3,c,maybe\n", "3.csv")]
    with psycopg.connect(dsn) as conn:
        if conn.info.server_version >= 160000:
            pytest.skip("PostgreSQL 16+ checks values with pg_input_is_valid(): no temp function")
        results = []
        for path in files:
            with Source(SourceOptions(str(path))) as source:
                results.append(import_source(conn, source, options))
    assert [(r.rejected, r.deactivated) for r in results] == [(0, 0), (1, 1), (1, 0)]


# -- --active-column, --touch ------------------------------------------------------------------

FLAGGED_DDL = """
CREATE TABLE flagged (
    id serial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    name text NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    seen_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


def flagged(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as c:
        return {r[0]: r[1:] for r in c.execute(
            "SELECT sku, enabled, seen_at, updated_at, xmin::text FROM flagged")}


@pytest.mark.parametrize("touch", [("--touch", "seen_at"), ("--no-touch",)],
                         ids=["touch_seen_at", "no_touch"])
def test_active_column_and_touch_name_other_columns(dsn, tmp_path, touch):
    execute(dsn, FLAGGED_DDL)
    args = ("--table", "flagged", "--missing", "deactivate", "--active-column", "enabled",
            "--max-missing", "2", *touch, "--json", "--quiet")
    seed = write_file(tmp_path, "sku,name\n" + "".join(f"k{i},n{i}\n" for i in range(6)), "s.csv")
    assert cli(dsn, "import", str(seed), *args).exit_code == 0
    execute(dsn, "UPDATE flagged SET enabled = false WHERE sku = 'k0'")
    before = flagged(dsn)
    result = cli(dsn, "import",
                 str(write_file(tmp_path, "sku,name\nk0,n0\nk1,n1\nk2,n2\nk3,n3\n", "feed.csv")),
                 *args)
    assert result.exit_code == 0, result.stderr
    s = summary(result)
    assert (s["deactivated"], s["reactivated"], s["updated"]) == (2, 1, 1)
    after = flagged(dsn)
    touched = touch[0] == "--touch"
    for sku in ("k0", "k4", "k5"):  # reactivated, deactivated, deactivated
        assert after[sku][0] is (sku == "k0")
        if touched:
            assert after[sku][1] > before[sku][1]
        else:
            assert after[sku][1] is None
        assert after[sku][2] == before[sku][2]  # updated_at is not the touch column here
    assert after["k1"] == before["k1"]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("name", "Error: --missing deactivate: flagged has no writable boolean name column"
                 " (name one with --active-column)"),
        ("nope", "Error: --missing deactivate: flagged has no writable boolean nope column"
                 " (name one with --active-column)"),
        ("active", "Error: --missing deactivate: flagged has no writable boolean active"
                   " column (name one with --active-column)"),
    ],
)
def test_the_active_column_must_be_a_writable_boolean(dsn, tmp_path, column, message):
    execute(dsn, FLAGGED_DDL + "; INSERT INTO flagged (sku, name) VALUES ('a', 'A')")
    before = written_checksum(dsn, "flagged")
    result = cli(dsn, "import", str(write_file(tmp_path, "sku,name\nb,B\n", "feed.csv")), "--table",
                 "flagged",
                 "--missing", "deactivate", "--active-column", column)
    assert result.exit_code == 2
    assert only_line(result.stderr) == message
    assert written_checksum(dsn, "flagged") == before


def test_two_scopes_one_of_them_an_integer_column(dsn, tmp_path):
    execute(dsn, "CREATE TABLE multi (id serial PRIMARY KEY, shop int NOT NULL, region text"
                 " NOT NULL, sku text NOT NULL, name text NOT NULL, active boolean NOT NULL"
                 " DEFAULT true, UNIQUE (shop, region, sku));"
                 " INSERT INTO multi (shop, region, sku, name) SELECT s, r, 'k' || i, 'n'"
                 " FROM unnest(ARRAY[1, 2]) s, unnest(ARRAY['eu', 'us']) r,"
                 " generate_series(1, 4) i")
    others = fetch_multi(dsn, "NOT (shop = 1 AND region = 'eu')")
    path = write_file(tmp_path, "sku,name\nk1,n\nk2,n\nk3,renamed\nk5,new\nk6,n,surplus\n",
                      "feed.csv")
    result = cli(dsn, "import", str(path), "--table", "multi", "--scope", "shop=1", "--scope",
                 "region=eu", "--key", "shop,region,sku", "--missing", "deactivate",
                 "--max-missing", "1", "--max-errors", "1", "--json", "--quiet")
    assert result.exit_code == 3, result.stderr
    s = summary(result)
    assert (s["inserted"], s["updated"], s["unchanged"], s["deactivated"]) == (1, 1, 2, 1)
    assert fetch_multi(dsn, "NOT (shop = 1 AND region = 'eu')") == others
    assert [r[:4] for r in fetch_multi(dsn, "shop = 1 AND region = 'eu'")] == [
        (1, "eu", "k1", "n"), (1, "eu", "k2", "n"), (1, "eu", "k3", "renamed"),
        (1, "eu", "k4", "n"), (1, "eu", "k5", "new"),
    ]
    assert [r[2] for r in fetch_multi(dsn, "NOT active")] == ["k4"]


def fetch_multi(dsn: str, where: str) -> list[tuple]:
    with psycopg.connect(dsn) as c:
        return c.execute(f"SELECT shop, region, sku, name, active, xmin::text FROM multi"
                         f" WHERE {where} ORDER BY shop, region, sku").fetchall()


def test_max_missing_zero_allows_no_missing_row(dsn, tmp_path):
    kind = PRODUCTS
    seeded(dsn, kind, tmp_path)
    before = written_checksum(dsn, "products")
    path = write_file(tmp_path, kind.csv(SKUS[:19]), "feed.csv")
    result = load(dsn, kind, path, "--missing", "deactivate", "--max-missing", "0", "--quiet")
    assert result.exit_code == 1
    assert only_line(result.stderr) == (
        f"Error: {path}: 1 rows of products would be deactivated, more than --max-missing 0;"
        " nothing was changed (raise --max-missing if the file really is complete)"
    )
    assert written_checksum(dsn, "products") == before
    full = load(dsn, kind, write_file(tmp_path, kind.csv(SKUS), "full.csv"), "--missing",
                "deactivate", "--max-missing", "0", "--quiet")
    assert full.exit_code == 0, full.stderr
