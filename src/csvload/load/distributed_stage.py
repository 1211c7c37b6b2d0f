"""The stage as a distributed table co-located with a hash-distributed Citus target, so
that the writer (writers.ShardLocalUpsert) runs shard by shard on the workers instead of
through the coordinator: create() makes it when the target and the merge allow, else the
import stages on the coordinator as usual.  Tried on Citus 14.0.1 over PostgreSQL 18; the
findings that shaped it are in the comment below."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql

from csvload.load import statements, upsert
from csvload.table.binding import Plan
from csvload.table.catalog import Column

# Tried on Citus 14.0.1 over PostgreSQL 18 (tests/test_citus_stage.py runs it on a real
# coordinator and two workers):
#
# - Where it lives.  Citus cannot distribute a temp table, so the stage is a regular
#   UNLOGGED table csvload_stage in a schema of the import's own
#   (csvload_stage_<run id>), created, COPY'd into, merged and dropped inside the
#   import's transaction: a rollback, a failed import or a client killed with -9 leaves
#   nothing behind (the schema and the shards are part of the same distributed
#   transaction), and two imports never share a name.  The schema goes first on the
#   transaction's search_path, so every statement that names csvload_stage (fit.py's
#   misfit queries, fill_kept(), find_value()) reaches it unchanged.  Creating it does not
#   wait for another import's SHARE ROW EXCLUSIVE lock on the target.  UNLOGGED: at 500k
#   rows the COPY took 1.2 s against 2.1 s logged (0.5 s into a coordinator temp table).
# - Co-location needs the stage's distribution column to have the target's distribution
#   column's type and collation ("cannot colocate tables products and s1 / Distribution
#   column types don't match", "... collations don't match"); a type modifier may differ
#   (varchar for varchar(20) co-locates).  So the file's column for the distribution
#   column is staged as that type, which only works for types whose input never fails:
#   text, varchar and citext.  Any other type (integer, uuid...) stays on the coordinator
#   temp stage, so a bad value is still a reject.
# - Pushdown.  Citus runs INSERT ... SELECT ... ON CONFLICT shard by shard only when
#   (a) DISTINCT ON includes the distribution column itself ("Distinct on columns without
#   partition column is currently unsupported": lower(sku) is not enough), so it is
#   appended after the key's sort expressions, where it only breaks ties that cannot
#   happen; and (b) nothing volatile is evaluated ("volatile functions are not allowed in
#   distributed INSERT ... SELECT queries"), and an identity column's default is a
#   NextValueExpr.  So an identity column is written explicitly, OVERRIDING SYSTEM VALUE,
#   as first + ord from a block of its sequence reserved on the coordinator (the
#   sequence then goes on after the block; ids of rows not inserted are gaps, as a
#   sequence's are after a rollback).  Stable functions are fine: Citus replaces now() by
#   the coordinator's value before it sends the shard queries.  Any other obstacle
#   (a serial or gen_random_uuid() default, say) is found by EXPLAIN before the COPY, and
#   the import then stages on the coordinator as before.
# - Counts.  The distinct keys: count(*) over the stage grouped like DISTINCT ON
#   (a pushed-down GROUP BY, 0.15 s at 500k rows; count(DISTINCT sku) took 0.86 s);
#   inserted and updated: RETURNING (xmax = 0), summed on the coordinator, as upsert.py
#   does.  Into an empty table the INSERT's row count is all of them.

STAGE_SCHEMA_PREFIX = "csvload_stage_"
# Types whose text input cannot fail: a file's value of any other type must be able to
# become a reject, which a typed stage column would turn into a failed COPY.
_STAGEABLE = ("text", "varchar", "citext")

_DISTRIBUTION = """
SELECT a.attname, format_type(a.atttypid, NULL), t.typname, co.collname, cn.nspname
FROM pg_catalog.pg_dist_partition p
JOIN pg_catalog.pg_attribute a ON a.attrelid = p.logicalrelid
 AND a.attname = pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
WHERE p.logicalrelid = %s AND p.partmethod = 'h'
"""

# The identity's sequence, if it counts up by one without cycling: the only kind whose
# block csvload can reserve with one nextval and one setval.
_SEQUENCE = """
SELECT s.seqrelid::regclass::text
FROM pg_catalog.pg_sequence s
WHERE s.seqrelid = pg_catalog.pg_get_serial_sequence(%s, %s)::regclass
  AND s.seqincrement = 1 AND NOT s.seqcycle
"""


@dataclass(frozen=True)
class DistributedStage:
    """A stage created by create(): its schema, the index of the file column it is
    distributed by, and the target's identity column and sequence if csvload fills it."""

    schema: str
    column: int
    search_path: str  # the transaction's search_path before the stage's schema went first
    identity: Column | None = None
    sequence: str | None = None

    @property
    def distribution(self) -> sql.Identifier:
        return statements.stage_column(self.column)


