"""Shop-export presets over the real sample exports (tests/data/presets, see SOURCES.md) and
over generated ones (tests/helpers/presets.py)."""

from __future__ import annotations

import csv
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from helpers.files import PRESET_SAMPLES
from helpers.presets import (
    SHOPIFY_HEADER,
    WOOCOMMERCE_HEADER,
    write_shopify,
    write_woocommerce,
)

from csvload.errors import ExitStatus, InputError, MissingColumnError, PresetError
from csvload.read.presets import PRESETS, RowRejected

SHOPIFY_TEMPLATE = PRESET_SAMPLES / "shopify_product_template.csv"
SHOPIFY_PUBLISHED = PRESET_SAMPLES / "shopify_product_template_published.csv"
WOO_SAMPLE = PRESET_SAMPLES / "woocommerce_sample_products.csv"

PRODUCTS = ("sku", "name", "description", "active")
WIDE = PRODUCTS + (
    "price", "compare_at_price", "sale_price", "short_description", "stock", "barcode",
    "vendor", "type", "handle", "created_at", "updated_at",
)  # fmt: skip


def run(preset: str, path: Path, target=WIDE):
    """(columns, loaded rows as dicts, skipped count, rejects as (line, reason))."""
    loaded, skipped, rejects = [], 0, []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        bound = PRESETS[preset].bind(next(reader), target, f"{path.name} line 1")
        for row in reader:
            try:
                fields = bound.apply(row)
            except RowRejected as e:
                rejects.append((reader.line_num, e.reason))
                continue
            if fields is None:
                skipped += 1
            else:
                loaded.append(dict(zip(bound.columns, fields, strict=True)))
    return bound, loaded, skipped, rejects


def by_sku(rows):
    return {r["sku"]: r for r in rows}


# -- Shopify -----------------------------------------------------------------------------------


def test_shopify_template_variants_take_the_product_fields_of_their_handle():
    bound, rows, skipped, rejects = run("shopify", SHOPIFY_TEMPLATE)
    assert bound.key == ("sku",)
    assert bound.columns == [
        "sku", "name", "description", "active", "price", "compare_at_price", "stock",
        "barcode", "vendor", "type", "handle",
    ]  # fmt: skip
    assert rejects == []
    # 17 data rows: 12 shirt variants, 3 jeans variants, 1 jeans image row, 1 beanie.
    assert (len(rows), skipped) == (16, 1)
    shirts = [r for r in rows if r["handle"] == "example-shirt"]
    assert len(shirts) == 12
    assert {r["name"] for r in shirts} == {"Example T-Shirt"}
    assert {r["vendor"] for r in shirts} == {"Acme"}
    assert all(r["description"].startswith("<p>This t-shirt is as simple") for r in shirts)
    rows = by_sku(rows)
    # Variant fields are each row's own, never inherited.
    assert rows["PNT_DEN_305"]["stock"] == "15"
    assert rows["PNT_DEN_305"]["name"] == "Example Jeans"
    assert rows["SRT_COT_433"]["barcode"] == "7.38293E+11"
    assert rows["HAT_GRY_275"]["price"] == "17.99"
    assert rows["HAT_GRY_275"]["compare_at_price"] == "22.99"


def test_shopify_template_status_gives_active_draft_and_archived_are_inactive():
    _, rows, _, _ = run("shopify", SHOPIFY_TEMPLATE)
    active = Counter((r["handle"], r["active"]) for r in rows)
    assert active == {
        ("example-shirt", "true"): 12,  # active
        ("example-pants", "false"): 3,  # draft
        ("example-hat", "false"): 1,  # archived
    }


def test_shopify_without_status_uses_published_and_product_rows_without_sku_are_skipped():
    bound, rows, skipped, rejects = run("shopify", SHOPIFY_PUBLISHED)
    assert rejects == []
    # black-t-shirt-os has no Variant SKU at all; example-t-shirt's product row has none,
    # but its two variants take its Title, Body and Published.
    assert skipped == 2
    assert [(r["sku"], r["name"], r["active"], r["price"]) for r in rows] == [
        ("example-shirt-s", "Example T-Shirt", "true", "19.99"),
        ("example-shirt-m", "Example T-Shirt", "true", "19.99"),
    ]
    assert {r["description"] for r in rows} == {"<p>Product Description Goes Here</p>"}


def test_shopify_loads_only_the_columns_the_target_has():
    bound, rows, _, _ = run("shopify", SHOPIFY_TEMPLATE, target=("sku", "name", "updated_at"))
    assert bound.columns == ["sku", "name"]
    assert rows[0] == {"sku": "SRT_COT_111", "name": "Example T-Shirt"}


