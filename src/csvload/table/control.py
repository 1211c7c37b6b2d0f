"""What a feed may change: which rows (--mode) and, on rows that already exist, which
columns (--update, --keep, --fill, --empty).  resolve() checks them against the target
and the other options before anything is read or written, and gives the Control the
statements follow (statements.values reads it: which fields an existing row compares and
takes, and what it takes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from csvload.errors import MappingError
from csvload.table.catalog import Column, Target

MODES = ("upsert", "insert", "update")
EMPTY = ("keep", "clear")
# The change (and ledger count) of a key a mode passes over.
PASSED = {"insert": "existing", "update": "not_found"}


@dataclass(frozen=True)
class Control:
    """The resolved rules: the mode, the columns an existing row never takes from the file
    (kept), those it takes only into a gap (filled), and per column what an empty field
    means for it (keep or clear; a column not listed behaves as it always has)."""

    mode: str = "upsert"
    kept: frozenset[str] = frozenset()
    filled: frozenset[str] = frozenset()
    empty: tuple[tuple[str, str], ...] = ()

    def empty_rule(self, column: Column) -> str | None:
        for name, how in self.empty:
            if name == column.name:
                return how
        return None

    @property
    def passed(self) -> str | None:
        """The ledger count of the keys this mode passes over, if any."""
        return PASSED.get(self.mode)


def check_combination(mode: str, missing: str, binding) -> None:
    """Refuse the options that contradict each other whatever the table: MappingError
    (exit 2) that says why."""
    if mode not in MODES:
        raise MappingError(f"--mode {mode!r}: use upsert, insert or update")
    if mode == "insert" and missing != "keep":
        raise MappingError(
            f"--mode insert --missing {missing}: an insert-only feed leaves existing rows as"
            f" they are, so it cannot {'deactivate' if missing == 'deactivate' else 'delete'}"
            " the ones the file lacks (use --mode upsert or update)"
        )
    if mode == "insert":
        given = [name for name, value in _lists(binding) if value]
        if given:
            raise MappingError(
                f"--mode insert {given[0]}: an insert-only feed never changes existing rows,"
                f" and {given[0]} says how to change them (drop it, or use --mode upsert)"
            )
    if mode == "update" and binding.defaults:
        column = binding.defaults[0][0]
        raise MappingError(
            f"--mode update --default {column}=...: an update-only feed creates no rows, and"
            " --default gives new rows a value (drop it)"
        )


def _lists(binding) -> list[tuple[str, object]]:
    return [
        ("--update", binding.update),
        ("--keep", binding.keep),
        ("--fill", binding.fill),
        ("--empty", binding.empty),
    ]


def resolve(
    target: Target, binding, writable: Callable[[str, str], Column], fields: list[str]
) -> Control:
    """The Control of `binding` on `target`; `writable(name, option)` is the binder's
    lookup (MappingError listing the writable columns for a name the table lacks) and
    `fields` the columns the file supplies.  Raises MappingError for a key column in any
    list and for a column in two lists that contradict each other."""
    key = set(target.key)

    def names(option: str, given) -> list[str]:
        out = []
        for name in given or ():
            column = writable(name, f"{option} {name}")
            if column.name in key:
                raise MappingError(
                    f"{option} {name}: {column.name} is a key column, which names the row and"
                    f" is never changed on it (drop it from {option})"
                )
            out.append(column.name)
        return out

    update = names("--update", binding.update) if binding.update is not None else None
    keep = names("--keep", binding.keep)
    fill = names("--fill", binding.fill)
    per_column = []
    everywhere = None
    for name, how in binding.empty:
        if not name:
            everywhere = how
        else:
            per_column.append((names("--empty", (name,))[0], how))
    _contradictions(update, keep, fill, per_column)
    if update is not None:
        kept = {f for f in fields if f not in key and f not in update and f not in fill}
    else:
        kept = set()
    kept |= set(keep)
    for name, how in per_column:
        if name in kept:
            why = f"--keep {name}" if name in keep else f"--update leaves {name} out"
            raise MappingError(
                f"--empty {name}={how}: {name} is never changed on existing rows ({why}), so"
                " what its empty field means cannot matter (drop one of them)"
            )
    rules = dict(per_column)
    empty = tuple(
        (f, rules.get(f, everywhere)) for f in fields
        if f not in key and f not in kept and rules.get(f, everywhere) is not None
    )
    return Control(binding.mode, frozenset(kept), frozenset(fill), empty)


def _contradictions(update, keep, fill, per_column) -> None:
    lists = [("--update", update or []), ("--keep", keep), ("--fill", fill)]
    for i, (a, first) in enumerate(lists):
        for b, second in lists[i + 1:]:
            both = [n for n in first if n in second]
            if both:
                raise MappingError(
                    f"{a} {both[0]} and {b} {both[0]} contradict each other (name each column"
                    " in one of --update, --keep and --fill)"
                )
    for name, how in per_column:
        if how == "clear" and name in fill:
            raise MappingError(
                f"--fill {name} and --empty {name}=clear contradict each other (--fill never"
                " writes an empty field)"
            )
