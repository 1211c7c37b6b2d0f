"""Generated shop exports in the layouts of Shopify's and WooCommerce's product CSVs, for
tests that need more rows than the samples in tests/data/presets have.

Each writer streams its rows and returns what a preset should make of the file, worked
out from how it was generated, not by running the preset.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

SHOPIFY_HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags",
    "Published", "Option1 Name", "Option1 Value", "Variant SKU", "Variant Grams",
    "Variant Inventory Qty", "Variant Price", "Variant Compare At Price", "Variant Barcode",
    "Image Src", "Image Position", "Status",
]  # fmt: skip

WOOCOMMERCE_HEADER = [
    "ID", "Type", "SKU", "Name", "Published", "Is featured?", "Short description",
    "Description", "Stock", "Sale price", "Regular price", "Categories", "Parent",
    "Attribute 1 name", "Attribute 1 value(s)",
]  # fmt: skip

_WORDS = [
    "oak",
    "linen",
    "wool",
    "river",
    "slate",
    "amber",
    "cotton",
    "harbor",
    "maple",
    "copper",
    "fern",
    "dune",
]
_SIZES = ["S", "M", "L", "XL", "XXL"]
STATUSES = ["active", "draft", "archived"]


@dataclass
class Expected:
    rows: int = 0  # data rows written
    loaded: int = 0  # rows a preset returns fields for
    skipped: int = 0  # rows without a SKU
    active: int = 0  # loaded rows whose active is 'true'
    inherited: int = 0  # loaded rows that take their name from another row


def _body(rng: random.Random, i: int) -> str:
    # Some descriptions hold what a CSV must quote: commas, quotes, line breaks.
    words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 40)))
    if i % 7 == 0:
        return f'<p>{words},\n"soft" &amp; warm</p>'
    return f"<p>{words}</p>"


def write_shopify(
    path: Path, products: int, variants: int = 3, *, seed: int = 0, status: bool = True
) -> Expected:
    """A Shopify export: each product's rows together, the first with the product fields
    and its first variant, then its other variants with the product fields empty, and for
    every third product an extra image row without a SKU.  Status cycles through active,
    draft and archived; with status=False there is no Status column and Published
    (TRUE/FALSE) says whether a product is active."""
    rng = random.Random(seed)
    header = SHOPIFY_HEADER if status else SHOPIFY_HEADER[:-1]
    expected = Expected()
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(header)
        for i in range(products):
            handle = f"product-{i}"
            state = STATUSES[i % 3]
            active = state == "active"
            published = "TRUE" if active else "FALSE"
            for v in range(variants):
                first = v == 0
                row = [
                    handle,
                    f"Product {i} {rng.choice(_WORDS)}" if first else "",
                    _body(rng, i) if first else "",
                    "Acme" if first else "",
                    "Apparel" if first else "",
                    "Shirts" if first else "",
                    "tag" if first else "",
                    published if first else "",
                    "Size" if first else "",
                    _SIZES[v % len(_SIZES)],
                    f"P{i:06d}-{v}",
                    "200",
                    str(rng.randint(0, 50)),
                    f"{rng.randint(5, 200)}.{rng.randint(0, 99):02d}",
                    "",
                    str(rng.randint(10**11, 10**12)),
                    f"https://cdn.example.com/{handle}-{v}.jpg",
                    str(v + 1),
                ]
                if status:
                    row.append(state if first else "")
                out.writerow(row)
                expected.rows += 1
                expected.loaded += 1
                expected.active += active
                expected.inherited += not first
            if i % 3 == 0:
                image = [handle] + [""] * (len(header) - 1)
                image[header.index("Image Src")] = f"https://cdn.example.com/{handle}-x.jpg"
                out.writerow(image)
                expected.rows += 1
                expected.skipped += 1
    return expected


def write_woocommerce(
    path: Path, products: int, variations: int = 3, *, seed: int = 0, lag: int = 5
) -> Expected:
    """A WooCommerce export in ID order: every other product is variable, and its
    variations were created later, so they come `lag` products after it.  Variations
    have an empty Name every other time (they take the parent's) and never a Short
    description or Description of their own.  Every fourth variable product is a draft
    (-1), which makes its variations inactive; every tenth has no SKU (skipped), and its
    variations name it as id:N."""
    rng = random.Random(seed)
    expected = Expected()
    pending: list[tuple[int, list[list[str]]]] = []  # (write after product, variation rows)
    next_id = 1

    def width(row: list[str]) -> list[str]:
        return row + [""] * (len(WOOCOMMERCE_HEADER) - len(row))

    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(WOOCOMMERCE_HEADER)
        for i in range(products):
            pid, next_id = next_id, next_id + 1
            variable = i % 2 == 1
            draft = variable and i % 8 == 7
            no_sku = variable and i % 20 == 1
            sku = "" if no_sku else f"W{i:06d}"
            published = "-1" if draft else ("0" if i % 6 == 4 else "1")
            name = f"Product {i} {rng.choice(_WORDS)}"
            row = width([
                str(pid),
                "variable" if variable else "simple, virtual" if i % 10 == 0 else "simple",
                sku,
                name,
                published,
                "0",
                f"Short {i}",
                _body(rng, i),
                "" if variable else str(rng.randint(0, 99)),
                "",
                "" if variable else f"{rng.randint(5, 99)}.{rng.randint(0, 99):02d}",
                "Clothing > Shirts",
                "",
                "Size" if variable else "",
                ", ".join(_SIZES[:variations]) if variable else "",
            ])  # fmt: skip
            out.writerow(row)
            expected.rows += 1
            if no_sku:
                expected.skipped += 1
            else:
                expected.loaded += 1
                expected.active += published == "1"
            if variable:
                ref = f"id:{pid}" if no_sku else sku
                rows = []
                for v in range(variations):
                    own_name = v % 2 == 1
                    rows.append(width([
                        "",  # the ID is given when written
                        "variation",
                        f"W{i:06d}-{v}",
                        f"{name} - {_SIZES[v]}" if own_name else "",
                        "1",
                        "0",
                        "",
                        "",
                        str(rng.randint(0, 20)),
                        f"{rng.randint(1, 9)}.00" if v == 0 else "",
                        f"{rng.randint(10, 99)}.00",
                        "",
                        ref,
                        "Size",
                        _SIZES[v],
                    ]))  # fmt: skip
                    expected.loaded += 1
                    expected.active += not draft
                    expected.inherited += not own_name
                pending.append((i + lag, rows))
            while pending and pending[0][0] <= i:
                for variation in pending.pop(0)[1]:
                    variation[0], next_id = str(next_id), next_id + 1
                    out.writerow(variation)
                    expected.rows += 1
        for _, rows in pending:
            for variation in rows:
                variation[0], next_id = str(next_id), next_id + 1
                out.writerow(variation)
                expected.rows += 1
    return expected