@pytest.mark.parametrize("status", [True, False])
def test_shopify_generated_10k_products(tmp_path, status):
    path = tmp_path / "shopify.csv"
    expected = write_shopify(path, 10_000, variants=3, status=status)
    _, rows, skipped, rejects = run("shopify", path, target=PRODUCTS + ("handle", "price"))
    assert rejects == []
    assert (len(rows), skipped) == (expected.loaded, expected.skipped) == (30_000, 3_334)
    assert sum(r["active"] == "true" for r in rows) == expected.active == 3_334 * 3
    assert all(r["name"].startswith(f"Product {r['handle'][8:]} ") for r in rows)
    assert len({r["sku"] for r in rows}) == 30_000
    # Multi-line quoted bodies survive and are inherited whole.
    product_7 = [r for r in rows if r["handle"] == "product-7"]
    assert len(product_7) == 3 and len({r["description"] for r in product_7}) == 1
    assert '\n"soft" &amp; warm' in product_7[0]["description"]


def test_shopify_memory_stays_flat_with_the_number_of_products(tmp_path):
    peaks = []
    for products in (1_000, 10_000):
        path = tmp_path / f"s{products}.csv"
        write_shopify(path, products)
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            bound = PRESETS["shopify"].bind(next(reader), WIDE, "s.csv line 1")
            tracemalloc.start()
            for row in reader:
                bound.apply(row)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
    assert peaks[1] < peaks[0] + 64 * 1024, peaks


def shopify_rows(tmp_path, rows, header=SHOPIFY_HEADER):
    path = tmp_path / "s.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(header)
        for values in rows:
            out.writerow([values.get(h, "") for h in header])
    return run("shopify", path, target=PRODUCTS + ("handle",))


def test_shopify_variant_whose_handle_has_no_product_row_is_rejected_not_loaded_empty(tmp_path):
    _, rows, skipped, rejects = shopify_rows(
        tmp_path,
        [
            {"Handle": "a", "Title": "A", "Status": "active", "Variant SKU": "a-1"},
            {"Handle": "b", "Title": "B", "Status": "draft", "Variant SKU": "b-1"},
            # a's rows are split up: the row is a's, but the last product row was b's.
            {"Handle": "a", "Variant SKU": "a-2"},
            {"Handle": "a", "Variant SKU": ""},  # an image row: skipped, not rejected
            {"Handle": "a", "Variant SKU": "a-3"},
            {"Handle": "c", "Title": "C", "Status": "archived", "Variant SKU": "c-1"},
            {"Handle": "c", "Variant SKU": "c-2", "Title": "C large"},  # its own Title wins
        ],
    )
    reason = (
        "no product row for Handle 'a' before this row, and its Title is empty (keep each "
        "product's rows together, the first with its Title, as Shopify exports them)"
    )
    assert rejects == [(4, reason), (6, reason)]
    assert skipped == 1
    assert [(r["sku"], r["name"], r["active"]) for r in rows] == [
        ("a-1", "A", "true"),
        ("b-1", "B", "false"),
        ("c-1", "C", "false"),
        ("c-2", "C large", "false"),
    ]


def test_shopify_bad_status_and_published_values_are_rejected(tmp_path):
    _, rows, _, rejects = shopify_rows(
        tmp_path,
        [
            {"Handle": "a", "Title": "A", "Status": "Active ", "Variant SKU": "a-1"},
            {"Handle": "b", "Title": "B", "Status": "sold out", "Variant SKU": "b-1"},
            {"Handle": "c", "Title": "C", "Published": "yes", "Variant SKU": "c-1"},
            {"Handle": "d", "Title": "D", "Published": "false", "Variant SKU": "d-1"},
            {"Handle": "e", "Title": "E", "Variant SKU": "e-1"},
            {"Handle": "", "Title": "", "Status": "active", "Variant SKU": "f-1"},
        ],
    )
    assert [(r["sku"], r["active"]) for r in rows] == [("a-1", "true"), ("d-1", "false")]
    assert rejects == [
        (3, "Status is 'sold out', not active, draft or archived"),
        (4, "Published is 'yes', not TRUE or FALSE"),
        (6, "empty Status and Published (use a Status of active, draft or archived)"),
        (7, "empty Handle and empty Title"),
    ]


