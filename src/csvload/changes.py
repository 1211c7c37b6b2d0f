"""The changes file (--changes PATH): one CSV row for each key an import changed, with
the key column(s), the change (inserted, updated, deactivated, reactivated, deleted) and,
for updated, the changed columns separated by spaces.  Unchanged keys are not listed.

The rows are gathered in a temp table inside the import's transaction and streamed out
with COPY TO STDOUT into a temp file beside the target, block by block (the client's
memory does not grow with the number of changes); the file is renamed into place once the
transaction has committed, and removed when the import fails.
"""

from __future__ import annotations

from pathlib import Path

from csvload import sql
from csvload.files import AtomicFile
from csvload.target import Plan


class ChangesWriter:
    def __init__(self, path: Path):
        self._file = AtomicFile(path, "changes file")

    def fill(self, db, plan: Plan) -> None:
        """Copy csvload_changes into the temp file (before the commit)."""
        out = self._file.open()
        with db.copy(sql.copy_changes(plan)) as copy:
            for block in copy:
                out.write(block)

    def finish(self) -> Path | None:
        return self._file.finish()

    def discard(self) -> None:
        self._file.discard()
