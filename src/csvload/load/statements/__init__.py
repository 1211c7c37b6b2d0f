"""SQL text for the import pipeline.  Builders only: nothing here executes.

Staging columns are named c1..cN by position, so no header text ever reaches SQL.  Every
builder takes the Plan (the file bound to its target table) and nothing else; the only
catalog text spliced in is what describe() read from the target's own definition (type
names, column defaults, CHECK expressions), which is as trusted as the table itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

from csvload.table.target import CITEXT, EXACT, LOWER, NOW, Column, Field, Plan

STAGE = sql.Identifier("csvload_stage")
BAD = sql.Identifier("csvload_bad")


def stage_column(index: int) -> sql.Identifier:
    return sql.Identifier(f"c{index + 1}")


def _key_alias(i: int) -> sql.Identifier:
    return sql.Identifier(f"csvload_key{i + 1}")


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


# -- values --------------------------------------------------------------------------------


def type_of(column: Column) -> sql.SQL:
    return sql.SQL(column.type)  # format_type() text from the catalog


def number_text(plan: Plan, field: Field) -> sql.Composable:
    """The staged text of a field, with --decimal-comma's 1.234,56 made 1234.56."""
    return _decimal_comma(plan, field.column, stage_column(field.index))


# --decimal-comma's numbers: 1234,56  1.234,56  1.234.567,8  -3  12  1.234 (dots only
# between groups of exactly three digits), spaces around.  fit.DECIMAL_COMMA is the same.
DECIMAL_COMMA = r"^\s*[+-]?([0-9]{1,3}(\.[0-9]{3})+|[0-9]+)(,[0-9]+)?\s*$"


def _decimal_comma(plan: Plan, column: Column, text: sql.Composable) -> sql.Composable:
    """With --decimal-comma, a number in that form with its dots dropped and its comma a
    point.  Any other text (2.50, 1.5e3, 1,2,3) is never guessed at: it becomes text no
    numeric type takes, so its cast fails and fit.find() makes the row a reject; deleting
    every dot had turned 2.50 into 250."""
    if plan.decimal_comma and column.category == "N":
        return sql.SQL(
            "CASE WHEN {t} ~ {form} THEN replace(replace({t}, '.', ''), ',', '.')"
            " WHEN {t} = '' THEN '' ELSE 'csvload: not a decimal-comma number' END"
        ).format(t=text, form=sql.Literal(DECIMAL_COMMA))
    return text


def value(plan: Plan, field: Field) -> sql.Composable:
    """A field's staged text as the column's type.  Text columns take the text as it is
    (an empty field stays ''; varchar(n) and char(n) check their length on assignment);
    for any other type an empty field is NULL, "no value".  A numeric(p,s) value with more
    decimals than s fails its cast on purpose instead of being rounded: csvload never
    stores a value that is not the file's.
    """
    column = field.column
    if column.is_text:
        return _text_value(column, stage_column(field.index))
    text = sql.SQL("NULLIF({}, '')").format(number_text(plan, field))
    if column.type_name == "numeric" and column.scale is not None and column.category == "N":
        return sql.SQL(
            "CASE WHEN scale({text}::numeric) > {scale}"
            " THEN ('csvload: more decimals than ' || {text})::numeric"
            " ELSE {text}::{type} END"
        ).format(text=text, scale=sql.Literal(column.scale), type=type_of(column))
    return sql.SQL("{}::{}").format(text, type_of(column))


def _text_value(column: Column, text: sql.Composable) -> sql.Composable:
    """A text field as PostgreSQL's cast to varchar(n)/char(n) gives it: the spaces past
    n dropped, as COPY and INSERT drop them.  Stored as written, "abc " in varchar(3) was
    kept as "abc" but compared as "abc ", so every re-import of the same file updated the
    row.  A value longer than n in anything but spaces is left whole: its assignment fails
    (22001) and fit.find() makes it a reject, never a silent truncation."""
    if column.length is None:
        return text
    n = sql.Literal(column.length)
    return sql.SQL(
        "CASE WHEN char_length({t}) > {n} AND char_length(rtrim({t}, ' ')) <= {n}"
        " THEN left({t}, {n}) ELSE {t} END"
    ).format(t=text, n=n)


def citext_equal(column: Column, text: sql.Composable) -> sql.Composed:
    """p.column = text, with citext's case-insensitive =; the cast keeps its index usable.

    format_type() qualifies citext when its schema is not on the search_path, and the =
    found then is text's (citext casts to text implicitly): 'ab-1' would not find 'AB-1'.
    So the operator is qualified the same way."""
    schema, dot, _ = column.type.rpartition(".")
    op = sql.SQL("OPERATOR({}.=)").format(sql.SQL(schema)) if dot else sql.SQL("=")
    return sql.SQL("p.{} {} {}::{}").format(column.identifier, op, text, type_of(column))


