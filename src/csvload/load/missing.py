"""Full feeds: what to do with the rows a nightly snapshot no longer lists.

`--missing deactivate` sets the target's boolean active column to false (and touches it)
on every row in scope whose key is not in the file; `--missing delete` deletes them. A
guard keeps a truncated or wrong file from wiping out a catalogue: more than --max-missing
rows (a count, or a share of the rows in scope before the import) fails the import, and
nothing changes. Rows rejected for their values, or by the reader where their key could be
read, count as present: a bad row never gets its product deactivated.
"""

from __future__ import annotations

import dataclasses

from psycopg import errors, sql

from csvload.errors import ConstraintError, MappingError, MissingGuardError
from csvload.load import fit, statements
from csvload.load.capabilities import Server
from csvload.load.violations import key_detail
from csvload.read.encoding import storable
from csvload.read.source import Reject
from csvload.table.binding import Plan
from csvload.table.catalog import resolve

MODES = ("keep", "deactivate", "delete")

# A value reject's stage row, before it leaves the stage: its key is present in the file.
KEEP_BAD = sql.SQL(
    "INSERT INTO {kept} SELECT s.* FROM {stage} s WHERE s.ord IN (SELECT ord FROM {bad})"
).format(kept=statements.KEPT, stage=statements.STAGE, bad=statements.BAD)


def parse_limit(text: str, option: str = "--max-missing") -> int | str:
    """--max-missing N or P% (and the guards' --min-rows and --max-updated)."""
    value = text.strip()
    try:
        if value.endswith("%"):
            share = float(value[:-1])
            if not 0 <= share <= 100:
                raise ValueError
            return f"{share:g}%"
        count = int(value)
        if count < 0:
            raise ValueError
        return count
    except ValueError:
        raise MappingError(
            f"{option} {text!r}: give a number of rows (500) or a share of the rows in"
            " scope (10%)"
        ) from None


def limit_for(max_missing: int | str, in_scope: int) -> int:
    if isinstance(max_missing, str):
        return int(in_scope * float(max_missing.rstrip("%")) / 100)
    return max_missing


def prepare(plan: Plan, options) -> Plan:
    """The plan of a full feed: with deactivate, the active column it sets."""
    if options.missing not in MODES:
        raise MappingError(f"--missing {options.missing!r}: use keep, deactivate or delete")
    if options.missing != "deactivate":
        return plan
    target = plan.target
    name = resolve(
        options.active_column, [c.name for c in target.columns],
        f"--active-column {options.active_column}", "write the column exactly as it is spelt",
    )
    column = target.column(name) if name is not None else None
    if column is None or column.type_name != "bool" or not column.writable:
        raise MappingError(
            f"--missing deactivate: {target.display} has no writable boolean"
            f" {options.active_column} column (name one with --active-column)"
        )
    return dataclasses.replace(plan, active=column)


def feed_for(plan: Plan, options) -> NoFeed | FullFeed:
    """The import's feed: a full feed (--missing deactivate or delete), or one that does
    nothing."""
    return FullFeed(plan, options) if options.missing != "keep" else NoFeed()


class NoFeed:
    """An import that is no full feed: it keeps every row the file does not list."""

    full = False
    done: int | None = None

    def keep(self, rejects: list[Reject]) -> None:
        pass

    def stage_kept(self, db) -> None:
        pass

    def keep_bad(self, db) -> None:
        pass

    def before(self, db) -> None:
        pass

    def drop_unusable_keys(self, db) -> None:
        pass

    def after(self, result, where: str) -> None:
        pass

    def still_referenced(self, db, e, where: str) -> ConstraintError | None:
        return None


