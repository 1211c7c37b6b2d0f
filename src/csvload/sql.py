"""SQL text for the import pipeline.  Builders only: nothing here executes.

Staging columns are named c1..cN by position, so no header text ever reaches SQL; the
mapping from product fields to those columns is the only input these builders take.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

from csvload.schema import PRODUCTS

STAGE = sql.Identifier("csvload_stage")


def stage_column(index: int) -> sql.Identifier:
    return sql.Identifier(f"c{index + 1}")


def set_local(settings: Mapping[str, str]) -> sql.Composed:
    """One statement setting each of settings for the current transaction only."""
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Literal(v))
            for k, v in settings.items()
        )
    )


def create_stage(ncols: int) -> sql.Composed:
    """A temp table holding the file's rows as text, in file order (ord).

    ord's sequence hands out numbers from a cache of 100,000 held by this session (the
    only one that can see a temp table), so they still rise in COPY order; fetching them
    one at a time cost 0.06 s of a 0.38 s COPY at 500k rows.
    """
    columns = sql.SQL(", ").join(sql.SQL("{} text").format(stage_column(i)) for i in range(ncols))
    return sql.SQL(
        "CREATE TEMP TABLE {stage} ({columns},"
        " ord bigint GENERATED ALWAYS AS IDENTITY (CACHE 100000)) ON COMMIT DROP"
    ).format(stage=STAGE, columns=columns)


def copy_stage(ncols: int, delimiter: str) -> sql.Composed:
    # FORCE_NOT_NULL: an empty field is an empty string, never NULL.  The reader sends
    # UTF-8 whatever the connection's client_encoding.
    columns = sql.SQL(", ").join(stage_column(i) for i in range(ncols))
    return sql.SQL(
        "COPY {stage} ({columns}) FROM STDIN"
        " (FORMAT csv, DELIMITER {delimiter}, FORCE_NOT_NULL ({columns}), ENCODING 'UTF8')"
    ).format(stage=STAGE, columns=columns, delimiter=sql.Literal(delimiter))


def _fields(columns: Mapping[str, int]) -> list[str]:
    return [f for f in ("sku", "name", "description", "active") if f in columns]


def _field_expr(field: str, columns: Mapping[str, int]) -> sql.Composable:
    column = stage_column(columns[field])
    # The reader has already normalised active to 't'/'f'.
    return sql.SQL("{}::boolean").format(column) if field == "active" else column


def _latest(columns: Mapping[str, int]) -> sql.Composed:
    """One row per case-folded SKU: the last occurrence in the file wins.

    Sorting on the "C" collation is byte order, much cheaper than the database's
    linguistic collation, and equality is all DISTINCT ON needs.
    """
    sku = stage_column(columns["sku"])
    select = sql.SQL(", ").join(
        sql.SQL("{} AS {}").format(_field_expr(f, columns), sql.Identifier(f))
        for f in _fields(columns)
    )
    return sql.SQL(
        'SELECT DISTINCT ON (lower({sku}) COLLATE "C") lower({sku}) AS key, {select}'
        ' FROM {stage} ORDER BY lower({sku}) COLLATE "C", ord DESC'
    ).format(sku=sku, select=select, stage=STAGE)


def insert_latest(columns: Mapping[str, int]) -> sql.Composed:
    """Fill an empty products table straight from the deduplicated stage."""
    fields = _fields(columns)
    names = sql.SQL(", ").join(sql.Identifier(f) for f in fields)
    return sql.SQL("INSERT INTO {table} ({names}) SELECT {names} FROM ({latest}) latest").format(
        table=sql.Identifier(PRODUCTS), names=names, latest=_latest(columns)
    )


def _merge_lists(columns: Mapping[str, int], source: str) -> dict[str, sql.Composable]:
    """The field lists both merge statements use: names; mine and theirs (the product's
    fields and the file's, p.f and d.f); assignments (f = <source>.f)."""
    fields = [sql.Identifier(f) for f in _fields(columns)]
    return {
        "names": sql.SQL(", ").join(fields),
        "mine": sql.SQL(", ").join(sql.SQL("p.{}").format(f) for f in fields),
        "theirs": sql.SQL(", ").join(sql.SQL("d.{}").format(f) for f in fields),
        "assignments": sql.SQL(", ").join(
            sql.SQL("{f} = {s}.{f}").format(f=f, s=sql.Identifier(source)) for f in fields
        ),
    }


def merge(columns: Mapping[str, int]) -> sql.Composed:
    """Merge the deduplicated stage into a filled products table in ONE statement, and
    return (distinct keys, updated, inserted).  For servers without MERGE (before 15), or
    whose table statistics are off; see merge_into().

    `pairs` matches each key with its product (one hash join) and says whether it differs;
    the UPDATE reaches the changed products by ctid and the INSERT takes the unmatched keys,
    so there is no per-row conflict check.  All parts run on one snapshot; that is safe
    because the caller holds a lock that keeps every other writer out of products, and no
    row is touched twice (keys are unique).  Against a temp table of pairs followed by a
    separate UPDATE and INSERT this saved 0.5 s of 3.9 s on the 500k re-import.
    """
    table = sql.Identifier(PRODUCTS)
    return sql.SQL(
        "WITH pairs AS MATERIALIZED ("
        "  SELECT d.*, p.ctid AS product,"
        "  p.ctid IS NOT NULL AND ROW({mine}) IS NOT DISTINCT FROM ROW({theirs}) AS same"
        "  FROM ({latest}) d LEFT JOIN {table} p ON lower(p.sku) = d.key),"
        " updated AS (UPDATE {table} p SET {assignments}, updated_at = now()"
        "  FROM pairs m WHERE p.ctid = m.product AND NOT m.same RETURNING 1),"
        # New keys in key order, so the lower(sku) index fills left to right.
        " inserted AS (INSERT INTO {table} ({names})"
        "  SELECT {names} FROM pairs WHERE product IS NULL ORDER BY key RETURNING 1)"
        " SELECT (SELECT count(*) FROM pairs), (SELECT count(*) FROM updated),"
        " (SELECT count(*) FROM inserted)"
    ).format(latest=_latest(columns), table=table, **_merge_lists(columns, "m"))


# Counts the rows MERGE matched and left alone: MERGE has no RETURNING before PostgreSQL
# 17.  Owned by the stage's ord column, so it goes when the stage does.
UNCHANGED = sql.Identifier("csvload_unchanged")
CREATE_UNCHANGED = sql.SQL("CREATE TEMP SEQUENCE {seq} OWNED BY {stage}.ord").format(
    seq=UNCHANGED, stage=STAGE
)

# Whether the server counts table writes (track_counts, on unless an administrator turned
# it off), and what this transaction has inserted into and updated in products so far.
PRODUCTS_WRITTEN = sql.SQL(
    "SELECT current_setting('track_counts')::boolean,"
    " pg_stat_get_xact_tuples_inserted({table}::regclass),"
    " pg_stat_get_xact_tuples_updated({table}::regclass)"
).format(table=sql.Literal(PRODUCTS))
MERGE_COUNTS = sql.SQL(
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END,"  # never called: none
    " pg_stat_get_xact_tuples_inserted({table}::regclass),"
    " pg_stat_get_xact_tuples_updated({table}::regclass) FROM {seq}"
).format(seq=UNCHANGED, table=sql.Literal(PRODUCTS))


def merge_into(columns: Mapping[str, int]) -> sql.Composed:
    """Merge the deduplicated stage into a filled products table with MERGE (PostgreSQL
    15 and later): one join of the stage's keys with products drives both the UPDATE of
    the changed rows and the INSERT of the new keys, with no per-row conflict check.

    MERGE cannot return counts before PostgreSQL 17.  A matched row that is the same
    fails the first WHEN and meets the second, whose condition takes a number from
    UNCHANGED, exactly once per row (no other writer can make MERGE recheck a row: the
    caller holds a lock that keeps them out); the caller reads inserted and updated from
    the transaction's table statistics (PRODUCTS_WRITTEN before, MERGE_COUNTS after).
    On the 500k re-import this ran in 1.55-1.7 s, against 1.8-1.9 s for the WITH
    statement of merge() (both on the fillfactor-70 table).
    """
    lists = _merge_lists(columns, "d")
    return sql.SQL(
        "MERGE INTO {table} p USING ({latest}) d ON lower(p.sku) = d.key"
        " WHEN MATCHED AND ROW({mine}) IS DISTINCT FROM ROW({theirs})"
        "  THEN UPDATE SET {assignments}, updated_at = now()"
        " WHEN MATCHED AND nextval({seq}) > 0 THEN DO NOTHING"
        " WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({theirs})"
    ).format(
        seq=sql.Literal("csvload_unchanged"),
        latest=_latest(columns),
        table=sql.Identifier(PRODUCTS),
        **lists,
    )


LOCK_PRODUCTS = sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
    sql.Identifier(PRODUCTS)
)
LOCK_PRODUCTS_NOWAIT = sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE NOWAIT").format(
    sql.Identifier(PRODUCTS)
)
LOCK_PRODUCTS_EXCLUSIVE = sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
    sql.Identifier(PRODUCTS)
)
PRODUCTS_EMPTY = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(PRODUCTS))


