"""Filling an empty table of the user's: its secondary indexes and outgoing foreign keys
dropped before the rows go in and made again after, the way pg_restore builds them after
the data (one sort per index and one set-based check per foreign key, instead of an index
entry and a trigger call per row).

Only what can be made again exactly is dropped, so that nobody can tell afterwards:
`pg_dump --schema-only --table` prints the same, and so do the comments, the statistics
targets of index columns, the CLUSTER mark, the replica identity and the tablespaces
(tests/load/test_rebuild.py compares all of it).  What changes is internal: the OIDs, and
the names of a foreign key's internal triggers (they carry the constraint's OID).

An index is kept when anything else rests on it or its definition does not say all there
is to it: a unique one (the primary key; a duplicate found by building it would be
another error than the insert's), an index backing a constraint (unique, exclusion) or referenced
by another table's foreign key (both have conindid), the replica identity index, the
clustered one, one in another tablespace, one attached to a partitioned index, one an
extension owns or something else depends on, one not valid or not ready, one with a
security label.  A foreign key is kept when it is inherited (a partition's), references a
partitioned table, or the user may not re-create it (REFERENCES).  Nothing is dropped when
the table is not a plain table the current user owns, or when an event trigger is enabled
(it would see the DDL); nor in a dry run (the loader's choice: its locks would buy nothing).

Locks: dropping an index takes ACCESS EXCLUSIVE on the table (readers of the empty table
wait for the import); dropping a foreign key takes ACCESS EXCLUSIVE on the table it
references too, until the import commits (PostgreSQL 15 and 18: the key's triggers there
go), and re-adding it SHARE ROW EXCLUSIVE.  Each lock is asked for with NOWAIT: when a
session holds the table (or the referenced one) the import does not queue for it, which
would stall every reader behind it, but keeps those indexes or that foreign key and fills
the table through them.

Re-adding a foreign key checks every row in one query; a violation is the same error as
the per-row check's (23503), raised inside the writer's savepoint, so fit.find() makes the
rows rejects as before and the next attempt re-adds the key again.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from csvload.table.binding import Plan

# The table: a plain table (not partitioned, not a partition) the current user owns, and
# no enabled event trigger anywhere.
_ELIGIBLE = """
SELECT c.relkind = 'r' AND NOT c.relispartition AND pg_has_role(c.relowner, 'USAGE')
       AND NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtenabled <> 'D')
FROM pg_class c WHERE c.oid = %s
"""

# Indexes that may be dropped and made again by their definitions (module docstring): name,
# definition, comment, and the columns' statistics targets as (column number, target).
_INDEXES = """
SELECT c.relname, pg_get_indexdef(i.indexrelid), obj_description(c.oid, 'pg_class'),
       ARRAY(SELECT ARRAY[a.attnum::int, a.attstattarget::int] FROM pg_attribute a
             WHERE a.attrelid = c.oid AND coalesce(a.attstattarget, -1) <> -1
             ORDER BY a.attnum)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %(table)s
  AND NOT i.indisunique AND NOT i.indisreplident AND NOT i.indisclustered
  AND i.indisvalid AND i.indisready AND i.indislive AND c.reltablespace = 0
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = c.oid OR h.inhparent = c.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype IN ('e', 'x', 'i', 'P', 'S'))
  AND NOT EXISTS (SELECT 1 FROM pg_seclabel l
                  WHERE l.classoid = 'pg_class'::regclass AND l.objoid = c.oid)
ORDER BY c.relname
"""

# Outgoing foreign keys that may be dropped and added again: name, definition (with
# DEFERRABLE, MATCH, ON DELETE ..., NOT VALID), comment, and the table it references.
_FOREIGN_KEYS = """
SELECT k.conname, pg_get_constraintdef(k.oid), obj_description(k.oid, 'pg_constraint'),
       k.confrelid
