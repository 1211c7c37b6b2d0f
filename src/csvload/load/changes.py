"""The changes file (--changes PATH): one CSV row for each key an import changed, with
the key column(s), the change (inserted, updated, deactivated, reactivated, deleted) and,
for updated, the changed columns separated by spaces.  Unchanged keys are not listed.

The merge statement itself yields the rows, COPY'd out (COPY ... TO STDOUT) inside the
import's transaction straight into a temp file beside the target (files.OutputFile), row
by row (the client's memory does not grow with the number of changes); the file is fsynced
before the transaction commits, so that a full disk rolls the import back, renamed into
place once it has committed, and removed when the import fails or is a dry run.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from csvload.files import OutputFile
from csvload.load import statements
from csvload.table.binding import Plan


class ChangesWriter:
    def __init__(self, path: Path):
        self._file = OutputFile(path, "changes file")

    def stream(self, db, plan: Plan, statement, counted: bool = True) -> list[int] | None:
        """Run a merge's COPY of its changes, writing its rows to the temp file under the
        header (the key columns, change, columns).  with_statement()'s (`counted`) ends
        with a row of counts: return them.  A second attempt (after rejects were set
        aside) starts the file again."""
        out = self._file
        if out.opened:
            out.restart()
        else:
            out.open()
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(
            [f.column.name for f in plan.key_fields] + ["change", "columns"]
        )
        out.write(header.getvalue().encode("utf-8"))
        with db.copy(statement) as copy:
            if not counted:
                for block in copy:
                    out.write(block)
                return None
            last = None
            for row in copy:  # COPY TO sends one row per message
                if last is not None:
                    out.write(last)
                last = bytes(row)
        fields = next(csv.reader([last.decode("utf-8")])) if last else []
        if len(fields) < 2 or fields[-2] != statements.COUNTS_ROW:
            raise AssertionError(
                f"statements.with_statement() ended without its counts row: {last!r}"
            )
        return [int(n) for n in fields[-1].split()]

    def ready(self) -> None:
        """Flush and fsync it, before the import commits."""
        self._file.ready()

    def finish(self) -> Path | None:
        return self._file.finish()

    def discard(self) -> None:
        self._file.discard()