def test_shopify_header_without_variant_sku_is_one_line_naming_file_and_header():
    header = ["Handle", "Title", "Body (HTML)", "SKU", "Price"]
    with pytest.raises(MissingColumnError) as e:
        PRESETS["shopify"].bind(header, WIDE, "export.csv line 1")
    assert str(e.value) == (
        "export.csv line 1: no 'Variant SKU' column in the header for the shopify preset "
        "(found 'Handle', 'Title', 'Body (HTML)', 'SKU', 'Price'; is this a Shopify "
        "product export?)"
    )
    assert e.value.exit_status == ExitStatus.FAILED


def test_a_woocommerce_file_given_to_the_shopify_preset_names_the_missing_header():
    with open(WOO_SAMPLE, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    with pytest.raises(MissingColumnError) as e:
        PRESETS["shopify"].bind(header, WIDE, "woo.csv line 1")
    assert str(e.value).startswith(
        "woo.csv line 1: no 'Variant SKU' column in the header for the shopify preset "
        "(found 'ID', 'Type', 'SKU', 'Name', 'Published', "
    )


def test_headers_match_case_insensitively_and_a_bom_is_ignored():
    header = ["\ufeffhandle", "TITLE", "variant sku", "status"]
    bound = PRESETS["shopify"].bind(header, PRODUCTS, "x.csv line 1")
    assert bound.columns == ["sku", "name", "active"]
    assert bound.apply(["h", "Name", "S1", "draft"]) == ["S1", "Name", "false"]


def test_a_header_the_preset_reads_twice_is_an_error():
    with pytest.raises(InputError) as e:
        PRESETS["shopify"].bind(["Variant SKU", "Title", "title"], PRODUCTS, "x.csv line 1")
    assert str(e.value) == (
        "x.csv line 1: two 'title' columns in the header (the shopify preset reads one; "
        "rename the other)"
    )


def test_a_target_without_the_key_column_is_a_usage_error():
    with pytest.raises(PresetError) as e:
        PRESETS["woocommerce"].bind(["SKU", "Name"], ("code", "name"), "x.csv line 1")
    assert str(e.value) == (
        "the woocommerce preset needs a sku column in the target table for its 'SKU' "
        "(the table has code, name)"
    )
    assert e.value.exit_status == ExitStatus.USAGE


# -- WooCommerce -------------------------------------------------------------------------------


def test_woocommerce_sample_every_row_with_a_sku_is_loaded():
    bound, rows, skipped, rejects = run("woocommerce", WOO_SAMPLE)
    assert bound.key == ("sku",)
    assert bound.columns == [
        "sku", "name", "description", "short_description", "active", "price", "sale_price",
        "stock",
    ]  # fmt: skip
    assert (len(rows), skipped, rejects) == (25, 0, [])
    rows = by_sku(rows)
    # price is Regular price; Sale price goes to sale_price, not into price.
    assert (rows["woo-beanie"]["price"], rows["woo-beanie"]["sale_price"]) == ("20", "18")
    assert rows["wp-pennant"]["price"] == "11.05"
    assert all(r["active"] == "true" for r in rows.values())


def test_woocommerce_sample_variations_find_parents_far_above_them():
    _, rows, _, _ = run("woocommerce", WOO_SAMPLE)
    rows = by_sku(rows)
    # Variations have their own Name and Description in the sample, and keep them; their
    # Short description is empty and is the parent's.  woo-hoodie-blue-logo comes 23 rows
    # after its parent woo-hoodie, past a grouped and an external product.
    for sku in ("woo-vneck-tee-red", "woo-hoodie-red", "woo-hoodie-blue-logo"):
        assert rows[sku]["short_description"] == "This is a variable product."
        assert rows[sku]["description"].startswith("Lorem ipsum")
    assert rows["woo-hoodie-blue-logo"]["name"] == "Hoodie - Blue, Yes"
    assert rows["woo-vneck-tee-red"]["price"] == "20"
    assert rows["woo-hoodie-red"]["sale_price"] == "42"


def test_woocommerce_generated_10k_products(tmp_path):
    path = tmp_path / "woo.csv"
    expected = write_woocommerce(path, 10_000, variations=3)
    _, rows, skipped, rejects = run("woocommerce", path)
    assert rejects == []
    assert (len(rows), skipped) == (expected.loaded, expected.skipped) == (24_500, 500)
    assert sum(r["active"] == "true" for r in rows) == expected.active
    variations = [r for r in rows if r["sku"].count("-") == 1]
    assert len(variations) == 15_000
    # A variation's empty Name, Description and Short description are its parent's, also
    # for a parent without a SKU (named as id:N) that was itself skipped.
    for r in variations:
        i = int(r["sku"][1:7])
        assert r["name"].startswith(f"Product {i} ")
        assert r["short_description"] == f"Short {i}"
        assert r["description"].startswith("<p>")
    inherited = sum(not r["name"].endswith(("- S", "- M", "- L")) for r in variations)
    assert inherited == expected.inherited == 10_000


def test_woocommerce_variation_of_a_draft_parent_is_inactive(tmp_path):
    path = tmp_path / "woo.csv"
    write_woocommerce(path, 16, variations=2)
    _, rows, _, _ = run("woocommerce", path)
    rows = by_sku(rows)
    assert rows["W000007"]["active"] == "false"  # a draft (-1) variable product
    assert {rows["W000007-0"]["active"], rows["W000007-1"]["active"]} == {"false"}
    assert {rows["W000003-0"]["active"], rows["W000003-1"]["active"]} == {"true"}


def woo_rows(tmp_path, rows):
    path = tmp_path / "w.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(WOOCOMMERCE_HEADER)
        for values in rows:
            out.writerow([values.get(h, "") for h in WOOCOMMERCE_HEADER])
    return run("woocommerce", path, target=PRODUCTS)


def test_woocommerce_rows_without_sku_skipped_and_orphan_variations_rejected(tmp_path):
    _, rows, skipped, rejects = woo_rows(
        tmp_path,
        [
            {"ID": "1", "Type": "variable", "SKU": "p", "Name": "Parent", "Published": "1"},
            {"ID": "2", "Type": "simple", "SKU": "", "Name": "No SKU", "Published": "1"},
            {"ID": "3", "Type": "variation", "SKU": "p-1", "Published": "1", "Parent": "P"},
            {"ID": "4", "Type": "variation", "SKU": "q-1", "Published": "1", "Parent": "q",
             "Name": "Q one", "Description": "d"},
            {"ID": "5", "Type": "variation", "SKU": "q-2", "Published": "1", "Parent": "q"},
            {"ID": "6", "Type": "variation", "SKU": "r-1", "Published": "1", "Name": "R"},
            {"ID": "7", "Type": "simple", "SKU": "s", "Name": "S", "Published": "-1"},
            {"ID": "8", "Type": "simple", "SKU": "t", "Name": "T", "Published": "2"},
            {"ID": "9", "Type": "simple", "SKU": "u", "Name": "U", "Published": "0"},
            {"ID": "10", "Type": "simple", "SKU": "v", "Name": "V"},
        ],
    )  # fmt: skip
    assert skipped == 1
    assert [(r["sku"], r["name"], r["active"]) for r in rows] == [
        ("p", "Parent", "true"),
        ("p-1", "Parent", "true"),  # Parent SKUs match case-insensitively
        ("q-1", "Q one", "true"),  # its parent is not in the file, but it needs nothing
        ("s", "S", "false"),
        ("u", "U", "false"),
    ]
    assert rejects == [
        (6, "variation 'q-2' has an empty Name, and its Parent 'q' is not in the file before "
         "it (fill in Name, or export the parent with it)"),
        (7, "variation 'r-1' has an empty Description and no Parent to take it from"),
        (9, "Published is '2', not 1, 0 or -1"),
        (11, "empty Published (use 1, 0 or -1)"),
    ]  # fmt: skip


def test_woocommerce_parent_memory_per_variable_product():
    """Backs the figure in the presets module docstring: what the preset keeps for each
    variable product with a 300-character description, and that it keeps nothing for
    simple products and variations."""
    bound = PRESETS["woocommerce"].bind(WOOCOMMERCE_HEADER, WIDE, "w.csv line 1")

    def row(**values):
        return [values.get(h, "") for h in WOOCOMMERCE_HEADER]

    def kept(rows: int, **values) -> float:
        tracemalloc.start()
        for i in range(rows):
            # Each row is built here and dropped after apply(), as the reader's are, so
            # what stays traced is what the preset keeps.
            bound.apply(row(**{k: v.format(i=i) for k, v in values.items()}))
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return size / rows

    per_parent = kept(
        10_000, ID="{i}", Type="variable", SKU="W{i:06d}", Name="Product {i}", Published="1",
        Description="d" * 300 + "{i}", **{"Short description": "Short {i}"},
    )  # fmt: skip
    assert 500 < per_parent < 1_000, per_parent
    per_other = kept(
        10_000, ID="x{i}", Type="variation", SKU="V{i:06d}", Name="V {i}", Published="1",
        Description="d" * 300, Parent="W000001",
    )  # fmt: skip
    assert per_other < 10, per_other
