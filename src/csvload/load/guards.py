"""Guards on how much and how far a feed may change the table (docs/guards.md):

- --min-rows N|P%: a file with fewer data rows than N, or than P% of the rows in scope
  before the import, fails it.  A data row is a record the file lists a key with: rows
  read, less the rows a preset skips and the repeats of a key (the last one counts);
  rejected rows count, as their keys are in the file (as for --missing).
- --max-updated N|P%: an import that would update more existing rows than N, or than P%
  of the rows in scope before the import, fails.  Updated is the ledger's count (rows
  made active again included; rows --missing deactivates are --max-missing's).
- --max-change COLUMN=P% (numeric columns): a row whose value would move by more than P%
  of the stored value, up or down, is held back: not written, a reject whose reason says
  why, its key kept for --missing.  A drop to zero moves 100%, and so does an empty field
  that would clear the value; a stored 0 or NULL holds nothing back (there is no share of
  it to measure), and neither does an empty field that keeps the stored value.

A guard that trips fails the import with one line (exit 1), nothing changed.  All of it is
set-based, in the import's transaction: the counts the guards read are the writer's own,
plus one count of the rows in scope for a P% limit; --max-change holds rows back inside
the writer's own join (a condition and a counter: guards.py in statements/), and only
when it held some are they found again to become rejects.  With no guard given, an
import runs no statement more.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from csvload.errors import GuardError, MappingError, TargetError
from csvload.load import fit, statements
from csvload.load.missing import limit_for
from csvload.load.statements import guards as sql_guards
from csvload.load.statements.values import compared_fields
from csvload.read.source import Reject
from csvload.table.binding import Field, Plan
from csvload.table.catalog import EXACTLY, resolve

# The types --max-change measures: those whose values are numbers a numeric holds.
NUMERIC = ("int2", "int4", "int8", "numeric", "float4", "float8", "money")


@dataclass(frozen=True)
class Guards:
    """The guards an import runs; none by default."""

    min_rows: int | str | None = None  # rows, or a share of the rows in scope ("90%")
    max_updated: int | str | None = None  # rows, or a share of the rows in scope ("10%")
    max_change: tuple[tuple[str, str], ...] = ()  # (column, share of its stored value)


def parse_share(text: str, option: str) -> str:
    """A share of a stored value, P%: any finite P >= 0 (a price may triple: 200%)."""
    value = text.strip()
    try:
        if not value.endswith("%"):
            raise ValueError
        share = float(value[:-1])
        if not math.isfinite(share) or share < 0:
            raise ValueError
    except ValueError:
        raise MappingError(f"{option} {text!r}: give a share of the stored value (50%)") from None
    return f"{share:g}%"


def parse_change(text: str) -> tuple[str, str]:
    """--max-change COLUMN=P%."""
    column, sep, share = text.rpartition("=")
    if not sep or not column.strip():
        raise MappingError(
            f"--max-change {text!r}: give a numeric column and a share of its stored value"
            " (price=50%)"
        )
    return column.strip(), parse_share(share, f"--max-change {column.strip()}=")


@dataclass(frozen=True)
class Moving:
    """A --max-change column the file has: its field, and how far it may move."""

    field: Field
    share: str  # "50%"

    @property
    def option(self) -> str:
        return f"--max-change {self.field.column.name}={self.share}"


def check(plan: Plan, guards: Guards) -> tuple[Moving, ...]:
    """The --max-change columns the file has, checked before anything is read: a column
    the table lacks, one that is not numeric, a key column or a column named twice is a
    MappingError (exit 2); on a table Citus manages --max-change is refused (TargetError).
    A column the table has and the file lacks never moves: it is left out."""
    target = plan.target
    if guards.max_change and target.citus_kind != "local":
        raise TargetError(
            f"{target.display}: is a {target.citus_kind} table of Citus; --max-change does"
            " not work on tables Citus manages yet"
        )
    numeric = [c.name for c in target.columns
               if _numeric(c) and c.writable and c.name not in target.key]  # fmt: skip
    moving, seen = [], set()
    changed = {f.column.name for f in compared_fields(plan)}
    for name, share in guards.max_change:
        option = f"--max-change {name}={share}"
        found = resolve(name, [c.name for c in target.columns], option, EXACTLY)
        column = target.column(found) if found is not None else None
        if column is None or not _numeric(column):
            why = (f"{target.display} has no such column" if column is None
                   else f"{target.display}.{column.name} is {column.type}, not a number")
            raise MappingError(
                f"{option}: {why} (numeric columns: {', '.join(numeric) or 'none'})"
            )
        if column.name in target.key:
            raise MappingError(f"{option}: {column.name} is a key column; its value never moves")
        if column.name in seen:
            raise MappingError(f"{option}: --max-change names {column.name} twice")
        seen.add(column.name)
        field = plan.field(column.name)
        # A column the writer never changes on an existing row (--keep, one --update leaves
        # out, an insert-only feed) cannot move.
        if field is not None and column.name in changed:
            moving.append(Moving(field, share))
    return tuple(moving)


def _numeric(column) -> bool:
    return column.type_name in NUMERIC and column.category == "N"  # not an array of them


def guards_for(plan: Plan, guards: Guards) -> NoGuards | Checked:
    """The import's guards: NoGuards (no statement at all) when none is given."""
    if guards == Guards():
        return NoGuards()
    return Checked(plan, guards, check(plan, guards))


