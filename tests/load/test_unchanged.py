"""The unchanged rows of a re-import never reach MERGE (statements/unchanged.py): its
source keeps only the new and changed rows, the others are counted in the join."""

from __future__ import annotations

import re

import psycopg
from helpers.db import query
from helpers.files import write_file
from helpers.library import import_file

from csvload.load.loader import ImportOptions, import_source
from csvload.read.source import Source, SourceOptions

FIRST = "sku,name,description\n" + "".join(f"S-{i},name {i},d{i}\n" for i in range(50))
# Two names changed, one new SKU, 48 rows as they were (one of them twice).
SECOND = (
    FIRST.replace("name 7,", "new 7,").replace("name 30,", "new 30,")
    + "S-99,n,d\nS-3,name 3,d3\n"
)


def merged_rows(dsn: str, path: str) -> tuple[object, int]:
    """Import `path` with auto_explain on; (the result, the rows MERGE's node got)."""
    notices: list[str] = []
    with Source(SourceOptions(path)) as source, psycopg.connect(dsn) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting, value in (("log_min_duration", "0"), ("log_analyze", "on"),
                               ("log_level", "notice")):  # fmt: skip
            conn.execute(f"SET auto_explain.{setting} = {value}")
        conn.commit()
        result = import_source(conn, source, ImportOptions())
    plan = next(n for n in notices if "Merge on products" in n)
    below = plan.split("Merge on products", 1)[1].split("->", 1)[1]
    return result, int(re.search(r"actual time=\S+ rows=(\d+)", below).group(1))


def test_only_new_and_changed_rows_reach_merge(products, tmp_path):
    import_file(products, write_file(tmp_path, FIRST, "first.csv"))
    before = dict(query(products, "SELECT sku, updated_at FROM products"))
    result, merged = merged_rows(products, write_file(tmp_path, SECOND, "second.csv"))
    assert (result.inserted, result.updated, result.unchanged, result.duplicates) == (1, 2, 48, 1)
    assert merged == 3  # not 51
    after = dict(query(products, "SELECT sku, updated_at FROM products"))
    assert {k for k in before if after.get(k) != before[k]} == {"S-7", "S-30"}
    assert query(products, "SELECT name FROM products WHERE sku IN ('S-7', 'S-3', 'S-99')"
                 " ORDER BY sku") == [("name 3",), ("new 7",), ("n",)]  # fmt: skip
    # Nothing changed: nothing reaches MERGE, every row is counted unchanged.
    result, merged = merged_rows(products, write_file(tmp_path, SECOND, "third.csv"))
    assert (result.updated, result.unchanged, merged) == (0, 51, 0)
