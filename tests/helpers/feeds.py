"""What the full-feed tests share: a user's table several suppliers share under a
composite key (with a price column for value rejects)."""

from __future__ import annotations

# active and updated_at as a shop would declare them.
ITEM_DDL = """
CREATE TABLE feed_item (
    id serial PRIMARY KEY,
    supplier text NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    price numeric(10, 2),
    active boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT feed_item_supplier_sku UNIQUE (supplier, sku)
)
"""