def latest(columns: Mapping[str, int]) -> sql.Composed:
    """The deduplicated stage, exactly as the import merges it: one row per key
    (lower(sku)), the last occurrence in the file winning."""
    return _latest(columns)


def verify_counts(columns: Mapping[str, int]) -> sql.Composed:
    """Compare the deduplicated stage with products in one pass over the stage.

    Returns one row: skus, missing, different, then up to %(examples)s examples of each
    (missing: the file's SKU; different: the file's SKU and the fields that differ).  The
    fields compared are those the file has, sku excepted: a SKU matches whatever its case.
    """
    compared = [f for f in _fields(columns) if f != "sku"]
    differs = sql.SQL(", ").join(
        sql.SQL("CASE WHEN d.{f} IS DISTINCT FROM p.{f} THEN {name} END").format(
            f=sql.Identifier(f), name=sql.Literal(f)
        )
        for f in compared
    )
    # MATERIALIZED: the four readers below share one dedupe sort and one join.
    return sql.SQL(
        "WITH checked AS MATERIALIZED ("
        " SELECT d.key, d.sku, p.id IS NULL AS missing,"
        " CASE WHEN p.id IS NULL THEN '{{}}'::text[]"
        " ELSE array_remove(ARRAY[{differs}]::text[], NULL) END AS differs"
        " FROM ({latest}) d LEFT JOIN {table} p ON lower(p.sku) = d.key)"
        " SELECT (SELECT count(*) FROM checked),"
        " (SELECT count(*) FROM checked WHERE missing),"
        " (SELECT count(*) FROM checked WHERE differs <> '{{}}'),"
        " ARRAY(SELECT sku FROM checked WHERE missing"
        '  ORDER BY key COLLATE "C" LIMIT %(examples)s),'
        " ARRAY(SELECT json_build_array(sku, differs) FROM checked WHERE differs <> '{{}}'"
        '  ORDER BY key COLLATE "C" LIMIT %(examples)s)'
    ).format(differs=differs, latest=_latest(columns), table=sql.Identifier(PRODUCTS))


ANALYZE_STAGE = sql.SQL("ANALYZE {}").format(STAGE)
