"""What a constraint violation names: the `Key (columns)=(values)` of its detail, and the
one-line error for a unique index the file breaks."""

from __future__ import annotations

from csvload.errors import ConstraintError
from csvload.load import statements


def key_detail(detail: str | None) -> tuple[str, str] | None:
    """(columns, values) of a detail "Key (sku)=(A-1) already exists." (both as the server
    spells them, several joined with ", "), or None when the detail names no key."""
    if not detail or not detail.startswith("Key (") or ")=(" not in detail:
        return None
    columns, _, rest = detail[5:].partition(")=(")
    return columns, rest.rsplit(")", 1)[0]


def unique_violation(db, plan, e, source_name: str, lines) -> ConstraintError:
    """The file would give two rows the same value of another unique index (a barcode,
    say): one line naming the index and, where it can be found, a line of the file."""
    index = e.diag.constraint_name or "a unique index"
    where = source_name
    parsed = key_detail(e.diag.message_detail)
    if parsed is None:
        return ConstraintError(
            f"{where}: the file breaks unique index {index} of {plan.target.display};"
            " nothing was written"
        )
    columns, value = parsed
    field = plan.field(columns) if "," not in columns else None
    if field is not None:
        row = db.execute(statements.find_value(plan, field), (value,)).fetchone()
        if row is not None:
            where = lines.place(row[0], source_name)
    return ConstraintError(
        f"{where}: {columns} {value!r} is already used by another row of"
        f" {plan.target.display} or of the file (unique index {index}); nothing was written"
    )
