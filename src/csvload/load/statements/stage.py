"""The stage: its DDL, the COPY into it, and the statements about the table the import
runs around it (settings, lock, emptiness).  Stage columns are named c1..cN by position,
so no header text ever reaches SQL."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

from csvload.table.binding import Field, Plan

STAGE = sql.Identifier("csvload_stage")


BAD = sql.Identifier("csvload_bad")


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


def create_stage(
    ncols: int,
    constants: tuple[str, ...] = (),
    distributed: tuple[int, sql.Composable] | None = None,
) -> sql.Composed:
    """A temp table holding the file's rows as text, in file order (ord).

    ord's sequence hands out numbers from a cache of 100,000 held by this session (the
    only one that can see a temp table), so they still rise in COPY order; fetching them
    one at a time cost 0.06 s of a 0.38 s COPY at 500k rows.  `constants` (--scope's
    values) become columns after the file's, filled by their defaults: COPY never names
    them, so they cost the reader nothing.

    `distributed` (the index of a column and its type): the stage of distributed_stage,
    an UNLOGGED table (in the stage's schema, first on the search_path) whose column is
    typed like the target's distribution column.
    """
    typed = dict([distributed]) if distributed else {}
    parts = [
        sql.SQL("{} {}").format(stage_column(i), typed.get(i, sql.SQL("text")))
        for i in range(ncols)
    ]
    parts += [
        sql.SQL("{} text NOT NULL DEFAULT {}").format(stage_column(ncols + j), sql.Literal(v))
        for j, v in enumerate(constants)
    ]
    kind, drop = ("UNLOGGED", "") if distributed else ("TEMP", " ON COMMIT DROP")
    return sql.SQL(
        "CREATE {kind} TABLE {stage} ({columns},"
        " ord bigint GENERATED ALWAYS AS IDENTITY (CACHE 100000)){drop}"
    ).format(
        kind=sql.SQL(kind), stage=STAGE, columns=sql.SQL(", ").join(parts), drop=sql.SQL(drop)
    )


def copy_stage(ncols: int, delimiter: str) -> sql.Composed:
    # FORCE_NOT_NULL: an empty field is an empty string, never NULL.  The reader sends
    # UTF-8 whatever the connection's client_encoding.
    columns = sql.SQL(", ").join(stage_column(i) for i in range(ncols))
    return sql.SQL(
        "COPY {stage} ({columns}) FROM STDIN"
        " (FORMAT csv, DELIMITER {delimiter}, FORCE_NOT_NULL ({columns}), ENCODING 'UTF8')"
    ).format(stage=STAGE, columns=columns, delimiter=sql.Literal(delimiter))


def lock(plan: Plan, mode: str = "SHARE ROW EXCLUSIVE", nowait: bool = False) -> sql.Composed:
    return sql.SQL("LOCK TABLE {} IN {} MODE{}").format(
        plan.target.identifier, sql.SQL(mode), sql.SQL(" NOWAIT" if nowait else "")
    )


def find_value(plan: Plan, field: Field) -> sql.Composed:
    """The ord of the last staged row whose field holds %s (as the file spells it): where a
    unique violation's value came from (violations.unique_violation).  The staged text is
    compared, not the cast value: another row's bad value must not make this lookup fail
    too."""
    return sql.SQL("SELECT ord FROM {stage} WHERE {text} = %s ORDER BY ord DESC LIMIT 1").format(
        stage=STAGE, text=stage_column(field.index)
    )


def is_empty(plan: Plan) -> sql.Composed:
    """LIMIT 1 changes nothing for PostgreSQL, but Citus plans the EXISTS subquery of a
    distributed table on its own and, without it, pulls every row to the coordinator
    first (0.9 s at 490k rows on the local cluster; 0.02 s with it)."""
    return sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {} LIMIT 1)").format(plan.target.identifier)


ANALYZE_STAGE = sql.SQL("ANALYZE {}").format(STAGE)
