"""Binding a file to its target: which header feeds which column (--map), what new rows
get (--default, --scope) and which column records the change (--touch).  bind() refuses,
before anything is read or written, a binding that cannot work; the Plan it returns is
the one description of the target that staging, merging, verify and the run history
follow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from csvload.errors import InputError, MappingError, MissingColumnError, TargetError
from csvload.table import control
from csvload.table.catalog import EXACTLY, Column, Target, resolve
from csvload.table.control import Control

MAX_COLUMNS = 1600  # PostgreSQL's MaxHeapAttributeNumber
NOW = "now"  # --default COLUMN=now: the transaction's timestamp
_TIMESTAMPS = ("timestamptz", "timestamp")


@dataclass(frozen=True)
class Binding:
    """How to bind a file to a target: --map, --default, --touch, --decimal-comma."""

    mapping: tuple[tuple[str, str], ...] = ()  # (header as in the file, column)
    defaults: tuple[tuple[str, str], ...] = ()  # (column, value or NOW)
    touch: str | None = None  # a column; None: updated_at when there is one
    no_touch: bool = False
    decimal_comma: bool = False
    scope: tuple[tuple[str, str], ...] = ()  # (column, value) for every row, and a filter
    # What the feed may change (control.py): which rows, and which columns of existing ones.
    mode: str = "upsert"  # upsert, insert or update
    update: tuple[str, ...] | None = None  # --update: only these change on existing rows
    keep: tuple[str, ...] = ()  # --keep: written into new rows only
    fill: tuple[str, ...] = ()  # --fill: written where the stored value is NULL or ''
    empty: tuple[tuple[str, str], ...] = ()  # --empty: ("", how) for all, (column, how)


@dataclass(frozen=True)
class Field:
    """A file column bound to a table column."""

    column: Column
    index: int  # 0-based position in the file


@dataclass(frozen=True)
class Plan:
    """A file bound to a target: what each staged column is, and what the merge writes."""

    target: Target
    fields: tuple[Field, ...]  # in table column order
    defaults: tuple[tuple[Column, str], ...] = ()  # --default, for columns new rows need
    touch: Column | None = None
    decimal_comma: bool = False
    ignored: tuple[str, ...] = ()  # headers no column takes
    header: tuple[str, ...] = ()  # the staged columns: the file's, then --scope's
    scope: tuple[tuple[Column, str], ...] = ()  # --scope: a value for every row, and a filter
    active: Column | None = None  # --missing deactivate: the boolean column it sets
    control: Control = Control()  # --mode, --update, --keep, --fill, --empty

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.column.name == name:
                return f
        return None

    @property
    def key_fields(self) -> tuple[Field, ...]:
        by_name = {f.column.name: f for f in self.fields}
        return tuple(by_name[k] for k in self.target.key)

    def default_for(self, column: Column) -> str | None:
        for c, value in self.defaults:
            if c.name == column.name:
                return value
        return None


def bind(
    target: Target,
    header: Sequence[str],
    binding: Binding,
    where: str,
    writing: bool = True,
    filled: Sequence[str] = (),
) -> Plan:
    """Map the header onto the target's columns.  Raises MappingError (exit 2) for an
    option that names a column it cannot, MissingColumnError for a key column the file
    lacks, and TargetError for a column new rows need that nothing fills."""
    columns = _Columns(target)
    # seen: each bound column's position among the staged columns.
    seen, ignored = _bind_header(columns, header, binding.mapping, where)
    staged = list(header)
    scope = _bind_scope(columns, binding.scope, seen, staged)
    if len(staged) >= MAX_COLUMNS:
        # The stage holds every column as text, and its ord besides; past PostgreSQL's
        # limit its CREATE failed with "tables can have at most 1600 columns", no line.
        raise InputError(
            f"{where}: {len(staged)} columns; PostgreSQL tables hold at most {MAX_COLUMNS}"
            f" (csvload stages at most {MAX_COLUMNS - 1})"
        )
    for k in target.key:
        if k not in seen:
            found = ", ".join(repr(h) for h in staged[:8])
            raise MissingColumnError(
                f"{where}: no {k} column in the header (found {found}; "
                f"use --map 'Your Column={k}')"
            )
    defaults = tuple(
        (columns.writable(column, f"--default {column}={value}"), value)
        for column, value in binding.defaults
    )
    touch = _touch(columns, binding, seen)
    # verify reads the table and the file, and an update-only feed creates no row.
    if writing and binding.mode != "update":
        _check_new_rows_filled(target, seen, defaults, touch, filled)
    by_name = columns.by_name
    rules = control.resolve(
        target, binding, columns.writable, [name for name in by_name if name in seen]
    )
    return Plan(
        target=target,
        fields=tuple(Field(by_name[name], seen[name]) for name in by_name if name in seen),
        defaults=defaults,
        touch=touch,
        decimal_comma=binding.decimal_comma,
        ignored=tuple(ignored),
        header=tuple(staged),
        scope=tuple(scope),
        control=rules,
    )


class _Columns:
    """The target's columns, as options name them."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.by_name = {c.name: c for c in target.columns}
        self.names = list(self.by_name)

    def writable(self, name: str, option: str) -> Column:
        """The writable column an option names; MappingError for any other name."""
        found = resolve(name, self.names, option, EXACTLY)
        column = self.by_name.get(found) if found is not None else None
        if column is None or not column.writable:
            why = "has no such column" if column is None else (
                "cannot write its generated column" if column.generated
                else "cannot write its GENERATED ALWAYS identity column"
            )
            writable = ", ".join(c.name for c in self.target.columns if c.writable)
            raise MappingError(
                f"{option}: {self.target.display} {why} {name!r} (writable columns: "
                f"{writable})"
            )
        return column


