"""Values and keys: a staged field as its column's type (casts, --decimal-comma), the
deduplicated stage (latest), how a key matches, and the pieces every writer shares:
what a new row gets, what an update assigns, whether a row differs."""

from __future__ import annotations

from psycopg import sql

from csvload.load.statements.stage import STAGE, stage_column
from csvload.table.binding import NOW, Field, Plan
from csvload.table.catalog import CITEXT, EXACT, LOWER, Column


def key_alias(i: int) -> sql.Identifier:
    return sql.Identifier(f"csvload_key{i + 1}")


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
        column, text, alias = field.column, stage_column(field.index), key_alias(i)
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
        [sql.SQL("{} AS {}").format(carried, key_alias(i)) for i, (carried, _, _) in
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


def key_join(plan: Plan) -> sql.Composable:
    return sql.SQL(" AND ").join(j for _, _, j in key_parts(plan))


def compared_fields(plan: Plan) -> list[Field]:
    """The fields a re-import compares and writes: all but exact key columns (equal by
    definition); a case-insensitive key's spelling is written when it changed.  Not the
    columns existing rows keep (--keep, those --update leaves out), and none at all for
    an insert-only feed: a row whose only differences are there is unchanged."""
    if plan.control.mode == "insert":
        return []
    exact = {k for k, m in zip(plan.target.key, plan.target.matches, strict=True) if m == EXACT}
    kept = plan.control.kept
    return [f for f in plan.fields if f.column.name not in exact and f.column.name not in kept]


def keeps_stored(column: Column) -> bool:
    # An empty field in a NOT NULL non-text column keeps what an existing row holds.
    return column.not_null and not column.is_text


def new_value(plan: Plan, field: Field, source: str) -> sql.Composable:
    column = field.column
    mine = sql.SQL("{}.{}").format(sql.Identifier(source), column.identifier)
    if plan.active is not None and column.name == plan.active.name:
        # A full feed lists the row, so it is active unless the file says false: an empty
        # active field is "no value", not "false", and never keeps a row deactivated.
        return sql.SQL("coalesce({}, true)").format(mine)
    control = plan.control
    if control.kept or control.filled or control.empty:
        return _controlled(control, column, mine)
    if keeps_stored(column):
        return sql.SQL("coalesce({}, p.{})").format(mine, column.identifier)
    return mine


def _controlled(control, column: Column, mine: sql.Composable) -> sql.Composable:
    """new_value() under --fill and --empty.  An empty field is '' in a text column and
    NULL in any other (value()).  --empty keep: the stored value stays; clear: NULL where
    the column allows it, '' in a NOT NULL text column, and in a NOT NULL column of any
    other type the NULL fails the statement and fit.find() makes the row a reject.
    --fill: the file's value only where the stored one is NULL or '', and never an empty
    one."""
    stored = sql.SQL("p.{}").format(column.identifier)
    how = control.empty_rule(column)
    given = sql.SQL("NULLIF({}, '')").format(mine) if column.is_text else mine
    if column.name in control.filled:
        gap = (
            sql.SQL("coalesce({}, '') = ''").format(stored)
            if column.is_text
            else sql.SQL("{} IS NULL").format(stored)
        )
        return sql.SQL("CASE WHEN {gap} THEN coalesce({given}, {stored}) ELSE {stored} END").format(
            gap=gap, given=given, stored=stored
        )
    if how == "keep" or (how is None and keeps_stored(column)):
        return sql.SQL("coalesce({}, {})").format(given, stored)
    if how == "clear" and column.is_text and not column.not_null:
        return given
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


def touch_value(plan: Plan) -> sql.Composable:
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
        values.append(touch_value(plan))
    return sql.SQL(", ").join(names), sql.SQL(", ").join(values)


def _reactivating(plan: Plan) -> bool:
    """A full feed (--missing deactivate) without an active column sets active = true on
    every row it lists: a row it deactivated before comes back."""
    return plan.active is not None and plan.field(plan.active.name) is None


def new_active(plan: Plan, source: str) -> sql.Composable:
    assert plan.active is not None
    field = plan.field(plan.active.name)
    return sql.SQL("true") if field is None else new_value(plan, field, source)


def update_assignments(
    plan: Plan, source: str, touch: sql.Composable | None = None
) -> sql.Composable:
    """`touch`: what the touch column is set to, instead of now() (Citus refuses now()
    in ON CONFLICT DO UPDATE SET; see upsert.py)."""
    parts = [
        sql.SQL("{} = {}").format(f.column.identifier, new_value(plan, f, source))
        for f in compared_fields(plan)
    ]
    if _reactivating(plan):
        parts.append(sql.SQL("{} = true").format(plan.active.identifier))
    if plan.touch is not None:
        touched = touch_value(plan) if touch is None else touch
        parts.append(sql.SQL("{} = {}").format(plan.touch.identifier, touched))
    return sql.SQL(", ").join(parts)


def comparable(column: Column, expression: sql.Composable) -> sql.Composable:
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
    mine = [comparable(f.column, sql.SQL("p.{}").format(f.column.identifier)) for f in compared]
    theirs = [comparable(f.column, new_value(plan, f, source)) for f in compared]
    if _reactivating(plan):
        mine.append(sql.SQL("p.{}").format(plan.active.identifier))
        theirs.append(sql.SQL("true"))
    return sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(
        sql.SQL(", ").join(mine), sql.SQL(", ").join(theirs)
    )


def updates_rows(plan: Plan) -> bool:
    if plan.control.mode == "insert":
        return False
    return bool(compared_fields(plan)) or _reactivating(plan)


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


def key_text(plan: Plan, source: str) -> sql.Composable:
    """The key as the file spells it: one column, or several joined with commas."""
    parts = [
        sql.SQL("{}.{}").format(sql.Identifier(source), f.column.identifier)
        for f in plan.key_fields
    ]
    if len(parts) == 1:
        return sql.SQL("{}::text").format(parts[0])
    return sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(parts))
