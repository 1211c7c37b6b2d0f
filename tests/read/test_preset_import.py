"""Issue 14, presets end to end: `csvload import --preset shopify|woocommerce` through the CLI
with the sample exports in tests/data/presets and larger files from tests/helpers/presets.py,
into csvload's products and into a user table with price/stock/barcode and a composite key
under --scope.  The ledger stays exact:
rows_read = inserted + updated + unchanged + duplicates + rejected + skipped."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from helpers.cli import assert_balanced, quiet_cli
from helpers.db import query
from helpers.files import PRESET_SAMPLES
from helpers.presets import SHOPIFY_HEADER, write_shopify, write_woocommerce

SHOPIFY_TEMPLATE = PRESET_SAMPLES / "shopify_product_template.csv"
SHOPIFY_PUBLISHED = PRESET_SAMPLES / "shopify_product_template_published.csv"
WOO_SAMPLE = PRESET_SAMPLES / "woocommerce_sample_products.csv"

SHOP_DDL = """
CREATE TABLE shop_item (
    id serial PRIMARY KEY,
    supplier text NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    description text,
    price numeric(10, 2),
    stock integer,
    barcode text,
    active boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT shop_item_supplier_sku UNIQUE (supplier, sku)
)
"""
LEDGER = ("inserted", "updated", "unchanged", "duplicates", "rejected", "skipped")


def shop(supplier: str) -> tuple[str, ...]:
    return ("--table", "shop_item", "--scope", f"supplier={supplier}", "--key", "supplier,sku")


def load(dsn: str, path: Path, preset: str, *args: str) -> dict:
    """Import through the CLI; the --json summary, its ledger checked."""
    result = quiet_cli(dsn, "import", str(path), "--preset", preset, *args, "--json")
    assert result.stdout, result.stderr
    summary = json.loads(result.stdout)
    summary["exit_code"] = result.exit_code
    assert_balanced(summary)
    return summary


def counts(summary: dict) -> tuple[int, ...]:
    return tuple(summary[k] for k in ("rows_read", *LEDGER))


@pytest.fixture
def shop_table(products):
    """products (csvload's) and shop_item (a user's) side by side; yields the DSN."""
    with psycopg.connect(products) as c:
        c.execute(SHOP_DDL)
    return products


# -- the sample exports ------------------------------------------------------------------------


def test_shopify_template_into_products(products):
    s = load(products, SHOPIFY_TEMPLATE, "shopify")
    assert s["exit_code"] == 0
    # 17 data rows: 16 variants, 1 image row without a Variant SKU (skipped, not rejected)
    assert counts(s) == (17, 16, 0, 0, 0, 0, 1)
    rows = dict((r[0], r[1:]) for r in query(
        products, "SELECT sku, name, active, left(description, 29) FROM products"))
    assert len(rows) == 16
    assert rows["SRT_COT_433"] == ("Example T-Shirt", True, "<p>This t-shirt is as simple ")
    assert rows["PNT_DEN_305"][:2] == ("Example Jeans", False)  # draft
    assert rows["HAT_GRY_275"][:2] == ("Example Beanie", False)  # archived
    assert sum(active for _, active, _ in rows.values()) == 12
    again = load(products, SHOPIFY_TEMPLATE, "shopify")
    assert counts(again) == (17, 0, 0, 16, 0, 0, 1)


def test_shopify_template_without_status_uses_published(products):
    s = load(products, SHOPIFY_PUBLISHED, "shopify")
    assert s["exit_code"] == 0
    assert counts(s) == (4, 2, 0, 0, 0, 0, 2)
    assert query(products, "SELECT sku, name, active FROM products ORDER BY sku") == [
        ("example-shirt-m", "Example T-Shirt", True),
        ("example-shirt-s", "Example T-Shirt", True),
    ]


def test_woocommerce_sample_into_products(products):
    s = load(products, WOO_SAMPLE, "woocommerce")
    assert s["exit_code"] == 0
    assert counts(s) == (25, 25, 0, 0, 0, 0, 0)
    rows = dict(query(products, "SELECT sku, name FROM products"))
    assert rows["woo-hoodie-blue-logo"] == "Hoodie - Blue, Yes"
    assert rows["woo-beanie"] == "Beanie"
    assert query(products, "SELECT count(*) FILTER (WHERE active) FROM products") == [(25,)]


def test_samples_of_both_shops_share_a_user_table_under_scope(shop_table):
    dsn = shop_table
    s = load(dsn, SHOPIFY_TEMPLATE, "shopify", *shop("acme"))
    assert s["exit_code"] == 0 and counts(s) == (17, 16, 0, 0, 0, 0, 1)
    w = load(dsn, WOO_SAMPLE, "woocommerce", *shop("woo"))
    assert w["exit_code"] == 0 and counts(w) == (25, 25, 0, 0, 0, 0, 0)
    got = {(r[0], r[1]): r[2:] for r in query(
        dsn, "SELECT supplier, sku, name, price, stock, barcode, active FROM shop_item")}
    assert len(got) == 41
    assert got[("acme", "HAT_GRY_275")] == (
        "Example Beanie", Decimal("17.99"), 50, "1.22328E+11", False)
    assert got[("acme", "PNT_DEN_305")] == (
        "Example Jeans", Decimal("95.00"), 15, "6.85794E+11", False)
    assert got[("acme", "SRT_COT_111")] == (
        "Example T-Shirt", Decimal("25.00"), 0, "3.65275E+11", True)
    # Regular price, not the sale price; WooCommerce's sample leaves Stock empty.
    assert got[("woo", "woo-beanie")] == ("Beanie", Decimal("20.00"), None, None, True)
    assert got[("woo", "wp-pennant")][1] == Decimal("11.05")
    # Re-importing one shop's feed as a full feed leaves the other's rows alone.
    woo_before = query(dsn, "SELECT sku, xmin::text FROM shop_item WHERE supplier = 'woo'")
    again = load(dsn, SHOPIFY_TEMPLATE, "shopify", *shop("acme"), "--missing", "deactivate")
    assert again["exit_code"] == 0
    assert counts(again) == (17, 0, 0, 16, 0, 0, 1) and again["deactivated"] == 0
    assert query(dsn, "SELECT sku, xmin::text FROM shop_item WHERE supplier = 'woo'") == \
        woo_before


# -- generated exports -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [True, False], ids=["status", "published"])
def test_generated_shopify_into_products_then_a_smaller_full_feed(products, tmp_path, status):
    path = tmp_path / "shopify.csv"
    expected = write_shopify(path, 2000, variants=3, status=status)
    s = load(products, path, "shopify")
    assert s["exit_code"] == 0
    assert counts(s) == (expected.rows, expected.loaded, 0, 0, 0, 0, expected.skipped)
    assert (expected.loaded, expected.skipped) == (6000, 667)
    assert query(products, "SELECT count(*), count(*) FILTER (WHERE active) FROM products") == [
        (6000, expected.active)
    ]
    # Variants take their product's Title: all three rows of a product share one name.
    assert query(
        products,
        "SELECT count(*) FROM (SELECT split_part(sku, '-', 1) FROM products"
        " GROUP BY 1 HAVING count(DISTINCT name) <> 1 OR count(*) <> 3) x",
    ) == [(0,)]
    # The same export with its last 100 products gone (the first 1,900 are generated alike).
    smaller = tmp_path / "smaller.csv"
    fewer = write_shopify(smaller, 1900, variants=3, status=status)
    feed = load(products, smaller, "shopify", "--missing", "deactivate")
    assert feed["exit_code"] == 0
    assert counts(feed) == (fewer.rows, 0, 0, 5700, 0, 0, fewer.skipped)
    # Of products 1900..1999 every third is active (Status cycles active, draft, archived).
    assert feed["deactivated"] == 3 * sum(1 for i in range(1900, 2000) if i % 3 == 0)
    assert query(products, "SELECT count(*) FROM products WHERE active") == [
        (fewer.active,)
    ]


def test_generated_shopify_into_a_user_table(shop_table, tmp_path):
    dsn = shop_table
    path = tmp_path / "shopify.csv"
    expected = write_shopify(path, 1000, variants=3, seed=7)
    s = load(dsn, path, "shopify", *shop("acme"))
    assert s["exit_code"] == 0
    assert counts(s) == (expected.rows, 3000, 0, 0, 0, 0, 334)
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["Variant SKU"]]
    got = {r[0]: r[1:] for r in query(
        dsn, "SELECT sku, price::text, stock, barcode, supplier FROM shop_item")}
    assert len(got) == 3000
    for r in rows:
        price = got[r["Variant SKU"]]
        assert price == (
            str(Decimal(r["Variant Price"]).quantize(Decimal("0.01"))),
            int(r["Variant Inventory Qty"]),
            r["Variant Barcode"],
            "acme",
        )


def test_generated_woocommerce_into_products_and_a_user_table(shop_table, tmp_path):
    dsn = shop_table
    path = tmp_path / "woo.csv"
    expected = write_woocommerce(path, 2000, variations=3)
    p = load(dsn, path, "woocommerce")
    assert p["exit_code"] == 0
    assert counts(p) == (expected.rows, expected.loaded, 0, 0, 0, 0, expected.skipped)
    assert query(dsn, "SELECT count(*), count(*) FILTER (WHERE active) FROM products") == [
        (expected.loaded, expected.active)
    ]
    u = load(dsn, path, "woocommerce", *shop("woo"))
    assert counts(u) == counts(p)
    # A variation takes its parent's name where its own is empty, and its own price/stock.
    with open(path, newline="", encoding="utf-8") as f:
        variations = [r for r in csv.DictReader(f) if r["Type"] == "variation"]
    got = {r[0]: r[1:] for r in query(dsn, "SELECT sku, name, price, stock FROM shop_item")}
    for v in variations:
        name, price, stock = got[v["SKU"]]
        i = int(v["SKU"][1:7])
        assert name.startswith(f"Product {i} ") and (not v["Name"] or name == v["Name"])
        assert (price, stock) == (Decimal(v["Regular price"]), int(v["Stock"]))
    assert query(dsn, "SELECT DISTINCT supplier FROM shop_item") == [("woo",)]


def test_the_ledger_with_duplicates_rejects_and_skipped_rows(products, tmp_path):
    path = tmp_path / "shopify.csv"
    expected = write_shopify(path, 300, variants=2)
    with open(path, "a", newline="", encoding="utf-8") as f:
        out = csv.writer(f)

        def row(**values):
            out.writerow([values.get(h, "") for h in SHOPIFY_HEADER])

        # A product repeating a SKU of the file (the last occurrence wins), one with a
        # Status Shopify does not have (rejected), and an image row (skipped).
        row(Handle="again", Title="Again", Status="active", **{"Variant SKU": "P000001-1"})
        row(Handle="odd", Title="Odd", Status="deleted", **{"Variant SKU": "ODD-1"})
        row(Handle="odd", **{"Image Src": "https://cdn.example.com/odd.jpg"})
    s = load(products, path, "shopify", "--max-errors", "1")
    assert s["exit_code"] == 3  # imported, with rejected rows
    assert counts(s) == (expected.rows + 3, 600, 0, 0, 1, 1, expected.skipped + 1)
    assert query(products, "SELECT name, active FROM products WHERE sku = 'P000001-1'") == [
        ("Again", True)
    ]
    assert query(products, "SELECT count(*) FROM products WHERE sku = 'ODD-1'") == [(0,)]


def shopify_file(path: Path, statuses: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(SHOPIFY_HEADER)
        for i, status in enumerate(statuses):
            values = {"Handle": f"h{i}", "Title": f"T{i}", "Status": status,
                      "Variant SKU": f"S{i}"}
            out.writerow([values.get(h, "") for h in SHOPIFY_HEADER])
    return path


def test_a_full_feed_with_a_preset_deactivates_what_the_export_lost(products, tmp_path):
    s = load(products, shopify_file(tmp_path / "1.csv", ["active"] * 10), "shopify")
    assert counts(s) == (10, 10, 0, 0, 0, 0, 0)
    feed = load(products, shopify_file(tmp_path / "2.csv", ["active"] * 9), "shopify",
                "--missing", "deactivate")
    assert feed["exit_code"] == 0 and feed["deactivated"] == 1
    assert query(products, "SELECT sku FROM products WHERE NOT active") == [("S9",)]


def test_a_row_the_preset_rejects_keeps_its_product(products, tmp_path):
    load(products, shopify_file(tmp_path / "1.csv", ["active"] * 10), "shopify")
    feed = load(products, shopify_file(tmp_path / "2.csv", ["active"] * 9 + ["bogus"]),
                "shopify", "--missing", "deactivate", "--max-errors", "1")
    assert feed["exit_code"] == 3 and feed["rejected"] == 1
    assert feed["deactivated"] == 0
    assert query(products, "SELECT count(*) FROM products WHERE NOT active") == [(0,)]


def test_a_preset_with_the_rules_of_what_a_feed_may_change(shop_table, tmp_path):
    """Issue 21 with a preset: names curated by hand survive --update price,stock, an
    insert-only run passes over every existing row, an update-only run creates nothing."""
    dsn = shop_table
    path = tmp_path / "shopify.csv"
    expected = write_shopify(path, 300, variants=2, seed=3)
    assert load(dsn, path, "shopify", *shop("acme"))["exit_code"] == 0
    with psycopg.connect(dsn) as c:
        c.execute("UPDATE shop_item SET name = 'curated ' || sku")
        stamps = c.execute("SELECT sum(extract(epoch FROM updated_at)) FROM shop_item").fetchone()
    s = load(dsn, path, "shopify", *shop("acme"), "--update", "price,stock")
    assert (s["updated"], s["unchanged"]) == (0, 600)
    assert query(dsn, "SELECT count(*) FROM shop_item WHERE name NOT LIKE 'curated %'") == [(0,)]
    s = load(dsn, path, "shopify", *shop("acme"), "--mode", "insert")
    assert (s["inserted"], s["existing"], s["skipped"]) == (0, 600, expected.rows - 600)
    s = load(dsn, path, "shopify", *shop("other"), "--mode", "update")
    assert (s["inserted"], s["not_found"]) == (0, 600)
    with psycopg.connect(dsn) as c:
        assert c.execute(
            "SELECT sum(extract(epoch FROM updated_at)) FROM shop_item").fetchone() == stamps
        assert c.execute("SELECT count(*) FROM shop_item").fetchone() == (600,)
