"""Shop-export presets: `--preset shopify` and `--preset woocommerce`.

A preset is a mapping from an export's headers to the target's columns plus a few row
rules, written down here and nowhere else.  The reader binds a preset to the file's header
and the target's columns once (Preset.bind), then hands it every record (BoundPreset.apply),
which returns the fields to load, None for a row to skip (counted as skipped, not
rejected), or raises RowRejected for a row that is bad.  Only the target's columns that
the export has are loaded: a table without a `price` column simply gets no prices.

Values are passed on as the export's text (typing them is the loader's business), except
`active`, which is worked out from the export's status column as 'true' or 'false'.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from csvload.errors import InputError, MissingColumnError, PresetError


class RowRejected(Exception):
    """A record the preset's row rules refuse; the reader sets it aside with this reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Field:
    """One target column and the export header it comes from."""

    column: str
    header: str
    # A product field: on a variant row an empty value stands for the product's value.
    shared: bool = False


# The mappings, in the order of BoundPreset.columns.  `active` is not a plain mapping:
# each preset works it out from its status headers (_SHOPIFY_STATUS, _WOO_PUBLISHED).
SHOPIFY_FIELDS = (
    Field("sku", "Variant SKU"),
    Field("name", "Title", shared=True),
    Field("description", "Body (HTML)", shared=True),
    Field("active", "Status", shared=True),
    Field("price", "Variant Price"),
    Field("compare_at_price", "Variant Compare At Price"),
    Field("stock", "Variant Inventory Qty"),
    Field("barcode", "Variant Barcode"),
    Field("vendor", "Vendor", shared=True),
    Field("type", "Type", shared=True),
    Field("handle", "Handle"),
)
_SHOPIFY_PUBLISHED_HEADER = "Published"
_SHOPIFY_STATUS = {"active": "true", "draft": "false", "archived": "false"}
_SHOPIFY_PUBLISHED = {"true": "true", "false": "false"}

WOOCOMMERCE_FIELDS = (
    Field("sku", "SKU"),
    Field("name", "Name", shared=True),
    Field("description", "Description", shared=True),
    Field("short_description", "Short description", shared=True),
    Field("active", "Published", shared=True),
    Field("price", "Regular price"),
    Field("sale_price", "Sale price"),
    Field("stock", "Stock"),
)
_WOO_PUBLISHED = {"1": "true", "0": "false", "-1": "false"}


def _normal(header: str) -> str:
    """Headers match as the reader matches them: case-insensitively, blanks and BOM aside."""
    return header.strip().lstrip("\ufeff").casefold()


class BoundPreset:
    """A preset bound to one file's header and one target: stateful, for one pass."""

    columns: list[str]  # the target columns apply() returns fields for, in that order
    key: tuple[str, ...]  # the target's key columns

    def __init__(
        self,
        preset: Preset,
        header: list[str],
        target_columns: Collection[str],
        where: str,
        extra_headers: tuple[str, ...] = (),
    ):
        targets = set(target_columns)
        self.key = preset.key
        for column in preset.key:
            if column not in targets:
                shown = ", ".join(sorted(targets)) or "none"
                raise PresetError(
                    f"the {preset.name} preset needs a {column} column in the target table "
                    f"for its {preset.key_header!r} (the table has {shown})"
                )
        wanted = {_normal(f.header) for f in preset.fields}
        wanted |= {_normal(h) for h in extra_headers}
        self._index: dict[str, int] = {}
        for i, name in enumerate(header):
            norm = _normal(name)
            if norm not in wanted:
                continue
            if norm in self._index:
                raise InputError(
                    f"{where}: two {name!r} columns in the header (the {preset.name} "
                    "preset reads one; rename the other)"
                )
            self._index[norm] = i
        if _normal(preset.key_header) not in self._index:
            found = ", ".join(repr(h) for h in header[:8])
            raise MissingColumnError(
                f"{where}: no {preset.key_header!r} column in the header for the "
                f"{preset.name} preset (found {found}; is this a {preset.title}?)"
            )
        # The fields loaded: those the target has and the file has (active: see subclasses).
        self._fields = [
            f
            for f in preset.fields
            if f.column in targets and (f.column == "active" or self.at(f.header) is not None)
        ]
        if not self._has_active():
            self._fields = [f for f in self._fields if f.column != "active"]
        self.columns = [f.column for f in self._fields]
        self._key_at = self._index[_normal(preset.key_header)]

    @property
    def key_at(self) -> int:
        """Where the key header is in the file."""
        return self._key_at

    def at(self, header: str) -> int | None:
        """The position of `header` in the file, or None."""
        return self._index.get(_normal(header))

    def _has_active(self) -> bool:
        raise NotImplementedError

    def apply(self, row: list[str]) -> list[str] | None:
        """The fields of `row` for self.columns, or None to skip it; raises RowRejected.
        `row` has the header's number of fields (the reader checks that first)."""
        raise NotImplementedError


