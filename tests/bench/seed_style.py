"""The old system's import, rebuilt for the benchmark: batches of parameterised statements.

    python tests/bench/seed_style.py FILE --dsn DSN

Reads FILE with csv.DictReader in batches of 5,000 rows. Per batch it looks up which
SKUs exist (one SELECT), inserts the new ones with multi-row INSERT ... VALUES and updates
the existing ones with UPDATE ... FROM (VALUES ...), at most 1,000 rows per statement.
Everything runs in one transaction. Within a batch the last occurrence of a SKU wins; a
SKU inserted by an earlier batch is found by the next batch's SELECT (same transaction),
so later batches win too. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Iterator

import psycopg
from psycopg import sql

BATCH_ROWS = 5_000
STATEMENT_ROWS = 1_000

_SELECT = "SELECT id, lower(sku) FROM products WHERE lower(sku) = ANY(%s)"


def _values(rows: int) -> sql.Composed:
    row = sql.SQL("(%s, %s, %s)")
    return sql.SQL(", ").join([row] * rows)


def _insert(rows: int) -> sql.Composed:
    return sql.SQL("INSERT INTO products (sku, name, description) VALUES {}").format(_values(rows))


def _update(rows: int) -> sql.Composed:
    # The old system rewrote every existing row it was given, changed or not.
    return sql.SQL(
        "UPDATE products p SET name = v.name, description = v.description, updated_at = now()"
        " FROM (VALUES {}) v(k, name, description) WHERE lower(p.sku) = v.k"
    ).format(_values(rows))


def _batches(path: str) -> Iterator[list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        batch: list[dict[str, str]] = []
        for record in csv.DictReader(f):
            batch.append(record)
            if len(batch) == BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def load(path: str, dsn: str) -> dict[str, int]:
    counts = {"rows_read": 0, "inserted": 0, "updated": 0, "statements": 0}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        counts["statements"] += 1  # the BEGIN psycopg sends before the first statement
        for batch in _batches(path):
            counts["rows_read"] += len(batch)
            last: dict[str, tuple[str, str, str]] = {}
            for record in batch:
                sku = record["sku"]
                last[sku.lower()] = (sku, record["name"], record["description"])
            cur.execute(_SELECT, (list(last),))
            counts["statements"] += 1
            existing = {key for _, key in cur.fetchall()}
            new = [row for key, row in last.items() if key not in existing]
            old = [(key, name, desc) for key, (_, name, desc) in last.items() if key in existing]
            for chunk in _chunks(new, STATEMENT_ROWS):
                cur.execute(_insert(len(chunk)), [v for row in chunk for v in row])
                counts["statements"] += 1
                counts["inserted"] += cur.rowcount
            for chunk in _chunks(old, STATEMENT_ROWS):
                cur.execute(_update(len(chunk)), [v for row in chunk for v in row])
                counts["statements"] += 1
                counts["updated"] += cur.rowcount
        counts["statements"] += 1  # COMMIT, sent when the connection block exits
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = load(args.file, args.dsn)
    counts["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