def _text_key(column: Column, text: sql.Composable) -> sql.Composable:
    """A text key's value, compared as the column compares: char(n) as bpchar (trailing
    spaces insignificant), in the column's collation when that is nondeterministic."""
    if column.type_name == "bpchar":
        text = sql.SQL("({})::bpchar").format(text)
    if column.collation is not None:
        text = sql.SQL("{} COLLATE {}").format(text, sql.SQL(column.collation))
    return text


def key_parts(plan: Plan) -> list[tuple[sql.Composable, sql.Composable, sql.Composable]]:
    """Per key column: (the value carried as csvload_keyN, the dedupe sort expression,
    the join condition against the table row p and the deduplicated row d)."""
    parts = []
    for i, (field, match) in enumerate(zip(plan.key_fields, plan.target.matches, strict=True)):
        column, text, alias = field.column, stage_column(field.index), _key_alias(i)
        if match in (LOWER, CITEXT):
            carried = sql.SQL("lower({})").format(text)
            # Sorting on the "C" collation is byte order, much cheaper than the database's
            # linguistic collation, and equality is all DISTINCT ON needs.
            order = sql.SQL('lower({}) COLLATE "C"').format(text)
            if match == LOWER:
                join = sql.SQL("lower(p.{}) = d.{}").format(column.identifier, alias)
            else:
                join = citext_equal(column, sql.SQL("d.{}").format(alias))
        elif column.is_text:
            carried = _text_key(column, _text_value(column, text))
            if column.collation is None:
                # Sorting on the "C" collation is byte order, much cheaper than the
                # database's linguistic collation; a deterministic collation's = is byte
                # equality too, so DISTINCT ON groups the same keys.
                order = sql.SQL('{} COLLATE "C"').format(carried)
            else:
                # A nondeterministic collation (ICU, case-insensitive) says which keys are
                # one: A-1 and a-1 are, and the last of them wins as under lower(sku).
                order = carried
            join = sql.SQL("p.{} = d.{}").format(column.identifier, alias)
        else:
            carried = order = value(plan, field)
            join = sql.SQL("p.{} = d.{}").format(column.identifier, alias)
        parts.append((carried, order, join))
    return parts


def latest(
    plan: Plan, also_by: sql.Composable | None = None, with_ord: bool = False
) -> sql.Composed:
    """The deduplicated stage, exactly as the import merges it: one row per key (matched
    as the key's unique index matches), the last occurrence in the file winning; each
    field as its column's type.  `also_by` ends the DISTINCT ON list (for Citus, see
    distributed_stage), and `with_ord` adds each row's s.ord as csvload_ord."""
    parts = key_parts(plan)
    select = sql.SQL(", ").join(
        [sql.SQL("{} AS {}").format(carried, _key_alias(i)) for i, (carried, _, _) in
         enumerate(parts)]
        + [
            sql.SQL("{} AS {}").format(value(plan, f), f.column.identifier)
            for f in plan.fields
        ]
        + ([sql.SQL("s.ord AS csvload_ord")] if with_ord else [])
    )
    order = sql.SQL(", ").join([o for _, o, _ in parts] + ([also_by] if also_by else []))
    # s.ord, not ord: a bare name in ORDER BY means an output column first, and a table
    # with a column named ord (an output column here) made this "ambiguous".
    return sql.SQL(
        "SELECT DISTINCT ON ({order}) {select} FROM {stage} s ORDER BY {order}, s.ord DESC"
    ).format(order=order, select=select, stage=STAGE)


def _join(plan: Plan) -> sql.Composable:
    return sql.SQL(" AND ").join(j for _, _, j in key_parts(plan))


def compared_fields(plan: Plan) -> list[Field]:
    """The fields a re-import compares and writes: all but exact key columns (equal by
    definition); a case-insensitive key's spelling is written when it changed."""
    exact = {k for k, m in zip(plan.target.key, plan.target.matches, strict=True) if m == EXACT}
    return [f for f in plan.fields if f.column.name not in exact]


def keeps_stored(column: Column) -> bool:
    # An empty field in a NOT NULL non-text column keeps what an existing row holds.
    return column.not_null and not column.is_text


def _new_value(plan: Plan, field: Field, source: str) -> sql.Composable:
    column = field.column
    mine = sql.SQL("{}.{}").format(sql.Identifier(source), column.identifier)
    if plan.active is not None and column.name == plan.active.name:
        # A full feed lists the row, so it is active unless the file says false: an empty
        # active field is "no value", not "false", and never keeps a row deactivated.
        return sql.SQL("coalesce({}, true)").format(mine)
    if keeps_stored(column):
        return sql.SQL("coalesce({}, p.{})").format(mine, column.identifier)
    return mine


def _fallback(plan: Plan, column: Column) -> sql.Composable | None:
    """What a new row gets where the file has no value: --default, else (for a NOT NULL
    column) the column's own default."""
    given = plan.default_for(column)
    if given == NOW:
        return sql.SQL("CAST(now() AS {})").format(type_of(column))
    if given is not None:
        return sql.SQL("CAST({} AS {})").format(sql.Literal(given), type_of(column))
    if column.not_null and column.default is not None:
        return sql.SQL(column.default)
    return None