def create(
    db, plan: Plan, ncols: int, constants: tuple[str, ...], run_id: str | None
) -> DistributedStage | None:
    """Create the distributed stage for this import and put its schema first on the
    search_path, or return None (creating nothing) when the target or the merge does not
    allow it; the caller then creates the coordinator's temp stage."""
    if plan.target.citus_kind != "distributed":
        return None
    conn = db.cur.connection
    found = conn.execute(_DISTRIBUTION, (plan.target.oid,)).fetchone()
    if found is None:
        return None
    name, base_type, type_name, collation, collation_schema = found
    key = plan.field(name)
    if key is None or name not in plan.target.key or type_name not in _STAGEABLE:
        return None
    if key.index >= ncols:
        return None  # a --scope constant, not a column of the file
    identity, sequence = _identity(conn, plan)
    if identity is not None and sequence is None:
        return None
    schema = STAGE_SCHEMA_PREFIX + (uuid.UUID(run_id) if run_id else uuid.uuid4()).hex
    search_path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
    stage = DistributedStage(schema, key.index, search_path, identity, sequence)
    typed = sql.SQL("{} COLLATE {}").format(
        sql.SQL(base_type), sql.Identifier(collation_schema, collation)
    ) if collation else sql.SQL(base_type)
    try:
        with conn.transaction():
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            db.execute(_set_search_path(stage, first=True))
            db.execute(statements.create_stage(ncols, constants, distributed=(key.index, typed)))
            db.execute(
                sql.SQL(
                    "SELECT pg_catalog.create_distributed_table({stage}, {column},"
                    " colocate_with => {target})"
                ).format(
                    stage=sql.Literal(f"{_quote(schema)}.csvload_stage"),
                    column=sql.Literal(f"c{key.index + 1}"),  # statements.stage_column()'s name
                    target=sql.Literal(
                        f"{_quote(plan.target.schema)}.{_quote(plan.target.name)}"
                    ),
                )
            )
            if not _pushed_down(db, plan, stage):
                # Citus would pull the rows to the coordinator: the temp stage is cheaper.
                raise _NotPushedDown
    except (_NotPushedDown, psycopg.errors.InsufficientPrivilege):
        # Rolled back to before CREATE SCHEMA, search_path included.
        return None
    return stage


def _pushed_down(db, plan: Plan, stage: DistributedStage) -> bool:
    """Whether Citus runs the merge shard by shard, from its EXPLAIN.  Planning an INSERT
    takes ROW EXCLUSIVE on the target (and on a shard, on the worker Citus asks for the
    plan) until the transaction ends, and two imports each holding it would deadlock on
    the SHARE ROW EXCLUSIVE lock they take next: so the EXPLAIN runs in a savepoint that
    is rolled back, which releases those locks on every node."""
    conn = db.cur.connection
    try:
        with conn.transaction():
            rows = db.execute(sql.SQL("EXPLAIN (COSTS OFF) {}").format(
                _upsert(plan, stage, 0, upsert_now(conn))
            )).fetchall()
            raise _Explained("\n".join(r[0] for r in rows))
    except _Explained as explained:
        text = str(explained)
    return "INSERT/SELECT method" not in text and "Insert on" in text


class _Explained(Exception):
    pass


class _NotPushedDown(Exception):
    pass


def upsert_now(conn: psycopg.Connection):
    return conn.execute(upsert.NOW).fetchone()[0]


def drop(db, stage: DistributedStage) -> None:
    """Drop the stage and its schema (inside the import's transaction) and restore the
    search_path."""
    db.execute(sql.SQL("DROP TABLE {}.csvload_stage").format(sql.Identifier(stage.schema)))
    db.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(stage.schema)))
    db.execute(_set_search_path(stage, first=False))


def localize(db, stage: DistributedStage) -> None:
    """Move the stage to the coordinator's temp table statements.STAGE (every column text, ord
    kept) and drop the distributed one: for fit.py, whose misfit queries join the stage
    with its temp table csvload_bad, which Citus refuses ("direct joins between
    distributed and local tables are not supported").  Only an import with rows that do
    not fit pays for it, and from then on it runs as on a coordinator stage."""
    conn = db.cur.connection
    columns = [
        r[0] for r in conn.execute(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attname <> 'ord' ORDER BY attnum",
            (f"{_quote(stage.schema)}.csvload_stage",),
        ).fetchall()
    ]
    db.execute(
        sql.SQL(
            "CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {columns}, ord FROM {dist}"
        ).format(
            stage=statements.STAGE,
            columns=sql.SQL(", ").join(
                sql.SQL("{0}::text AS {0}").format(sql.Identifier(c)) for c in columns
            ),
            dist=sql.Identifier(stage.schema, "csvload_stage"),
        )
    )
    drop(db, stage)


