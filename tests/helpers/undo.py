"""What the tests of tests/undo/ share: running `csvload undo`, and a user's table with a
composite key, a CHECK, foreign keys both ways and (ITEM_TRIGGER) an audit trigger."""

from __future__ import annotations

import json

from click.testing import Result

from helpers.cli import quiet_cli


def undo(dsn: str, *args: str) -> Result:
    """`csvload undo ARGS --json --quiet`."""
    return quiet_cli(dsn, "undo", *args, "--json")


def undone(dsn: str, *args: str) -> dict:
    """undo() that must succeed: its JSON outcome."""
    result = undo(dsn, *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


ITEM_DDL = """
CREATE TABLE supplier (code text PRIMARY KEY);
INSERT INTO supplier VALUES ('ACME'), ('BOLT');
CREATE TABLE item (
    id bigint GENERATED ALWAYS AS IDENTITY,
    supplier text NOT NULL REFERENCES supplier (code),
    sku text NOT NULL,
    name text NOT NULL,
    price numeric(10, 2) CHECK (price >= 0),
    seen date,
    weight double precision,
    active boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (supplier, sku)
);
CREATE TABLE order_line (
    id serial PRIMARY KEY, supplier text, sku text,
    CONSTRAINT order_line_item FOREIGN KEY (supplier, sku) REFERENCES item (supplier, sku)
);
"""
ITEM_TRIGGER = """
CREATE TABLE item_audit (op text, supplier text, sku text);
CREATE FUNCTION item_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO item_audit VALUES (TG_OP, coalesce(NEW.supplier, OLD.supplier),
                                   coalesce(NEW.sku, OLD.sku));
    RETURN coalesce(NEW, OLD);
END $$;
CREATE TRIGGER item_audit AFTER INSERT OR UPDATE OR DELETE ON item
    FOR EACH ROW EXECUTE FUNCTION item_audit();
"""