def _touch_value(plan: Plan) -> sql.Composable:
    assert plan.touch is not None
    return sql.SQL("CAST(now() AS {})").format(type_of(plan.touch))


def insert_lists(plan: Plan, source: str) -> tuple[sql.Composable, sql.Composable]:
    """(column names, values) of the rows an import inserts, values read from `source`."""
    names: list[sql.Composable] = []
    values: list[sql.Composable] = []
    for f in plan.fields:
        names.append(f.column.identifier)
        mine = sql.SQL("{}.{}").format(sql.Identifier(source), f.column.identifier)
        if f.column.is_text and plan.default_for(f.column) is not None:
            # --default fills a new row's empty field whatever the type: '' is a text
            # column's "no value" as NULL is another's (it had been stored as '').  The
            # column's own default does not replace '', which is a value of its own.
            mine = sql.SQL("NULLIF({}, '')").format(mine)
            fallback = _fallback(plan, f.column)
        else:
            fallback = None if f.column.is_text else _fallback(plan, f.column)
        values.append(mine if fallback is None else sql.SQL("coalesce({}, {})").format(
            mine, fallback))
    in_file = {f.column.name for f in plan.fields}
    for column, _ in plan.defaults:
        if column.name not in in_file:
            names.append(column.identifier)
            fallback = _fallback(plan, column)
            assert fallback is not None
            values.append(fallback)
    given = {c.name for c, _ in plan.defaults}
    active = plan.active
    if active is not None and active.name not in in_file | given:
        # A full feed without an active column: every row it lists is active.
        names.append(active.identifier)
        values.append(sql.SQL("true"))
    if (
        plan.touch is not None
        and plan.touch.name not in in_file | given
        # A default of now() already gives new rows the transaction's timestamp.
        and (plan.touch.default or "").lower() not in ("now()", "current_timestamp")
    ):
        names.append(plan.touch.identifier)
        values.append(_touch_value(plan))
    return sql.SQL(", ").join(names), sql.SQL(", ").join(values)


def _reactivating(plan: Plan) -> bool:
    """A full feed (--missing deactivate) without an active column sets active = true on
    every row it lists: a row it deactivated before comes back."""
    return plan.active is not None and plan.field(plan.active.name) is None


def _new_active(plan: Plan, source: str) -> sql.Composable:
    assert plan.active is not None
    field = plan.field(plan.active.name)
    return sql.SQL("true") if field is None else _new_value(plan, field, source)


def update_assignments(
    plan: Plan, source: str, touch: sql.Composable | None = None
) -> sql.Composable:
    """`touch`: what the touch column is set to, instead of now() (Citus refuses now()
    in ON CONFLICT DO UPDATE SET; see upsert.py)."""
    parts = [
        sql.SQL("{} = {}").format(f.column.identifier, _new_value(plan, f, source))
        for f in compared_fields(plan)
    ]
    if _reactivating(plan):
        parts.append(sql.SQL("{} = true").format(plan.active.identifier))
    if plan.touch is not None:
        touched = _touch_value(plan) if touch is None else touch
        parts.append(sql.SQL("{} = {}").format(plan.touch.identifier, touched))
    return sql.SQL(", ").join(parts)


def _comparable(column: Column, expression: sql.Composable) -> sql.Composable:
    # A type without a default btree operator class has no equality a row comparison can
    # use: json (and json[]): "operator does not exist: json = json"; point, xml, line...:
    # "could not identify an equality operator for type point"; box's = compares areas.
    # Their text is what the file said (json keeps it as written), so compare that.
    if not column.ordered:
        return sql.SQL("({})::text").format(expression)
    # char(n): the stored value is padded, the file's is not; as bpchar both compare
    # without trailing spaces (no length: a cast to char(n) would truncate silently).
    if column.type_name == "bpchar" and column.category == "S":
        return sql.SQL("({})::bpchar").format(expression)
    # A citext column compares with the file's text as text (citext = text resolves to
    # text's =), so a new spelling is a change; ON CONFLICT's EXCLUDED.col is citext
    # itself, whose = would ignore case, so say text for both.
    if column.type_name == "citext":
        return sql.SQL("({})::text").format(expression)
    return expression


def row_differs(plan: Plan, source: str) -> sql.Composable:
    compared = compared_fields(plan)
    mine = [_comparable(f.column, sql.SQL("p.{}").format(f.column.identifier)) for f in compared]
    theirs = [_comparable(f.column, _new_value(plan, f, source)) for f in compared]
    if _reactivating(plan):
        mine.append(sql.SQL("p.{}").format(plan.active.identifier))
        theirs.append(sql.SQL("true"))
    return sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(
        sql.SQL(", ").join(mine), sql.SQL(", ").join(theirs)
    )


def updates_rows(plan: Plan) -> bool:
    return bool(compared_fields(plan)) or _reactivating(plan)


