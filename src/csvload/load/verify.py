"""Reconcile a file against its table without changing anything: stage the file exactly as
the import does, deduplicate it the same way (last occurrence wins), and count the keys
that are missing from the table or hold other values.

Everything runs in a transaction that is always rolled back; the only things it creates
are its own temp tables.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import psycopg

from csvload.load import fit, missing, statements
from csvload.load.loader import ImportOptions, prepare
from csvload.load.result import Progress, ProgressCallback
from csvload.load.staging import Staging, Statements, stage
from csvload.read.source import Source
from csvload.server.database import translate

EXAMPLES = 5


@dataclass
class Difference:
    key: str  # as spelled in the file; a composite key's columns joined with commas
    fields: list[str]  # which of the compared columns differ


@dataclass
class VerifyResult:
    file: str
    table: str = ""
    key: list[str] = field(default_factory=list)
    rows_read: int = 0
    rejected: int = 0  # rows the import would reject; they are not checked
    skipped: int = 0  # rows a preset skips
    keys: int = 0  # distinct keys (matched as the key's index matches) among the good rows
    matching: int = 0
    missing: int = 0
    different: int = 0
    compared: list[str] = field(default_factory=list)
    # --missing deactivate|delete: rows in scope the file does not list that are still
    # active (or, for delete, still there), which a completed import would have changed.
    missing_mode: str = "keep"
    stale: int = 0
    stale_examples: list[str] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)
    different_examples: list[Difference] = field(default_factory=list)
    seconds: float = 0.0
    statements: int = 0

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.different == 0 and self.stale == 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def verify_source(
    conn: psycopg.Connection,
    source: Source,
    options: ImportOptions | None = None,
    progress: ProgressCallback | None = None,
    examples: int = EXAMPLES,
) -> VerifyResult:
    """Check that every key in the source is in the table with the values of its last
    occurrence.  Changes nothing.  Raises CsvloadError when the database refuses."""
    started = time.monotonic()
    report = progress or (lambda p: None)
    result = VerifyResult(file=source.name)
    options = options or ImportOptions()
    plan = prepare(conn, source, options, writing=False)
    result.table, result.key = plan.target.display, list(plan.target.key)
    result.compared = [f.column.name for f in plan.fields if f.column.name not in plan.target.key]
    db = Statements(conn)
    # Rejected rows are counted and skipped, never a reason to stop: verify answers about
    # the rows an import would have loaded.
    feed = missing.feed_for(plan, options)
    staging = Staging(
        source, result, options.batch_size, max_errors=2**62, report=report, feed=feed,
        constants=tuple(value for _, value in plan.scope),
    )
    result.missing_mode = options.missing
    try:
        with conn.transaction():
            stage(db, staging)
            db.execute(statements.ANALYZE_STAGE)  # so the join below hashes instead of probing
            report(Progress("comparing", 0, None, result.rows_read))
            query = statements.verify_counts(plan)
            try:
                with conn.transaction():
                    row = db.execute(query, {"examples": examples}).fetchone()
            except fit.FIXABLE:
                # Values that do not fit their columns: the import would reject those
                # rows, so verify counts them as rejected and checks the rest.
                result.rejected += sum(1 for _ in fit.find(db, plan))
                feed.keep_bad(db)
                db.execute(fit.DELETE_BAD)
                row = db.execute(query, {"examples": examples}).fetchone()
            if feed.full and row[0]:
                feed.drop_unusable_keys(db)
                stale = db.execute(
                    statements.count_missing(plan), {"examples": examples}
                ).fetchone()
                result.stale, result.stale_examples = stale[0], list(stale[1])
            raise psycopg.Rollback()
    except psycopg.Error as e:
        raise translate(e, source.name) from e
    finally:
        result.statements = db.count
    result.keys, result.missing, result.different = row[0], row[1], row[2]
    result.matching = result.keys - result.missing - result.different
    result.missing_examples = list(row[3])
    result.different_examples = [Difference(key, list(fields)) for key, fields in row[4]]
    result.seconds = round(time.monotonic() - started, 3)
    report(Progress("done", 0, None, result.rows_read))
    return result