class _ShopifyRows(BoundPreset):
    """**Shopify** (the product CSV Shopify exports and imports).  One row per variant; a product's
    rows share its `Handle` and come together, and only the first carries the product fields
    (`Title`, `Body (HTML)`, `Vendor`, `Type`, `Status`, `Published`); its other rows leave them
    empty.

    - The key is `Variant SKU` -> sku.  Rows without one (extra image rows, a product row of a
      product whose variants have SKUs) are skipped.
    - Product fields come from the product's first row with a Title: on the product's other
      rows an empty product field is that row's value; a field that is not empty is the
      row's own (the target has a row per variant, so a variant that says otherwise keeps
      what it says).
    - active: `Status` active -> true, draft or archived -> false; where there is no Status
      column, or it is empty, `Published` TRUE/FALSE (any case).  Status wins where both are
      set: Published only says whether the product is on the online store.
    - Memory stays flat: only the current Handle's product fields are kept.  A row that starts
      a Handle without a Title (a product's rows split up, or its first row lost) has no
      product fields to take: it is rejected, with a reason that says so, and so are the
      rows after it until a row of that Handle has a Title.  Rejecting loses nothing (the row
      goes to the rejects file, and the import fails unless --max-errors allows it) where
      loading it would store an empty name over the real one.
    - A row with an empty Handle stands alone.  A file without a Handle column has no
      variants: each row is taken as it is.
    """

    def __init__(self, preset, header, target_columns, where):
        super().__init__(preset, header, target_columns, where, (_SHOPIFY_PUBLISHED_HEADER,))
        self._handle_at = self.at("Handle")
        self._title_at = self.at("Title")
        self._status_at = self.at("Status")
        self._published_at = self.at(_SHOPIFY_PUBLISHED_HEADER)
        # Every product field the file has, loaded or not: Status and Published feed active.
        shared = [f.header for f in preset.fields if f.shared] + [_SHOPIFY_PUBLISHED_HEADER]
        self._shared_at = [i for i in map(self.at, shared) if i is not None]
        self._plan: list[tuple[str, int | None, bool]] = [
            (f.column, self.at(f.header), f.shared) for f in self._fields
        ]
        self._handle: str | None = None
        self._product: dict[int, str] | None = None  # position -> the product row's value

    def _has_active(self) -> bool:
        return self.at("Status") is not None or self.at(_SHOPIFY_PUBLISHED_HEADER) is not None

    def apply(self, row: list[str]) -> list[str] | None:
        handle = row[self._handle_at] if self._handle_at is not None else ""
        if not handle.strip() or handle != self._handle:
            self._handle = handle
            self._product = None
        if self._product is None and (
            self._title_at is None or self._handle_at is None or row[self._title_at].strip()
        ):
            self._product = {i: row[i] for i in self._shared_at}
        if not row[self._key_at].strip():
            return None
        product = self._product
        if product is None:
            if handle.strip():
                raise RowRejected(
                    f"no product row for Handle {handle!r} before this row, and its Title "
                    "is empty (keep each product's rows together, the first with its "
                    "Title, as Shopify exports them)"
                )
            raise RowRejected("empty Handle and empty Title")
        out = []
        for column, i, shared in self._plan:
            if column == "active":
                out.append(self._active(row, product))
                continue
            assert i is not None
            value = row[i]
            if shared and not value.strip():
                value = product[i]
            out.append(value)
        return out

    def _active(self, row: list[str], product: dict[int, str]) -> str:
        status = self._value(row, product, self._status_at)
        if status:
            active = _SHOPIFY_STATUS.get(status.lower())
            if active is None:
                raise RowRejected(f"Status is {status!r}, not active, draft or archived")
            return active
        published = self._value(row, product, self._published_at)
        if published:
            active = _SHOPIFY_PUBLISHED.get(published.lower())
            if active is None:
                raise RowRejected(f"Published is {published!r}, not TRUE or FALSE")
            return active
        if self._status_at is None:
            raise RowRejected("empty Published (use TRUE or FALSE)")
        if self._published_at is None:
            raise RowRejected("empty Status (use active, draft or archived)")
        raise RowRejected("empty Status and Published (use a Status of active, draft or archived)")

    @staticmethod
    def _value(row: list[str], product: dict[int, str], i: int | None) -> str:
        if i is None:
            return ""
        return (row[i].strip() or product[i]).strip()


