"""Many inputs into one stage: each later input of a many-file import, bound to the table
on its own, must give the same columns as the first, and is laid out like it (the stage's
columns are the first input's)."""

from __future__ import annotations

from collections.abc import Sequence

from csvload.errors import InputError
from csvload.table.binding import Plan


def lay_out(sources: Sequence, plans: Sequence[Plan]) -> None:
    """Tell each later source how to stage its records in the first one's columns (and
    with its delimiter), where they differ.  InputError, before anything is read, for a
    source that binds to other columns than the first: the stage's last row of a key
    would otherwise leave a column the other files have empty."""
    first, ncols = sources[0], len(sources[0].staged_columns)
    wanted = _bound(plans[0], ncols)
    for source, plan in zip(sources[1:], plans[1:], strict=True):
        got = _bound(plan, len(source.staged_columns))
        if set(got) != set(wanted):
            missing = sorted(set(wanted) - set(got))
            if missing:
                what = f"no {', '.join(missing)} column, which {first.name} has"
            else:
                extra = ", ".join(sorted(set(got) - set(wanted)))
                what = f"the column {extra}, which {first.name} lacks"
            raise InputError(
                f"{source.place(source.header_line)}: {what}; the files of one import must"
                " give the same columns (import this one on its own)"
            )
        layout = [-1] * ncols
        for name, index in wanted.items():
            layout[index] = got[name]
        same = len(source.staged_columns) == ncols and all(
            i in (j, -1) for j, i in enumerate(layout)
        )
        if not same or source.delimiter != first.delimiter:
            source.restage(layout, first.delimiter)


def _bound(plan: Plan, ncols: int) -> dict[str, int]:
    """Each table column the file gives, and its position among the staged columns
    (--scope's constant columns aside)."""
    return {f.column.name: f.index for f in plan.fields if f.index < ncols}
