"""What the server and the target table can do, read once per import: the server version's
features, Citus, triggers, whether the table is empty.  load.writers picks the writer from
these; fit and the full feed ask Server which checks the server offers."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from csvload.load import statements
from csvload.table.binding import Plan


@dataclass(frozen=True)
class Server:
    """The server's features, by its version (every version test of load/ is here)."""

    version: int

    @classmethod
    def of(cls, conn: psycopg.Connection) -> Server:
        return cls(conn.info.server_version)

    @property
    def connection_check(self) -> bool:
        """client_connection_check_interval (PostgreSQL 14)."""
        return self.version >= 140000

    @property
    def merge(self) -> bool:
        """MERGE (PostgreSQL 15)."""
        return self.version >= 150000

    @property
    def input_error_info(self) -> bool:
        """pg_input_is_valid() and pg_input_error_info() (PostgreSQL 16)."""
        return self.version >= 160000

    @property
    def merge_by_source(self) -> bool:
        """MERGE ... WHEN NOT MATCHED BY SOURCE, and RETURNING (PostgreSQL 17)."""
        return self.version >= 170000

    @property
    def merge_returning_old(self) -> bool:
        """MERGE ... RETURNING old and new (PostgreSQL 18)."""
        return self.version >= 180000


@dataclass(frozen=True)
class Capabilities:
    """The server and the target table, as the choice of writer needs them."""

    server: Server
    citus: bool  # Citus manages the table (distributed or reference)
    triggers: bool  # the table has triggers, which may write or suppress rows themselves
    empty: bool

    @classmethod
    def read(cls, db, plan: Plan) -> Capabilities:
        """One statement: whether the table is empty."""
        empty = db.execute(statements.is_empty(plan)).fetchone()[0]
        return cls(
            Server.of(db.cur.connection),
            citus=plan.target.citus_kind != "local",
            triggers=bool(plan.target.triggers),
            empty=empty,
        )

    def statistics_count(self, track_counts: bool) -> bool:
        """Whether the transaction's table statistics count exactly what the merge writes:
        not when they are off (track_counts), nor when a trigger may write the table
        itself (an AFTER INSERT trigger updating its own row counts as an update) or keep
        a row from being written."""
        return track_counts and not self.triggers