class NoGuards:
    """An import without guards: it runs no statement for them."""

    moving: tuple[Moving, ...] = ()

    def before(self, db) -> None:
        pass

    def after(self, result, where: str) -> None:
        pass


class Checked(NoGuards):
    """One import's guards: the rows in scope before the write (for a P% limit), the
    --max-change columns (the writers hold rows back: Import._hold_back()), and the
    counts after the write against the limits."""

    def __init__(self, plan: Plan, guards: Guards, moving: tuple[Moving, ...]):
        self.plan, self.guards, self.moving = plan, guards, moving
        self._in_scope = 0

    def before(self, db) -> None:
        """Count the rows in scope before the import, for a P% limit (one statement)."""
        if any(isinstance(g, str) for g in (self.guards.min_rows, self.guards.max_updated)):
            self._in_scope = db.execute(statements.count_in_scope(self.plan)).fetchone()[0]

    def after(self, result, where: str) -> None:
        """Hold the written counts against --min-rows and --max-updated; GuardError when
        one is past its limit (the caller's transaction then rolls everything back)."""
        guards, table = self.guards, self.plan.target.display
        if guards.min_rows is not None:
            rows = result.rows_read - result.skipped - result.duplicates
            need = _at_least(guards.min_rows, self._in_scope)
            if rows < need:
                raise GuardError(
                    f"{where}: {rows:,} data rows, fewer than --min-rows {guards.min_rows}"
                    f"{self._share(guards.min_rows)}; nothing was changed (lower --min-rows"
                    " if the file really is this short)"
                )
        if guards.max_updated is not None:
            limit = limit_for(guards.max_updated, self._in_scope)
            if result.updated > limit:
                raise GuardError(
                    f"{where}: {result.updated:,} rows of {table} would be updated, more than"
                    f" --max-updated {guards.max_updated}{self._share(guards.max_updated)};"
                    " nothing was changed (raise --max-updated if the changes are expected)"
                )

    def _share(self, limit: int | str) -> str:
        if isinstance(limit, str):
            return f" ({limit} of {self._in_scope:,} rows in scope)"
        return ""


def _at_least(limit: int | str, in_scope: int) -> int:
    """The data rows --min-rows asks for: N, or P% of the rows in scope rounded up (a file
    of 13 rows is fewer than 90% of 15, 13.5)."""
    if isinstance(limit, str):
        return math.ceil(Decimal(limit.rstrip("%")) * in_scope / 100)
    return limit


# -- --max-change ------------------------------------------------------------------------------


def find_held(db, plan: Plan, moving: tuple[Moving, ...]) -> int:
    """After a writer held rows back: record them in csvload_held (the last occurrence of
    a key, each once); how many."""
    found = db.execute(sql_guards.create_held(plan, moving)).rowcount
    if found:
        found -= db.execute(sql_guards.drop_repeated(plan)).rowcount
    return found


def held(db, plan: Plan, moving: tuple[Moving, ...], lines, delimiter: str) -> Iterator[Reject]:
    """The held-back rows as rejects, in file order, with the reason of each."""
    named = db.cur.connection.cursor(name="csvload_held")
    named.itersize = 2000
    db.count += 1
    named.execute(sql_guards.held_rows(plan, moving))
    try:
        for ord_, moved, values, fields in named:
            stored, given = values[2 * moved], values[2 * moved + 1]
            yield Reject(
                lines.line(ord_), reason(moving[moved], stored, given),
                fit.record_text(fields, delimiter),
                file=lines.file(ord_),
            )
    finally:
        named.close()


def reason(moving: Moving, stored: str, given: str | None) -> str:
    """`price 19.99 -> 0.00 moves 100%, more than --max-change price=50%`."""
    old = Decimal(stored)
    new = Decimal(given) if given is not None else None
    share = Decimal(100) if new is None else abs(new - old) * 100 / abs(old)
    shown = given if given is not None else "empty"
    return (
        f"{moving.field.column.name} {stored} -> {shown} moves {_percent(share)}%, more than"
        f" {moving.option}"
    )


def _percent(share: Decimal) -> str:
    """A share to two decimals at most, rounded up, so that it never reads as the limit it
    is over (50.001% is 50.01%)."""
    if not share.is_finite():
        return str(share)
    text = f"{share.quantize(Decimal('0.01'), rounding=decimal.ROUND_UP):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