def _bind_header(
    columns: _Columns, header: Sequence[str], mapping, where: str
) -> tuple[dict[str, int], list[str]]:
    """(column -> its header's position, headers no column takes): --map first, then the
    headers' own names, matched exactly first, else ignoring case."""
    # Headers as the file spells them, BOM and padding aside.
    spelt = [name.strip().lstrip("\ufeff") for name in header]
    renames: dict[int, str] = {}
    for header_name, column_name in mapping:
        option = f"--map {header_name}={column_name}"
        column = columns.writable(column_name, option)
        found = resolve(header_name.strip(), spelt, option, "write the header exactly")
        if found is not None:
            renames[spelt.index(found)] = column.name
    seen: dict[str, int] = {}
    ignored = []
    for i, name in enumerate(header):
        target_name = renames.get(i)
        if target_name is None:
            found = resolve(
                spelt[i], columns.names, where,
                f"rename the header as the column is spelt, or --map {spelt[i]}=COLUMN",
            )
            column = columns.by_name[found] if found is not None else None
            target_name = column.name if column is not None and column.writable else None
        if target_name is None:
            ignored.append(name)
            continue
        if target_name in seen:
            raise MappingError(
                f"{where}: columns {header[seen[target_name]]!r} and {name!r} both map to "
                f"{target_name} (rename one, or --map it to another column)"
            )
        seen[target_name] = i
    return seen, ignored


def _bind_scope(
    columns: _Columns, given: Sequence[tuple[str, str]], seen: dict[str, int], staged: list[str]
) -> list[tuple[Column, str]]:
    """--scope's columns, staged after the file's (appended to seen and staged)."""
    scope = []
    for column_name, value in given:
        column = columns.writable(column_name, f"--scope {column_name}={value}")
        if column.name in seen:
            raise MappingError(
                f"--scope {column_name}={value}: the file has a {column.name} column too;"
                " --scope sets it for every row (drop one of them)"
            )
        seen[column.name] = len(staged)
        staged.append(column.name)
        scope.append((column, value))
    return scope


def _touch(columns: _Columns, binding: Binding, seen: dict[str, int]) -> Column | None:
    """The column that records when a row changed: --touch's, else updated_at when the
    table has a timestamp one the file does not supply."""
    if binding.no_touch:
        return None
    touch = None
    if binding.touch is not None:
        touch = columns.writable(binding.touch, f"--touch {binding.touch}")
        if touch.name in seen:
            raise MappingError(
                f"--touch {touch.name}: the file has that column too; touch a column the"
                " file does not supply"
            )
    else:
        updated_at = columns.by_name.get("updated_at")
        if (
            updated_at is not None
            and updated_at.writable
            and updated_at.type_name in _TIMESTAMPS
            and "updated_at" not in seen
        ):
            touch = updated_at
    if touch is not None and touch.type_name not in (*_TIMESTAMPS, "date"):
        raise MappingError(
            f"--touch {touch.name}: {columns.target.display}.{touch.name} is {touch.type},"
            " not a timestamp"
        )
    return touch


def _check_new_rows_filled(
    target: Target, seen, defaults, touch: Column | None, filled: Sequence[str]
) -> None:
    names = [c.name for c in target.columns]
    given = {c.name for c, _ in defaults} | {
        resolve(f, names, f"--active-column {f}", EXACTLY) for f in filled
    }
    for c in target.columns:
        if not c.not_null or c.default is not None or c.identity or c.generated:
            continue
        touched = touch is not None and touch.name == c.name
        if c.name in seen or c.name in given or touched:
            continue
        hint = "now" if c.type_name in (*_TIMESTAMPS, "date") else "VALUE"
        raise TargetError(
            f"{target.name}.{c.name} is NOT NULL and has no default; add --default "
            f"{c.name}={hint}"
        )