def insert_latest(plan: Plan) -> sql.Composed:
    """Fill an empty table straight from the deduplicated stage."""
    names, values = insert_lists(plan, "d")
    return sql.SQL("INSERT INTO {table} ({names}) SELECT {values} FROM ({latest}) d").format(
        table=plan.target.identifier, names=names, values=values, latest=latest(plan)
    )


# Count what MERGE did that the table statistics do not tell apart: the rows it matched
# and left alone (MERGE has no RETURNING before PostgreSQL 17), those it made active
# again, and those a full feed deactivated or deleted.  Owned by the stage's ord column,
# so they go when the stage does (and with a savepoint rolled back).
UNCHANGED = sql.Identifier("csvload_unchanged")
REACTIVATED = sql.Identifier("csvload_reactivated")
GONE = sql.Identifier("csvload_gone")


def create_counter(seq: sql.Identifier) -> sql.Composed:
    return sql.SQL("CREATE TEMP SEQUENCE {seq} OWNED BY {stage}.ord").format(seq=seq, stage=STAGE)


def _take(seq: sql.Identifier) -> sql.Composed:
    return sql.SQL("nextval({}) > 0").format(sql.Literal(seq.as_string(None)))


def written(plan: Plan) -> sql.Composed:
    """Whether the server counts table writes (track_counts, on unless an administrator
    turned it off), and what this transaction has inserted into and updated in the table
    so far."""
    return sql.SQL(
        "SELECT current_setting('track_counts')::boolean,"
        " pg_stat_get_xact_tuples_inserted({oid}::oid),"
        " pg_stat_get_xact_tuples_updated({oid}::oid)"
    ).format(oid=sql.Literal(plan.target.oid))


def merge_counts(plan: Plan, counters: list[sql.Identifier]) -> sql.Composed:
    """After merge_statement(): what this transaction has inserted into and updated in the
    table so far, then the number each of `counters` has given out (0 if none)."""
    return sql.SQL(
        "SELECT pg_stat_get_xact_tuples_inserted({oid}::oid),"
        " pg_stat_get_xact_tuples_updated({oid}::oid), {counted}"
    ).format(
        oid=sql.Literal(plan.target.oid),
        counted=sql.SQL(", ").join(
            sql.SQL("(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {})").format(c)
            for c in counters
        ),
    )


def merge_statement(
    plan: Plan, mode: str = "keep", gone: bool = False, changes: bool = False
) -> sql.Composed:
    """Merge the deduplicated stage into a filled table with MERGE (PostgreSQL 15 and
    later): one join of the stage's keys with the table drives both the UPDATE of the
    changed rows and the INSERT of the new keys, with no per-row conflict check.

    MERGE cannot return counts before PostgreSQL 17.  A matched row that is the same
    fails the first WHEN and meets the second, whose condition takes a number from
    UNCHANGED, exactly once per row (no other writer can make MERGE recheck a row: the
    caller holds a lock that keeps them out); the caller reads inserted and updated from
    the transaction's table statistics (written() before, merge_counts() after).
    On the 500k re-import this ran in 1.55-1.7 s, against 1.8-1.9 s for the WITH
    statement of with_statement() (both on the fillfactor-70 table).

    A full feed on PostgreSQL 17 and later (`gone`): WHEN NOT MATCHED BY SOURCE
    deactivates or deletes (mode) the rows in scope the file no longer lists, and not
    those a rejected row names (csvload_kept), each counted by GONE; the join becomes a
    full one.  With `changes` (PostgreSQL 18: RETURNING old and new) the statement is
    COPY'd out, one row per key it changed, in the changes file's columns.
    """
    names, values = insert_lists(plan, "d")
    differs = row_differs(plan, "d")
    if plan.active is not None:
        # Counts the rows coming back to active: whenever this CASE takes a number the row
        # differs (its active changes), so it is updated, exactly once.
        differs = sql.SQL(
            "{differs} AND CASE WHEN NOT p.{active} AND {new} THEN {take}"
            " ELSE true END"
        ).format(
            differs=differs,
            active=plan.active.identifier,
            new=_new_active(plan, "d"),
            take=_take(REACTIVATED),
        )
    update = (
        sql.SQL(" WHEN MATCHED AND {differs} THEN UPDATE SET {assignments}").format(
            differs=differs, assignments=update_assignments(plan, "d")
        )
        if updates_rows(plan)
        else sql.SQL("")
    )
    parts = [
        sql.SQL(
            "MERGE INTO {table} p USING ({latest}) d ON {join}{update}"
            " WHEN MATCHED AND {take} THEN DO NOTHING"
            " WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        ).format(
            take=_take(UNCHANGED),
            latest=latest(plan),
            table=plan.target.identifier,
            join=_join(plan),
            update=update,
            names=names,
            values=values,
        )
    ]
    if gone:
        parts.append(_by_source(plan, mode))
    if not changes:
        return sql.Composed(parts)
    parts.append(_returning_changes(plan, mode))
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.Composed(parts))


