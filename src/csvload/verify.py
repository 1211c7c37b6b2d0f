"""Reconcile a file against products without changing anything: stage the file exactly as
the import does, deduplicate it the same way (last occurrence wins), and count the SKUs
that are missing from products or hold other values.

Everything runs in a transaction that is always rolled back; the only things it creates
are its own temp tables.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import psycopg

from csvload import sql
from csvload.database import translate
from csvload.loader import (
    DEFAULT_BATCH_SIZE,
    ImportOptions,
    Progress,
    ProgressCallback,
    Statements,
    stage,
)
from csvload.source import Source

EXAMPLES = 5


@dataclass
class Difference:
    sku: str  # as spelled in the file
    fields: list[str]  # which of name, description, active differ


@dataclass
class VerifyResult:
    file: str
    rows_read: int = 0
    rejected: int = 0  # rows the import would reject; they are not checked
    skus: int = 0  # distinct SKUs (case-insensitive) among the good rows
    matching: int = 0
    missing: int = 0
    different: int = 0
    compared: list[str] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)
    different_examples: list[Difference] = field(default_factory=list)
    seconds: float = 0.0
    statements: int = 0

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.different == 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def verify_source(
    conn: psycopg.Connection,
    source: Source,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: ProgressCallback | None = None,
    examples: int = EXAMPLES,
) -> VerifyResult:
    """Check that every SKU in the source is in products with the values of its last
    occurrence.  Changes nothing.  Raises CsvloadError when the database refuses."""
    started = time.monotonic()
    report = progress or (lambda p: None)
    result = VerifyResult(file=source.name)
    result.compared = [f for f in ("name", "description", "active") if f in source.columns]
    db = Statements(conn)
    # Rejected rows are counted and skipped, never a reason to stop: verify answers about
    # the rows an import would have loaded.
    options = ImportOptions(batch_size=batch_size, max_errors=2**62)
    try:
        with conn.transaction():
            stage(db, source, options, result, None, report)
            db.execute(sql.ANALYZE_STAGE)  # so the join below hashes instead of probing
            report(Progress("comparing", 0, None, result.rows_read))
            row = db.execute(sql.verify_counts(source.columns), {"examples": examples}).fetchone()
            raise psycopg.Rollback()
    except psycopg.Error as e:
        raise translate(e, source.name) from e
    finally:
        result.statements = db.count
    result.skus, result.missing, result.different = row[0], row[1], row[2]
    result.matching = result.skus - result.missing - result.different
    result.missing_examples = list(row[3])
    result.different_examples = [Difference(sku, list(fields)) for sku, fields in row[4]]
    result.seconds = round(time.monotonic() - started, 3)
    report(Progress("done", 0, None, result.rows_read))
    return result
