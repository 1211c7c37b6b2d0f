"""The target table as the catalog describes it: describe() reads its columns with their
types, nullability, defaults, identity and generated columns; the unique index that backs
the key and how keys match under it; its CHECK constraints, its bounds when it is a
partition, and its foreign keys.  It never guesses.  resolve() matches the names a user
writes against the names the catalog spells.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from csvload.errors import MappingError, TargetError
from csvload.table.citus import table_kind
from csvload.table.schema import INDEXES, PRODUCTS

# How the values of one key column match, decided by the unique index behind the key.
LOWER = "lower"  # a unique index on lower(col): case-insensitive
CITEXT = "citext"  # a citext column: its = is case-insensitive
EXACT = "exact"  # a plain unique index or constraint on col


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(): 'integer', 'numeric(10,2)', 'character varying(255)'
    type_name: str  # pg_type.typname of the column (of its elements for an array)
    category: str  # pg_type.typcategory of the column: 'S' string, 'N' numeric, 'A' array...
    not_null: bool
    default: str | None  # pg_get_expr() of the column default, trusted catalog text
    identity: str  # '' none, 'a' ALWAYS, 'd' BY DEFAULT
    generated: bool
    length: int | None  # n of varchar(n)/char(n)
    scale: int | None  # s of numeric(p,s)
    labels: tuple[str, ...] = ()  # an enum's labels
    quoted: str = ""  # quote_ident() of the name, as SQL text (and index definitions) spell it
    # The column's collation, qualified and quoted, when it is nondeterministic (an ICU
    # collation that ignores case): keys must be grouped by its equality, not byte order.
    collation: str | None = None
    # Whether the type (of the elements, for an array) has a default btree operator class,
    # so = and IS DISTINCT FROM mean equality: point, xml, json, box... do not (box's =
    # compares areas), and a re-import compares their text instead.
    ordered: bool = True

    @property
    def is_text(self) -> bool:
        """Text-like (text, varchar, char, citext, name): an empty field stays ''."""
        return self.category == "S"

    @property
    def writable(self) -> bool:
        return not self.generated and self.identity != "a"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.name)


@dataclass(frozen=True)
class Check:
    name: str
    expression: str  # pg_get_expr() of the constraint, trusted catalog text
    columns: tuple[str, ...]


@dataclass(frozen=True)
class PartitionBound:
    """The bound of a partition the target is (or lies within): a row outside it fails
    with "violates partition constraint", checked like a CHECK constraint (fit.find)."""

    name: str  # the partition: the target, or an ancestor of a sub-partitioned target
    expression: str  # pg_get_partition_constraintdef(): its ancestors' bounds included
    columns: tuple[str, ...]  # every column the expression reads
    bound: str  # pg_get_expr() of relpartbound: "FOR VALUES IN ('eu')", "DEFAULT"
    parent: str  # the partitioned table it is a partition of
    keys: tuple[str, ...]  # the columns the parent partitions by


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    table: str  # the referenced table, as regclass text
    table_identifier: sql.Composable
    referenced: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """One table, as the catalog describes it."""

    schema: str
    name: str
    display: str  # as the user named it: 'catalog_product', 'shop.catalog_product'
    oid: int
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    matches: tuple[str, ...]  # LOWER, CITEXT or EXACT per key column
    key_index: str
    checks: tuple[Check, ...] = ()
    # A partition's bounds, the outermost first (a sub-partitioned target's ancestors'
    # bounds, then its own): inserting into a partition directly checks them all.
    bounds: tuple[PartitionBound, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    own: bool = False  # csvload's own products, exactly as `csvload init` made it
    deferrable: bool = False  # has DEFERRABLE constraints (Django's foreign keys are)
    # Has triggers of its own: they may write the table too, or suppress a row (a BEFORE
    # trigger returning NULL), so the table statistics no longer count the merge's writes.
    triggers: bool = False
    # How Citus stores it (csvload.table.citus.Kind): 'local' for a plain PostgreSQL table.
    citus_kind: str = "local"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def column(self, name: str) -> Column:
        return self._by_name[name]

    @property
    def _by_name(self) -> dict[str, Column]:
        return {c.name: c for c in self.columns}

    def writable(self) -> list[str]:
        return [c.name for c in self.columns if c.writable]

    @property
    def case_insensitive(self) -> bool:
        return any(m != EXACT for m in self.matches)


# -- reading the catalog ---------------------------------------------------------------------

_RELATION = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relhasrules,
       quote_ident(n.nspname), quote_ident(c.relname), c.relispartition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(e.typname, t.typname), t.typcategory,
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text,
       a.attgenerated <> '', a.atttypmod,
       ARRAY(SELECT enumlabel::text FROM pg_enum
             WHERE enumtypid = coalesce(e.oid, t.oid) ORDER BY enumsortorder),
       quote_ident(a.attname),
       (SELECT format('%%I.%%I', cn.nspname, co.collname) FROM pg_collation co
        JOIN pg_namespace cn ON cn.oid = co.collnamespace
        WHERE co.oid = a.attcollation AND NOT co.collisdeterministic),
       EXISTS (SELECT 1 FROM pg_type b
               JOIN pg_opclass oc ON oc.opcdefault
               JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'
               WHERE b.oid = CASE WHEN bt.typtype = 'd' THEN bt.typbasetype ELSE bt.oid END
                 AND (oc.opcintype = b.oid
                      OR oc.opcintype = CASE b.typtype WHEN 'e' THEN 'anyenum'::regtype
                                         WHEN 'r' THEN 'anyrange'::regtype
                                         WHEN 'c' THEN 'record'::regtype END
                      OR EXISTS (SELECT 1 FROM pg_cast pc WHERE pc.castsource = b.oid
                                 AND pc.casttarget = oc.opcintype AND pc.castmethod = 'b'
                                 AND pc.castcontext = 'i')))
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
JOIN pg_type bt ON bt.oid = coalesce(e.oid, t.oid)
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Unique, valid, non-partial indexes: each one's name and its key columns as
# pg_get_indexdef() prints them ('sku', 'lower(sku)', 'lower((sku)::text)').
_UNIQUE_INDEXES = """
SELECT ic.relname,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
             FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
       i.indisprimary
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %s AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
ORDER BY i.indisprimary DESC, ic.relname
"""

_CHECKS = """
SELECT c.conname, pg_get_expr(c.conbin, c.conrelid),
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) k
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k)
FROM pg_constraint c WHERE c.conrelid = %s AND c.contype = 'c' ORDER BY c.conname
"""

# The partition and each partition above it, the outermost first: its name, its partition
# constraint, its bound, its parent, and the columns its parent partitions by.  Those come
# from pg_depend: a partition key's columns, plain or within an expression like lower(b),
# depend internally on the partitioned table itself (there is no key object to depend on).
_PARTITION_BOUNDS = """
SELECT c.relname, pg_get_partition_constraintdef(c.oid), pg_get_expr(c.relpartbound, c.oid),
       p.relname,
       ARRAY(SELECT a.attname::text FROM pg_depend d
             JOIN pg_attribute a ON a.attrelid = d.objid AND a.attnum = d.objsubid
             WHERE d.classid = 'pg_class'::regclass AND d.objid = i.inhparent
               AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.inhparent
               AND d.refobjsubid = 0 AND d.deptype = 'i' AND d.objsubid > 0
             ORDER BY a.attnum)