def _by_source(plan: Plan, mode: str) -> sql.Composed:
    """merge_statement()'s clause for the rows the file no longer lists."""
    still = sql.SQL(" AND p.{}").format(plan.active.identifier) if mode == "deactivate" else (
        sql.SQL(""))
    condition = sql.SQL(
        "CASE WHEN {scope}{still} AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE {in_kept})"
        " THEN {take} ELSE false END"
    ).format(
        scope=in_scope(plan), still=still, kept=KEPT, in_kept=stage_match(plan, "k"),
        take=_take(GONE),
    )
    if mode == "delete":
        return sql.SQL(" WHEN NOT MATCHED BY SOURCE AND {} THEN DELETE").format(condition)
    assert mode == "deactivate" and plan.active is not None
    touch = (
        sql.SQL(", {} = {}").format(plan.touch.identifier, _touch_value(plan))
        if plan.touch is not None
        else sql.SQL("")
    )
    return sql.SQL(
        " WHEN NOT MATCHED BY SOURCE AND {condition} THEN UPDATE SET {active} = false{touch}"
    ).format(condition=condition, active=plan.active.identifier, touch=touch)


def _returning_changes(plan: Plan, mode: str) -> sql.Composed:
    """merge_statement()'s RETURNING with changes: the key, the change and, for an update,
    the columns whose old and new values differ.  A row the file does not list (d's key
    is NULL) was deactivated or deleted."""
    listed = sql.SQL("d.{} IS NOT NULL").format(_key_alias(0))
    keys = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {listed} THEN d.{c}::text ELSE old.{c}::text END").format(
            listed=listed, c=f.column.identifier
        )
        for f in plan.key_fields
    )
    back = (
        sql.SQL(" WHEN NOT old.{a} AND new.{a} THEN 'reactivated'").format(
            a=plan.active.identifier
        )
        if plan.active is not None
        else sql.SQL("")
    )
    names = [
        sql.SQL("CASE WHEN {old} IS DISTINCT FROM {new} THEN {name} END").format(
            old=_comparable(f.column, sql.SQL("old.{}").format(f.column.identifier)),
            new=_comparable(f.column, sql.SQL("new.{}").format(f.column.identifier)),
            name=sql.Literal(f.column.name),
        )
        for f in compared_fields(plan)
    ]
    columns = (
        sql.SQL(
            "CASE WHEN merge_action() = 'UPDATE' AND {listed} THEN"
            " array_to_string(ARRAY[{names}]::text[], ' ') ELSE '' END"
        ).format(listed=listed, names=sql.SQL(", ").join(names))
        if names
        else sql.SQL("''")
    )
    return sql.SQL(
        " RETURNING {keys}, CASE WHEN NOT {listed} THEN {gone}"
        " WHEN merge_action() = 'INSERT' THEN 'inserted'{back} ELSE 'updated' END, {columns}"
    ).format(
        keys=keys,
        listed=listed,
        gone=sql.Literal("deactivated" if mode == "deactivate" else "deleted"),
        back=back,
        columns=columns,
    )


def stage_match(plan: Plan, row: str) -> sql.Composable:
    """Whether the table row p has the key of the stage-shaped row `row` (the stage, or
    csvload_kept), matched as the key's unique index matches."""
    conditions = []
    alias = sql.Identifier(row)
    for f, match in zip(plan.key_fields, plan.target.matches, strict=True):
        text = sql.SQL("{}.{}").format(alias, stage_column(f.index))
        ident = f.column.identifier
        if match == LOWER:
            conditions.append(sql.SQL("lower(p.{}) = lower({})").format(ident, text))
        elif match == CITEXT:
            conditions.append(citext_equal(f.column, text))
        elif f.column.is_text:
            conditions.append(sql.SQL("p.{} = {}").format(
                ident, _text_key(f.column, _text_value(f.column, text))))
        else:
            text = _decimal_comma(plan, f.column, text)
            conditions.append(
                sql.SQL("p.{} = NULLIF({}, '')::{}").format(ident, text, type_of(f.column))
            )
    return sql.SQL(" AND ").join(conditions)


def in_scope(plan: Plan) -> sql.Composable:
    """The rows of the table p that --scope gives to this feed (all without --scope)."""
    if not plan.scope:
        return sql.SQL("true")
    return sql.SQL(" AND ").join(
        sql.SQL("p.{} = CAST({} AS {})").format(c.identifier, sql.Literal(v), type_of(c))
        for c, v in plan.scope
    )


def count_in_scope(plan: Plan) -> sql.Composed:
    return sql.SQL("SELECT count(*) FROM {table} p WHERE {scope}").format(
        table=plan.target.identifier, scope=in_scope(plan)
    )


KEPT = sql.Identifier("csvload_kept")
# The keys of rejected rows: present in the file, so never deactivated or deleted.
CREATE_KEPT = sql.SQL(
    "CREATE TEMP TABLE {kept} ON COMMIT DROP AS SELECT * FROM {stage} WITH NO DATA"
).format(kept=KEPT, stage=STAGE)


def copy_kept(columns: list[int]) -> sql.Composed:
    return sql.SQL("COPY {kept} ({columns}) FROM STDIN").format(
        kept=KEPT, columns=sql.SQL(", ").join(stage_column(i) for i in columns)
    )


