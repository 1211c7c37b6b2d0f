"""What an import reports: its Progress while it runs and its ImportResult (the ledger of
counts) at the end.  History, rendering and verify read these; nothing here runs SQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Progress:
    phase: str  # reading, waiting, merging, committing, done
    bytes_done: int
    bytes_total: int | None
    rows: int


ProgressCallback = Callable[[Progress], None]

# The ledger: rows_read is the sum of the counts in LEDGER_PARTS.  OPTIONAL_COUNTS are
# shown only when they are not 0 (full feeds, presets and triggers make them).
LEDGER_PARTS = (
    "inserted", "updated", "unchanged", "suppressed", "duplicates", "rejected", "skipped",
    "existing", "not_found",
)  # fmt: skip
OPTIONAL_COUNTS = (
    "skipped", "suppressed", "deactivated", "reactivated", "deleted", "existing", "not_found",
)  # fmt: skip


@dataclass
class ImportResult:
    status: str  # succeeded, failed, dry_run, unchanged_feed (--if-changed)
    file: str
    table: str | None = None
    key: list[str] = field(default_factory=list)
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: int = 0  # rows a preset's rules skip (a shop export's image rows)
    suppressed: int = 0  # new or changed rows a trigger of the table kept from being written
    deactivated: int = 0  # --missing deactivate: rows the file no longer lists
    reactivated: int = 0  # inactive rows the file lists again (counted in updated too)
    deleted: int = 0  # --missing delete
    existing: int = 0  # --mode insert: rows already in the table, left as they are
    not_found: int = 0  # --mode update: keys not in the table, not created
    seconds: float = 0.0
    rows_per_second: float = 0.0
    statements: int = 0
    rejects_file: str | None = None
    changes_file: str | None = None
    ignored_columns: list[str] = field(default_factory=list)
    # The inputs read, in order: file, size (bytes, None for a pipe) and rows_read of each.
    files: list[dict] = field(default_factory=list)
    error: str | None = None
    run_id: str | None = None
    source: str | None = None  # a URL source, redacted (read/remote/)
    # Seconds per phase of the import (load.timing): where its time went.
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