class FullFeed(NoFeed):
    """One import's full-feed work: keeps the keys of rejected rows, counts the rows in
    scope before the merge, and afterwards holds the rows the merge deactivated or deleted
    against --max-missing."""

    full = True

    def __init__(self, plan: Plan, options):
        self.plan = plan
        self.options = options
        self._kept: list[tuple[str, ...]] = []  # bounded by --max-errors
        self._in_scope = 0
        self.done: int | None = None  # rows the merge itself deactivated or deleted

    def keep(self, rejects: list[Reject]) -> None:
        # A key holding a NUL or undecodable bytes names no stored row; sent along, it
        # would fail the whole import (a NUL) or the client (the bytes do not encode).
        self._kept.extend(
            r.key for r in rejects if r.key is not None and all(map(storable, r.key))
        )

    def stage_kept(self, db) -> None:
        db.execute(statements.CREATE_KEPT)
        if self._kept:
            plan = self.plan
            scope = {c.name: v for c, v in plan.scope}
            columns = [f.index for f in plan.key_fields]
            with db.copy(statements.copy_kept(columns)) as copy:
                for key in self._kept:
                    given = iter(key)
                    copy.write_row(
                        [scope[f.column.name] if f.column.name in scope else next(given)
                         for f in plan.key_fields]
                    )

    def keep_bad(self, db) -> None:
        """A value reject's key is present in the file: keep it before it leaves the stage."""
        db.execute(KEEP_BAD)

    def before(self, db) -> None:
        self._in_scope = db.execute(statements.count_in_scope(self.plan)).fetchone()[0]

    def after(self, result, where: str) -> None:
        """Hold the rows the merge deactivated or deleted (the merge statement did it,
        along with the rest) against --max-missing.  A file that staged nothing (empty, or
        all rejects) deactivated nothing; nor did an import into an empty table."""
        if result.rows_read - result.rejected - result.skipped - result.duplicates <= 0:
            return
        plan, options = self.plan, self.options
        count = self.done or 0
        limit = limit_for(options.max_missing, self._in_scope)
        verb = "deactivated" if options.missing == "deactivate" else "deleted"
        if count > limit:
            share = f" ({options.max_missing} of {self._in_scope:,} rows in scope)" if isinstance(
                options.max_missing, str) else ""
            raise MissingGuardError(
                f"{where}: {count:,} rows of {plan.target.display} would be {verb}, more than"
                f" --max-missing {options.max_missing}{share}; nothing was changed (raise"
                " --max-missing if the file really is complete)"
            )
        setattr(result, verb, count)

    def drop_unusable_keys(self, db) -> None:
        """A rejected row's key that is no value of its column's type (an integer key
        'x1') names no row.  Left in csvload_kept, the merge would cast it and fail
        the whole import ('invalid input syntax for type integer'); drop such keys first,
        checked the way fit checks a value reject's fields."""
        fields = [f for f in self.plan.key_fields if not f.column.is_text]
        if not fields:
            return
        modern = Server.of(db.cur.connection).input_error_info
        if not modern:
            db.execute(fit.INPUT_ERROR_BEFORE_16)  # CREATE OR REPLACE: fit.find may have made it
        db.execute(
            sql.SQL("DELETE FROM {kept} WHERE {unusable}").format(
                kept=statements.KEPT,
                unusable=sql.SQL(" OR ").join(
                    sql.SQL("({raw} <> '' AND {code} IS NOT NULL)").format(
                        raw=statements.stage_column(f.index),
                        code=fit.input_error_code(
                            statements.number_text(self.plan, f), f.column, modern
                        ),
                    )
                    for f in fields
                ),
            )
        )

    def still_referenced(self, db, e, where: str) -> ConstraintError | None:
        """Deleting the missing rows: another table still references one of them (None
        for any other foreign key violation)."""
        if not isinstance(e, errors.ForeignKeyViolation):
            return None
        if e.diag.table_name == self.plan.target.name:
            return None
        key = ""
        parsed = key_detail(e.diag.message_detail)
        if parsed is not None:
            columns, value = parsed
            # A foreign key of several columns (supplier, sku) reports them and their values
            # joined with ", "; only a single column was looked up, so the line named no key.
            # Split both; when a value holds ", " itself the counts differ: show the detail.
            names, values = columns.split(", "), value.split(", ")
            key = f" with ({columns})=({value})" if "," in columns else f" with {columns} {value}"
            if len(names) == len(values):
                row = db.execute(
                    sql.SQL("SELECT {key} FROM {table} p WHERE {match}").format(
                        key=statements.key_text(self.plan, "p"),
                        table=self.plan.target.identifier,
                        match=sql.SQL(" AND ").join(
                            sql.SQL("p.{}::text = %s").format(sql.Identifier(n))
                            for n in names
                        ),
                    ),
                    values,
                ).fetchone()
                if row:
                    key = f" {row[0]!r}"
        other = e.diag.table_name or "another table"
        return ConstraintError(
            f"{where}: cannot delete the rows missing from the file: {self.plan.target.display}"
            f" row{key} is still referenced from {other} (foreign key"
            f" {e.diag.constraint_name}); nothing was changed (--missing deactivate keeps them)"
        )