def _missing(plan: Plan) -> sql.Composable:
    return sql.SQL(
        "{scope} AND NOT EXISTS (SELECT 1 FROM {stage} s WHERE {in_stage})"
        " AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE {in_kept})"
    ).format(
        scope=in_scope(plan),
        stage=STAGE,
        in_stage=stage_match(plan, "s"),
        kept=KEPT,
        in_kept=stage_match(plan, "k"),
    )


def _table_key(plan: Plan) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL("p.{}").format(f.column.identifier) for f in plan.key_fields)


def count_missing(plan: Plan) -> sql.Composed:
    """For verify: the rows in scope the file does not list that an import with --missing
    would still have to change (active ones under deactivate, any under delete), and up
    to %(examples)s of their keys."""
    still = sql.SQL("p.{} AND ").format(plan.active.identifier) if plan.active else sql.SQL("")
    return sql.SQL(
        "WITH m AS MATERIALIZED (SELECT {key} AS key FROM {table} p WHERE {still}{missing})"
        " SELECT (SELECT count(*) FROM m), ARRAY(SELECT key FROM m ORDER BY key"
        " LIMIT %(examples)s)"
    ).format(
        key=key_text(plan, "p"), table=plan.target.identifier, still=still,
        missing=_missing(plan),
    )


def inserted_changes(plan: Plan) -> sql.Composed:
    """Filling an empty table: every distinct key of the file is inserted, so those are
    the changes file's rows (with_statement() and merge_statement() list a filled table's changes
    themselves), COPY'd out in the same columns."""
    return sql.SQL(
        "COPY (SELECT {keys}, 'inserted', '' FROM ({latest}) d) TO STDOUT (FORMAT csv)"
    ).format(
        keys=sql.SQL(", ").join(
            sql.SQL("d.{}::text").format(f.column.identifier) for f in plan.key_fields
        ),
        latest=latest(plan),
    )


def lock(plan: Plan, mode: str = "SHARE ROW EXCLUSIVE", nowait: bool = False) -> sql.Composed:
    return sql.SQL("LOCK TABLE {} IN {} MODE{}").format(
        plan.target.identifier, sql.SQL(mode), sql.SQL(" NOWAIT" if nowait else "")
    )


def find_value(plan: Plan, field: Field) -> sql.Composed:
    """The ord of the last staged row whose field holds %s (as the file spells it): where a
    unique violation's value came from.  loader._unique_violation called this builder but
    it was never written, so a duplicate of another unique index (a barcode) ended in an
    AttributeError traceback instead of its one-line error.  The staged text is compared,
    not the cast value: another row's bad value must not make this lookup fail too."""
    return sql.SQL("SELECT ord FROM {stage} WHERE {text} = %s ORDER BY ord DESC LIMIT 1").format(
        stage=STAGE, text=stage_column(field.index)
    )


def is_empty(plan: Plan) -> sql.Composed:
    """LIMIT 1 changes nothing for PostgreSQL, but Citus plans the EXISTS subquery of a
    distributed table on its own and, without it, pulls every row to the coordinator
    first (0.9 s at 490k rows on the local cluster; 0.02 s with it)."""
    return sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {} LIMIT 1)").format(plan.target.identifier)


def key_text(plan: Plan, source: str) -> sql.Composable:
    """The key as the file spells it: one column, or several joined with commas."""
    parts = [
        sql.SQL("{}.{}").format(sql.Identifier(source), f.column.identifier)
        for f in plan.key_fields
    ]
    if len(parts) == 1:
        return sql.SQL("{}::text").format(parts[0])
    return sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(parts))