FROM pg_partition_ancestors(%s) WITH ORDINALITY l(relid, depth)
JOIN pg_class c ON c.oid = l.relid
JOIN pg_inherits i ON i.inhrelid = c.oid
JOIN pg_class p ON p.oid = i.inhparent
WHERE c.relispartition
ORDER BY l.depth DESC
"""

_FOREIGN_KEYS = """
SELECT c.conname,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
       c.confrelid::regclass::text, rn.nspname, r.relname,
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint c
JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.conrelid = %s AND c.contype = 'f' ORDER BY c.conname
"""

_INDEX_NAMES = "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid" \
    " WHERE i.indrelid = %s"

_REFUSED_KINDS = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "p": "a partitioned table",
    "S": "a sequence",
    "i": "an index",
    "I": "an index",
    "c": "a composite type",
    "t": "a TOAST table",
}


def parse_key(text: str) -> tuple[str, ...]:
    """--key 'supplier,sku' -> ('supplier', 'sku')."""
    key = tuple(part.strip() for part in text.split(","))
    if not key or any(not part for part in key):
        raise MappingError(f"--key {text!r}: give column names separated by commas")
    if len(set(key)) != len(key):
        raise MappingError(f"--key {text!r}: a column is named twice")
    return key


def describe(conn: psycopg.Connection, table: str, key: Sequence[str]) -> Target:
    """Read `table`'s definition, and the unique index that backs `key`.  Raises
    TargetError with one line when the table cannot be a target."""
    oid, schema, name, quoted_schema, quoted_name, partition = _relation(conn, table)
    columns = _columns(conn, oid)
    by_name = {c.name: c for c in columns}
    key = tuple(_resolve_name(k, by_name, table, "--key") for k in key)
    stored = table_kind(conn, table)
    distribution = stored.distribution_column
    if stored.is_distributed and distribution is not None and distribution not in key:
        # Citus allows no unique index without the distribution column, so the key
        # could never be backed by one.
        raise TargetError(
            f"{table}: is distributed by {distribution}, and the key ({', '.join(key)})"
            " does not include it; Citus can only match rows by a key that does"
            f" (use a --key that includes {distribution})"
        )
    indexes = conn.execute(_UNIQUE_INDEXES, (oid,)).fetchall()
    found = _key_index(indexes, key, by_name)
    if found is None:
        # The hint is SQL to paste: every name quoted as SQL needs it ("order", "SKU").
        relation = quoted_name if "." not in table else f"{quoted_schema}.{quoted_name}"
        columns_sql = ", ".join(by_name[k].quoted for k in key)
        raise TargetError(
            f"{table}: no unique index or constraint on ({', '.join(key)}), so rows cannot be"
            f" matched by that key (create one: CREATE UNIQUE INDEX ON {relation}"
            f" ({columns_sql}))"
        )
    index_name, matches = found
    checks = tuple(
        Check(n, expr, tuple(cols)) for n, expr, cols in conn.execute(_CHECKS, (oid,)).fetchall()
    )
    bounds = _partition_bounds(conn, oid) if partition else ()
    foreign_keys = tuple(
        ForeignKey(n, tuple(cols), reg, sql.Identifier(rs, rt), tuple(refs))
        for n, cols, reg, rs, rt, refs in conn.execute(_FOREIGN_KEYS, (oid,)).fetchall()
    )
    index_names = {r[0] for r in conn.execute(_INDEX_NAMES, (oid,)).fetchall()}
    deferrable, triggers = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = %s AND condeferrable),"
        " EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal"
        " AND tgenabled <> 'D')",
        (oid, oid),
    ).fetchone()
    return Target(
        schema=schema,
        name=name,
        display=table,
        oid=oid,
        columns=columns,
        key=key,
        matches=matches,
        key_index=index_name,
        checks=checks,
        bounds=bounds,
        foreign_keys=foreign_keys,
        # Never on a table Citus manages: dropping and rebuilding its indexes would be
        # DDL on every shard, and a distributed key is its primary key.
        own=_is_own_products(conn, oid, name, columns, index_names)
        and stored.kind.value == "local",
        deferrable=deferrable,
        triggers=triggers,
        citus_kind=stored.kind.value,
    )


def _relation(conn: psycopg.Connection, table: str) -> tuple:
    """(oid, schema, name, quoted schema, quoted name, is a partition) of a table that
    can be a target; TargetError for a relation that cannot."""
    row = conn.execute(_RELATION, (table,)).fetchone()
    if row is None:
        hint = "run 'csvload init' first" if table == PRODUCTS else "create it first"
        raise TargetError(f"{table}: the table does not exist ({hint})")
    oid, schema, name, kind, has_rules, quoted_schema, quoted_name, partition = row
    if kind in _REFUSED_KINDS:
        raise TargetError(
            f"{table}: is {_REFUSED_KINDS[kind]}; csvload loads only into a plain table"
            + (" (load into one of its partitions)" if kind == "p" else "")
        )
    if has_rules:
        raise TargetError(
            f"{table}: has rewrite rules, which MERGE and COPY-based merging cannot honour;"
            " csvload refuses tables with rules"
        )
    return oid, schema, name, quoted_schema, quoted_name, partition


def _partition_bounds(conn: psycopg.Connection, oid: int) -> tuple[PartitionBound, ...]:
    bounds = []
    read: tuple[str, ...] = ()  # a partition's constraint repeats its ancestors' bounds
    for name, expression, bound, parent, keys in conn.execute(_PARTITION_BOUNDS, (oid,)):
        read += tuple(k for k in keys if k not in read)
        if expression is not None:  # NULL: the parent's only partition, a DEFAULT one
            bounds.append(PartitionBound(name, expression, read, bound, parent, tuple(keys)))
    return tuple(bounds)


def _columns(conn: psycopg.Connection, oid: int) -> tuple[Column, ...]:
    return tuple(_column(r) for r in conn.execute(_COLUMNS, (oid,)).fetchall())


def describe_columns(conn: psycopg.Connection, oid: int) -> tuple[str, str, tuple[Column, ...]]:
    """(schema, name, columns) of a relation: for readers that need no key."""
    row = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE c.oid = %s",
        (oid,),
    ).fetchone()
    assert row is not None
    return row[0], row[1], _columns(conn, oid)


def _column(row) -> Column:
    (name, type_, type_name, category, not_null, default, identity, generated, typmod,
     labels, quoted, collation, ordered) = row  # fmt: skip
    length = scale = None
    if type_name in ("varchar", "bpchar") and typmod > 4:
        length = typmod - 4
    elif type_name == "numeric" and typmod > 4:
        scale = (typmod - 4) & 0xFFFF
    return Column(
        name=name,
        type=type_,
        type_name=type_name,
        category=category,
        not_null=not_null,
        default=default,
        identity=identity or "",
        generated=bool(generated),
        length=length,
        scale=scale,
        labels=tuple(labels),
        quoted=quoted,
        collation=collation,
        ordered=ordered,
    )


EXACTLY = "write the column exactly as it is spelt"  # the hint when a name is ambiguous


def resolve(name: str, names: Sequence[str], what: str, hint: str) -> str | None:
    """The one of `names` that `name` means: the one spelt exactly so, else the only one
    equal to it ignoring case; None when there is none.  Every name the user writes
    (headers, --key, --map, --default, --touch, --scope, --active-column) is matched here,
    so a table with both name and "Name" binds the header name to name, never to "Name";
    and a name two of `names` match ignoring case, with none exact, is a MappingError."""
    if name in names:
        return name
    folded = name.casefold()
    found = list(dict.fromkeys(n for n in names if n.casefold() == folded))
    if len(found) > 1:
        raise MappingError(
            f"{what}: {name!r} matches {' and '.join(quote_ident(n) for n in found)}"
            f" ignoring case ({hint})"
        )
    return found[0] if found else None


def _resolve_name(name: str, by_name: Mapping[str, Column], table: str, option: str) -> str:
    """A column name as the user wrote it: exact first, else case-insensitively."""
    found = resolve(name, list(by_name), f"{option} {name}", EXACTLY)
    if found is not None:
        return found
    raise MappingError(
        f"{option} {name!r}: {table} has no such column (columns: {', '.join(by_name)})"
    )


def _key_index(indexes, key: tuple[str, ...], by_name: Mapping[str, Column]):
    """The first unique index whose columns are exactly the key's, each either the column
    itself or lower(column); and how each key column then matches."""
    quoted = {c.quoted: c.name for c in by_name.values()}
    for name, definitions, _primary in indexes:
        matched: dict[str, str] = {}
        for definition in definitions:
            column, lowered = _index_column(definition, quoted)
            if column is None or column in matched:
                break
            if lowered:
                matched[column] = LOWER
            elif by_name[column].type_name == "citext":
                matched[column] = CITEXT
            else:
                matched[column] = EXACT
        else:
            if set(matched) == set(key):
                return name, tuple(matched[k] for k in key)
    return None


_LOWER = re.compile(r"^lower\(\(?(.+?)\)?(?:::[a-z ]+)?\)$")


def _index_column(definition: str, quoted: Mapping[str, str]) -> tuple[str | None, bool]:
    if definition in quoted:
        return quoted[definition], False
    m = _LOWER.match(definition)
    if m and m.group(1) in quoted:
        return quoted[m.group(1)], True
    return None, False


_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


def quote_ident(name: str) -> str:
    """As PostgreSQL's quote_ident() prints a name, keywords aside: for messages written
    without the server (the catalog's quote_ident() is in Column.quoted)."""
    return name if _PLAIN.match(name) else '"' + name.replace('"', '""') + '"'


_OWN_COLUMNS = ("id", "sku", "name", "description", "active", "created_at", "updated_at")


def _is_own_products(conn, oid: int, name: str, columns, index_names: set[str]) -> bool:
    """csvload's own products exactly as `csvload init` creates it: the loader may then
    drop and rebuild its indexes (by their known definitions) when filling it empty.

    Only when the bare name products finds this very table: that DDL (schema.py) names
    products unqualified, so for --table shop.products it hit the search_path's products,
    or failed with 'relation "products" does not exist' when there was none."""
    own_indexes = {i.name for i in INDEXES} | {f"{PRODUCTS}_pkey"}
    return (
        name == PRODUCTS
        and tuple(c.name for c in columns) == _OWN_COLUMNS
        and index_names == own_indexes
        and conn.execute("SELECT to_regclass(%s) = %s", (PRODUCTS, oid)).fetchone()[0] is True
    )