class _WooCommerceRows(BoundPreset):
    """**WooCommerce** (the product CSV exporter of WooCommerce core).  One row per product and
    per variation, in ID order; a variation (`Type` variation) names its `Parent` by SKU or as
    `id:123`, and its parent, a `variable` product, comes before it in the file but seldom
    right before it (WooCommerce's own sample has thirteen other products between a parent and
    its variations).

    - The key is `SKU` -> sku; rows without one are skipped.
    - `Name`, `Description` and `Short description` of a variation, where empty, are its
      parent's (WooCommerce shows the parent's there too).  A variation whose parent is not
      in the file before it keeps what it has; if one of those fields is empty, it is
      rejected rather than loaded with an empty name.
    - active: `Published` 1 -> true, 0 (private) and -1 (draft) -> false.  A variation is
      active only when its parent is too: a variation of a draft product cannot be bought.
    - price is `Regular price`, sale_price `Sale price`: the sale price is not folded into
      price, because it has dates of its own that a plain column cannot carry.
    - Memory: to find a variation's parent, the preset keeps, for every `variable` product
      it has read, the few shared fields the target loads (name, description, short
      description, published).  That grows with the number of variable products, not with
      the rows: about 0.85 KB per parent with 300-character descriptions (measured in
      tests/test_presets.py).  Remembering only the last parent would reject variations of
      WooCommerce's own sample export.
    """

    def __init__(self, preset, header, target_columns, where):
        super().__init__(preset, header, target_columns, where, ("ID", "Type", "Parent"))
        self._id_at = self.at("ID")
        self._type_at = self.at("Type")
        self._parent_at = self.at("Parent")
        self._plan: list[tuple[Field, int]] = []
        for f in self._fields:
            i = self.at(f.header)
            assert i is not None  # active's header is Published, which _has_active() found
            self._plan.append((f, i))
        # What a variation may take from its parent: the loaded shared fields only.
        self._remember = [i for f, i in self._plan if f.shared]
        # "sku" (casefolded) or "id:123" -> {position: value} of a variable product.
        self._parents: dict[str, dict[int, str]] = {}

    def _has_active(self) -> bool:
        return self.at("Published") is not None

    def apply(self, row: list[str]) -> list[str] | None:
        types = set()
        if self._type_at is not None:
            types = {t.strip().lower() for t in row[self._type_at].split(",")}
        sku = row[self._key_at]
        if "variable" in types:
            self._remember_parent(row, sku)
        if not sku.strip():
            return None
        parent: dict[int, str] | None = None
        ref = ""
        variation = "variation" in types
        if variation and self._parent_at is not None:
            ref = row[self._parent_at].strip()
            parent = self._parents.get(ref.casefold()) if ref else None
        out = []
        for f, i in self._plan:
            value = row[i]
            if variation and f.shared and not value.strip():
                if parent is None:
                    raise RowRejected(self._orphan(sku, f.header, ref))
                value = parent[i]
            if f.column == "active":
                value = self._active(value, parent[i] if parent is not None else None)
            out.append(value)
        return out

    def _remember_parent(self, row: list[str], sku: str) -> None:
        values = {i: row[i] for i in self._remember}
        if sku.strip():
            self._parents[sku.strip().casefold()] = values
        if self._id_at is not None and row[self._id_at].strip():
            self._parents[f"id:{row[self._id_at].strip()}"] = values

    @staticmethod
    def _orphan(sku: str, header: str, ref: str) -> str:
        if not ref:
            return f"variation {sku!r} has an empty {header} and no Parent to take it from"
        return (
            f"variation {sku!r} has an empty {header}, and its Parent {ref!r} is not in the "
            f"file before it (fill in {header}, or export the parent with it)"
        )

    @staticmethod
    def _active(value: str, parent_value: str | None) -> str:
        published = value.strip()
        if not published:
            raise RowRejected("empty Published (use 1, 0 or -1)")
        active = _WOO_PUBLISHED.get(published)
        if active is None:
            raise RowRejected(f"Published is {published!r}, not 1, 0 or -1")
        # A variation of a draft or private product cannot be bought, whatever it says.
        if parent_value is not None and _WOO_PUBLISHED.get(parent_value.strip()) == "false":
            return "false"
        return active


@dataclass(frozen=True)
class Preset:
    """A shop's export layout: its key header, its mapping and its row rules."""

    name: str
    title: str  # what the export is, for messages
    key_header: str
    key: tuple[str, ...]
    fields: tuple[Field, ...]
    _rows: Callable[..., BoundPreset]

    def bind(self, header: list[str], target_columns: Collection[str], where: str) -> BoundPreset:
        """The preset for a file with `header` (`where` is like "file.csv line 1") loading
        into a table whose writable columns are `target_columns` (lowercase).  Raises
        MissingColumnError when the header lacks the key header, InputError when it has a
        header the preset reads twice, PresetError when the target lacks the key column."""
        return self._rows(self, header, target_columns, where)


PRESETS: dict[str, Preset] = {
    "shopify": Preset(
        "shopify", "Shopify product export", "Variant SKU", ("sku",), SHOPIFY_FIELDS, _ShopifyRows
    ),
    "woocommerce": Preset(
        "woocommerce",
        "WooCommerce product export",
        "SKU",
        ("sku",),
        WOOCOMMERCE_FIELDS,
        _WooCommerceRows,
    ),
}