def verify_counts(plan: Plan) -> sql.Composed:
    """Compare the deduplicated stage with the table in one pass over the stage.

    Returns one row: keys, missing, different, then up to %(examples)s examples of each
    (missing: the file's key; different: the file's key and the columns that differ).  The
    columns compared are those the file has, key columns excepted; an empty field in a NOT
    NULL non-text column means "keep what is stored", so it never differs.
    """
    compared = [f for f in plan.fields if f.column.name not in plan.target.key]
    differs = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {cond} THEN {name} END").format(
            cond=(
                sql.SQL("d.{f} IS NOT NULL AND {d} IS DISTINCT FROM {p}")
                if keeps_stored(f.column)
                else sql.SQL("{d} IS DISTINCT FROM {p}")
            ).format(
                f=f.column.identifier,
                d=_comparable(f.column, sql.SQL("d.{}").format(f.column.identifier)),
                p=_comparable(f.column, sql.SQL("p.{}").format(f.column.identifier)),
            ),
            name=sql.Literal(f.column.name),
        )
        for f in compared
    ) if compared else sql.SQL("NULL")
    order = sql.SQL(", ").join(
        sql.SQL('{} COLLATE "C"').format(_key_alias(i)) if f.column.is_text or m != EXACT
        else _key_alias(i)
        for i, (f, m) in enumerate(zip(plan.key_fields, plan.target.matches, strict=True))
    )
    # MATERIALIZED: the four readers below share one dedupe sort and one join.
    return sql.SQL(
        "WITH checked AS MATERIALIZED ("
        " SELECT {keys}, {key} AS key, {absent} AS missing,"
        " CASE WHEN {absent} THEN '{{}}'::text[]"
        " ELSE array_remove(ARRAY[{differs}]::text[], NULL) END AS differs"
        " FROM ({latest}) d LEFT JOIN {table} p ON {join})"
        " SELECT (SELECT count(*) FROM checked),"
        " (SELECT count(*) FROM checked WHERE missing),"
        " (SELECT count(*) FROM checked WHERE differs <> '{{}}'),"
        " ARRAY(SELECT key FROM checked WHERE missing"
        "  ORDER BY {order} LIMIT %(examples)s),"
        " ARRAY(SELECT json_build_array(key, differs) FROM checked WHERE differs <> '{{}}'"
        "  ORDER BY {order} LIMIT %(examples)s)"
    ).format(
        keys=sql.SQL(", ").join(sql.SQL("d.{}").format(_key_alias(i))
                                for i in range(len(plan.target.key))),
        key=key_text(plan, "d"),
        differs=differs,
        absent=absent(plan),
        latest=latest(plan),
        table=plan.target.identifier,
        join=_join(plan),
        order=order,
    )


def absent(plan: Plan) -> sql.Composed:
    """After a LEFT JOIN of the table p on the key: no row of p matched.  A key column
    rather than p.ctid, which Citus cannot plan in a join of a distributed table with the
    coordinator's stage ("no relation entry for relid"); a matched row's key is never
    NULL, as it equals the file's."""
    return sql.SQL("p.{} IS NULL").format(plan.key_fields[0].column.identifier)


ANALYZE_STAGE = sql.SQL("ANALYZE {}").format(STAGE)