def merge(db, plan: Plan, result, empty: bool, stage: DistributedStage) -> int:
    """One attempt at writing the stage into the table, shard by shard; sets inserted and
    updated, returns the number of distinct keys (the writers' contract)."""
    conn = db.cur.connection
    first = _reserve(db, stage)
    if empty:
        # Every distinct key is new: the INSERT's row count (summed over the shards).
        result.inserted = db.execute(_insert_head(plan, stage, first)).rowcount
        result.updated = 0
        return result.inserted
    fill = upsert.fill_kept(plan)
    if fill is not None:
        db.execute(fill)
    row = db.execute(_upsert(plan, stage, first, upsert_now(conn))).fetchone()
    distinct, result.inserted, result.updated = row
    return distinct


def _identity(conn: psycopg.Connection, plan: Plan) -> tuple[Column | None, str | None]:
    """The target's identity column that the file does not fill, and its sequence when
    csvload can reserve a block of it (else None: no distributed stage)."""
    given = {f.column.name for f in plan.fields} | {c.name for c, _ in plan.defaults}
    for column in plan.target.columns:
        if column.identity and column.name not in given:
            table = f"{_quote(plan.target.schema)}.{_quote(plan.target.name)}"
            row = conn.execute(_SEQUENCE, (table, column.name)).fetchone()
            return column, row[0] if row else None
    return None, None


def _reserve(db, stage: DistributedStage) -> int | None:
    """Reserve one id per staged row (ord runs from 1 to max(ord)); return the block's
    first id minus one, so that a row's id is that + ord.  Runs under the import's lock
    on the target, which keeps the target's other inserts (the sequence's only users)
    waiting."""
    if stage.sequence is None:
        return None
    rows = db.execute("SELECT coalesce(max(ord), 0) FROM csvload_stage").fetchone()[0]
    if rows == 0:
        return 0
    return db.execute(
        "SELECT setval(%s::regclass, nextval(%s::regclass) + %s - 1) - %s",
        (stage.sequence, stage.sequence, rows, rows),
    ).fetchone()[0]


def _set_search_path(stage: DistributedStage, first: bool) -> sql.Composed:
    path = stage.search_path
    if first:
        path = _quote(stage.schema) + (f", {path}" if path.strip() else "")
    return sql.SQL("SELECT set_config('search_path', {}, true)").format(sql.Literal(path))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _latest(plan: Plan, stage: DistributedStage) -> sql.Composed:
    """sql.latest() with the distribution column itself last in DISTINCT ON (Citus pushes
    DISTINCT ON down only then) and each row's ord, for the identity."""
    return statements.latest(plan, also_by=_distribution_column(stage), with_ord=True)


def _groups(plan: Plan, stage: DistributedStage) -> sql.Composable:
    """The key's sort expressions, then the distribution column itself (for Citus)."""
    return sql.SQL(", ").join(
        [o for _, o, _ in statements.key_parts(plan)] + [_distribution_column(stage)]
    )


def _distribution_column(stage: DistributedStage) -> sql.Composable:
    return sql.SQL("s.{}").format(stage.distribution)


def _insert_head(plan: Plan, stage: DistributedStage, first: int | None) -> sql.Composed:
    names, values = statements.insert_lists(plan, "d")
    overriding = sql.SQL("")
    if stage.identity is not None:
        names = sql.SQL("{}, {}").format(names, stage.identity.identifier)
        values = sql.SQL("{}, CAST({} AS bigint) + d.csvload_ord").format(
            values, sql.Literal(first or 0)
        )
        overriding = sql.SQL(" OVERRIDING SYSTEM VALUE")
    return sql.SQL(
        "INSERT INTO {table} AS p ({names}){overriding} SELECT {values} FROM ({latest}) d"
    ).format(
        table=plan.target.identifier,
        names=names,
        overriding=overriding,
        values=values,
        latest=_latest(plan, stage),
    )


def _upsert(plan: Plan, stage: DistributedStage, first: int | None, now) -> sql.Composed:
    """upsert.upsert() without the MATERIALIZED CTE (Citus would pull it to the
    coordinator): one row (distinct keys, inserted, updated)."""
    return upsert.counted(
        plan,
        now,
        _insert_head(plan, stage, first),
        distinct=sql.SQL(
            "SELECT count(*) FROM (SELECT 1 FROM {stage} s GROUP BY {groups}) k"
        ).format(stage=statements.STAGE, groups=_groups(plan, stage)),
    )
