"""Calling csvload's library the way the CLI does, for tests that look at its results."""

from __future__ import annotations

import psycopg

from csvload.load.loader import ImportOptions, import_source
from csvload.read.source import Source, SourceOptions
from csvload.table.catalog import describe


def import_file(dsn: str, path: str, track_counts: str | None = None, **options):
    """Import through the library and return the result.  track_counts ("on"/"off", a
    superuser's session setting) picks the merge statement: MERGE needs the statistics."""
    with Source(SourceOptions(path)) as source, psycopg.connect(dsn) as conn:
        if track_counts is not None:
            conn.execute("SELECT set_config('track_counts', %s, false)", (track_counts,))
            conn.commit()
        return import_source(conn, source, ImportOptions(**options))


def target_of(dsn: str, table: str, key=("sku",)):
    """The target `table` as describe() reads it from the catalog."""
    with psycopg.connect(dsn) as conn:
        return describe(conn, table, key)