FROM pg_constraint k JOIN pg_class r ON r.oid = k.confrelid
WHERE k.conrelid = %(table)s AND k.contype = 'f' AND k.conislocal AND k.coninhcount = 0
  AND k.conparentid = 0 AND r.relkind = 'r'
  AND has_table_privilege(k.confrelid, 'REFERENCES')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.refclassid = 'pg_constraint'::regclass AND d.refobjid = k.oid
                    AND d.deptype <> 'i')
  AND NOT EXISTS (SELECT 1 FROM pg_seclabel l
                  WHERE l.classoid = 'pg_constraint'::regclass AND l.objoid = k.oid)
ORDER BY k.conname
"""


@dataclass(frozen=True)
class Index:
    name: str
    definition: str  # pg_get_indexdef(): CREATE [UNIQUE] INDEX name ON table USING ...
    comment: str | None
    statistics: list[list[int]]  # [column number, statistics target]


@dataclass(frozen=True)
class ForeignKey:
    name: str
    definition: str  # pg_get_constraintdef(): FOREIGN KEY (...) REFERENCES ...
    comment: str | None
    referenced: int  # the referenced table's OID


@dataclass(frozen=True)
class Dropped:
    """What drop() took away, to be made again by restore() once the rows are in."""

    table: sql.Composable
    schema: str
    indexes: tuple[Index, ...]
    foreign_keys: tuple[ForeignKey, ...]

    def restore(self, db) -> None:
        """Add the foreign keys again (each checks every row at once), then build the
        indexes; with their comments and statistics targets."""
        for fk in self.foreign_keys:
            db.execute(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    self.table, sql.Identifier(fk.name), sql.SQL(fk.definition)
                )
            )
            if fk.comment is not None:
                db.execute(
                    sql.SQL("COMMENT ON CONSTRAINT {} ON {} IS {}").format(
                        sql.Identifier(fk.name), self.table, sql.Literal(fk.comment)
                    )
                )
        for index in self.indexes:
            db.execute(sql.SQL(index.definition))
            name = sql.Identifier(self.schema, index.name)
            if index.comment is not None:
                db.execute(
                    sql.SQL("COMMENT ON INDEX {} IS {}").format(name, sql.Literal(index.comment))
                )
            for column, target in index.statistics:
                db.execute(
                    sql.SQL("ALTER INDEX {} ALTER COLUMN {} SET STATISTICS {}").format(
                        name, sql.Literal(column), sql.Literal(target)
                    )
                )


def drop(db, plan: Plan) -> Dropped | None:
    """Drop the secondary indexes and outgoing foreign keys of the empty table that can be
    made again exactly (module docstring); None when there are none, or the table (or
    every referenced table) is in use by another session right now."""
    target = plan.target
    eligible = db.execute(_ELIGIBLE, (target.oid,)).fetchone()
    if not (eligible and eligible[0]):
        return None
    indexes = [Index(*row) for row in db.execute(_INDEXES, {"table": target.oid}).fetchall()]
    fks = [ForeignKey(*row) for row in db.execute(_FOREIGN_KEYS, {"table": target.oid}).fetchall()]
    if not (indexes or fks) or not _lock_now(db, target.oid):
        return None
    fks = [fk for fk in fks if _lock_now(db, fk.referenced)]
    if not (indexes or fks):
        return None
    for fk in fks:
        db.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                target.identifier, sql.Identifier(fk.name)
            )
        )
    schema = db.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = %s",
        (target.oid,),
    ).fetchone()[0]
    for index in indexes:
        db.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, index.name)))
    return Dropped(target.identifier, schema, tuple(indexes), tuple(fks))


def _lock_now(db, oid: int) -> bool:
    """ACCESS EXCLUSIVE on the table `oid` if no other session holds it now; never waits
    (a waiting ACCESS EXCLUSIVE request would hold up every reader queued behind it)."""
    conn: psycopg.Connection = db.cur.connection
    try:
        with conn.transaction():
            db.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE NOWAIT").format(
                    sql.SQL(conn.execute("SELECT %s::regclass::text", (oid,)).fetchone()[0])
                )
            )
    except psycopg.errors.LockNotAvailable:
        return False
    return True