def with_statement(
    plan: Plan, mode: str = "keep", changes: bool = False, gone: bool = False
) -> sql.Composed:
    """Merge the deduplicated stage into a filled table in ONE statement, and return
    (distinct keys, updated, inserted, reactivated, deactivated or deleted, keys it
    meant to insert, rows it meant to update).  For servers
    without MERGE (before 15) or whose table statistics are off (see merge_statement()), and
    for full feeds: with `gone`, what the file no longer lists is deactivated or deleted
    (mode), and with `changes` the statement is COPY'd out, its rows the changes file's.

    `pairs` matches each key with its row (one hash join; a FULL JOIN when the rows the
    file lacks matter) and says whether it differs; the UPDATE reaches the changed rows
    by ctid and the INSERT takes the unmatched keys, so there is no per-row conflict
    check.  All parts run on one snapshot; that is safe because the caller holds a lock
    that keeps every other writer out of the table, and no row is touched twice (keys are
    unique).  Against a temp table of pairs followed by a separate UPDATE and INSERT this
    saved 0.5 s of 3.9 s on the 500k re-import; for a full feed, separate statements (a
    join for the changes, MERGE, an anti-join for the missing rows) took 1.7 + 1.9 + 1.5 s
    against 3.9-4.4 s.  Rows in scope that a rejected row names (csvload_kept) are never
    missing.
    """
    compared = updates_rows(plan)
    file_row = sql.SQL("d.{} IS NOT NULL").format(_key_alias(0))
    same = (
        sql.SQL("p.ctid IS NOT NULL AND NOT ({})").format(row_differs(plan, "d"))
        if compared
        else sql.SQL("true")
    )
    back = (
        sql.SQL("{} AND p.ctid IS NOT NULL AND NOT p.{} AND {}").format(
            file_row, plan.active.identifier, _new_active(plan, "d")
        )
        if plan.active is not None
        else sql.SQL("false")
    )
    names_list = (
        sql.SQL(", ").join(
            sql.SQL("CASE WHEN {mine} IS DISTINCT FROM {theirs} THEN {name} END").format(
                mine=_comparable(f.column, _new_value(plan, f, "d")),
                theirs=_comparable(f.column, sql.SQL("p.{}").format(f.column.identifier)),
                name=sql.Literal(f.column.name),
            )
            for f in compared_fields(plan)
        )
        if compared_fields(plan)
        else sql.SQL("NULL")
    )
    columns = (
        sql.SQL(
            ", CASE WHEN p.ctid IS NULL THEN '' ELSE"
            " array_to_string(ARRAY[{}]::text[], ' ') END AS csvload_columns"
        ).format(names_list)
        if changes
        else sql.SQL("")
    )
    names, values = insert_lists(plan, "d")
    keys = sql.SQL(", ").join(_key_alias(i) for i in range(len(plan.target.key)))
    parts = [
        sql.SQL(
            "WITH pairs AS MATERIALIZED ("
            " SELECT d.*, p.ctid AS csvload_row, {file_row} AS csvload_listed,"
            " {same} AS csvload_same, {back} AS csvload_back{columns}"
            " FROM ({latest}) d {kind} JOIN {table} p ON {join})"
        ).format(
            # Only the missing rows need the table's unmatched rows too.
            kind=sql.SQL("FULL" if gone else "LEFT"),
            file_row=file_row, same=same, back=back, columns=columns,
            latest=latest(plan), table=plan.target.identifier, join=_join(plan),
        )
    ]
    if compared:
        parts.append(
            sql.SQL(
                ", updated AS (UPDATE {table} p SET {assignments} FROM pairs m"
                " WHERE p.ctid = m.csvload_row AND m.csvload_listed AND NOT m.csvload_same"
                " RETURNING 1)"
            ).format(table=plan.target.identifier, assignments=update_assignments(plan, "m"))
        )
    else:
        parts.append(sql.SQL(", updated AS (SELECT 1 WHERE false)"))
    # New keys in key order, so the key's index fills left to right.
    parts.append(
        sql.SQL(
            ", inserted AS (INSERT INTO {table} ({names}) SELECT {values} FROM pairs d"
            " WHERE d.csvload_row IS NULL ORDER BY {keys} RETURNING 1)"
        ).format(table=plan.target.identifier, names=names, values=values, keys=keys)
    )
    missing_row = sql.SQL(
        "p.ctid = m.csvload_row AND NOT m.csvload_listed AND {scope}"
        " AND NOT EXISTS (SELECT 1 FROM {kept} k WHERE {in_kept})"
    ).format(scope=in_scope(plan), kept=KEPT, in_kept=stage_match(plan, "k"))
    returning = _table_key(plan)
    if gone and mode == "deactivate":
        assert plan.active is not None
        touch = (
            sql.SQL(", {} = {}").format(plan.touch.identifier, _touch_value(plan))
            if plan.touch is not None
            else sql.SQL("")
        )
        parts.append(
            sql.SQL(
                ", gone AS (UPDATE {table} p SET {active} = false{touch} FROM pairs m"
                " WHERE {missing} AND p.{active} RETURNING {returning})"
            ).format(
                table=plan.target.identifier, active=plan.active.identifier, touch=touch,
                missing=missing_row, returning=returning,
            )
        )
    elif gone and mode == "delete":
        parts.append(
            sql.SQL(
                ", gone AS (DELETE FROM {table} p USING pairs m WHERE {missing}"
                " RETURNING {returning})"
            ).format(table=plan.target.identifier, missing=missing_row, returning=returning)
        )
    else:
        parts.append(
            sql.SQL(", gone AS (SELECT {} FROM {} p WHERE false)").format(
                returning, plan.target.identifier
            )
        )
    # The last two: the rows it means to insert and to update.  RETURNING lists only those
    # really written, so a row a trigger suppressed is the difference.
    counts = sql.SQL(
        "(SELECT count(*) FROM pairs WHERE csvload_listed), (SELECT count(*) FROM updated),"
        " (SELECT count(*) FROM inserted), (SELECT count(*) FROM pairs WHERE csvload_back),"
        " (SELECT count(*) FROM gone),"
        " (SELECT count(*) FROM pairs WHERE csvload_listed AND csvload_row IS NULL),"
        " (SELECT count(*) FROM pairs WHERE {updating})"
    ).format(
        updating=sql.SQL("csvload_listed AND csvload_row IS NOT NULL AND NOT csvload_same")
        if compared
        else sql.SQL("false")
    )
    if not changes:
        parts.append(sql.SQL(" SELECT {}").format(counts))
        return sql.Composed(parts)
    # With --changes the statement is COPY'd out: its rows are the changes file's, written
    # straight to it, and a last row, csvload:counts, carries the counts (a temp table of
    # the changes, filled and copied out afterwards, cost 0.4 s more at 245k changes).
    change = sql.Literal("deactivated" if mode == "deactivate" else "deleted")
    parts.append(
        sql.SQL(
            " SELECT {file_keys}, CASE WHEN csvload_row IS NULL THEN 'inserted'"
            " WHEN csvload_back THEN 'reactivated' ELSE 'updated' END, csvload_columns"
            " FROM pairs d WHERE csvload_listed AND (csvload_row IS NULL OR NOT csvload_same)"
            " UNION ALL SELECT {gone_keys}, {change}, '' FROM gone g"
            " UNION ALL SELECT {nulls}, {trailer}, concat_ws(' ', {counts})"
        ).format(
            file_keys=sql.SQL(", ").join(
                sql.SQL("d.{}::text").format(f.column.identifier) for f in plan.key_fields
            ),
            gone_keys=sql.SQL(", ").join(
                sql.SQL("g.{}::text").format(f.column.identifier) for f in plan.key_fields
            ),
            change=change,
            nulls=sql.SQL(", ").join(sql.SQL("NULL::text") for _ in plan.key_fields),
            trailer=sql.Literal(COUNTS_ROW),
            counts=counts,
        )
    )
    return sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(sql.Composed(parts))


COUNTS_ROW = "csvload:counts"  # the change column of with_statement()'s last row, with changes
