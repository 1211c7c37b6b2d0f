"""The table an import writes to, as the catalog describes it, and how a file binds to it.

`describe()` reads everything csvload needs to know about a table from the catalog, never
guessing: its columns with their types, nullability, defaults, identity and generated
columns; the unique index that backs the key and how keys match under it; its CHECK
constraints, its bounds when it is a partition, and its foreign keys.  `bind()` then
maps a file's header onto those columns with --map, --default and --touch, and refuses,
before anything is read or written, a binding that cannot work.  The resulting Plan is
the one description of the target that staging, merging, verify and the run history all
follow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from csvload.errors import InputError, MappingError, MissingColumnError, TargetError
from csvload.table.citus import table_kind
from csvload.table.schema import INDEXES, PRODUCTS

MAX_COLUMNS = 1600  # PostgreSQL's MaxHeapAttributeNumber
NOW = "now"  # --default COLUMN=now: the transaction's timestamp

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
    element_category: str  # of the elements, for an array; else the same as category
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


@dataclass(frozen=True)
class Field:
    """A file column bound to a table column."""

    column: Column
    index: int  # 0-based position in the file


@dataclass(frozen=True)
class Plan:
    """A file bound to a target: what each staged column is, and what the merge writes."""

    target: Target
    fields: tuple[Field, ...]  # in table column order
    defaults: tuple[tuple[Column, str], ...] = ()  # --default, for columns new rows need
    touch: Column | None = None
    decimal_comma: bool = False
    ignored: tuple[str, ...] = ()  # headers no column takes
    header: tuple[str, ...] = ()  # the staged columns: the file's, then --scope's
    scope: tuple[tuple[Column, str], ...] = ()  # --scope: a value for every row, and a filter
    active: Column | None = None  # --missing deactivate: the boolean column it sets

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.column.name == name:
                return f
        return None

    @property
    def key_fields(self) -> tuple[Field, ...]:
        by_name = {f.column.name: f for f in self.fields}
        return tuple(by_name[k] for k in self.target.key)

    def default_for(self, column: Column) -> str | None:
        for c, value in self.defaults:
            if c.name == column.name:
                return value
        return None


# -- reading the catalog ---------------------------------------------------------------------

_RELATION = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relhasrules,
       quote_ident(n.nspname), quote_ident(c.relname), c.relispartition
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(e.typname, t.typname), t.typcategory, coalesce(e.typcategory, t.typcategory),
       a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text,
       a.attgenerated <> '', a.atttypmod, coalesce(e.oid, t.oid),
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
    (name, type_, type_name, category, element_category, not_null, default, identity,
     generated, typmod, _type_oid, labels, quoted, collation, ordered) = row  # fmt: skip
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
        element_category=element_category,
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


_EXACTLY = "write the column exactly as it is spelt"


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
    found = resolve(name, list(by_name), f"{option} {name}", _EXACTLY)
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


# -- binding a file to the target ------------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """How to bind a file to a target: --map, --default, --touch, --decimal-comma."""

    mapping: tuple[tuple[str, str], ...] = ()  # (header as in the file, column)
    defaults: tuple[tuple[str, str], ...] = ()  # (column, value or NOW)
    touch: str | None = None  # a column; None: updated_at when there is one
    no_touch: bool = False
    decimal_comma: bool = False
    scope: tuple[tuple[str, str], ...] = ()  # (column, value) for every row, and a filter


def bind(
    target: Target,
    header: Sequence[str],
    binding: Binding,
    where: str,
    writing: bool = True,
    filled: Sequence[str] = (),
) -> Plan:
    """Map the header onto the target's columns.  Raises MappingError (exit 2) for an
    option that names a column it cannot, MissingColumnError for a key column the file
    lacks, and TargetError for a column new rows need that nothing fills."""
    by_name = {c.name: c for c in target.columns}
    names = list(by_name)
    writable = [c.name for c in target.columns if c.writable]

    def writable_column(name: str, option: str) -> Column:
        found = resolve(name, names, option, _EXACTLY)
        column = by_name.get(found) if found is not None else None
        if column is None or not column.writable:
            why = "has no such column" if column is None else (
                "cannot write its generated column" if column.generated
                else "cannot write its GENERATED ALWAYS identity column"
            )
            raise MappingError(
                f"{option}: {target.display} {why} {name!r} (writable columns: "
                f"{', '.join(writable)})"
            )
        return column

    # Headers as the file spells them, BOM and padding aside: matched like column names,
    # exactly first.
    spelt = [name.strip().lstrip("\ufeff") for name in header]
    renames: dict[int, str] = {}
    for header_name, column_name in binding.mapping:
        option = f"--map {header_name}={column_name}"
        column = writable_column(column_name, option)
        found = resolve(header_name.strip(), spelt, option, "write the header exactly")
        if found is not None:
            renames[spelt.index(found)] = column.name
    seen: dict[str, int] = {}
    ignored = []
    for i, name in enumerate(header):
        target_name = renames.get(i)
        if target_name is None:
            found = resolve(
                spelt[i], names, where,
                f"rename the header as the column is spelt, or --map {spelt[i]}=COLUMN",
            )
            column = by_name[found] if found is not None else None
            target_name = column.name if column is not None and column.writable else None
        if target_name is None:
            ignored.append(name)
            continue
        if target_name in seen:
            raise MappingError(
                f"{where}: columns {header[seen[target_name]]!r} and {name!r} both map to "
                f"{target_name} (rename one, or --map it to another column)"
            )
        seen[target_name] = i
    scope = []
    header = list(header)
    for column_name, given in binding.scope:
        column = writable_column(column_name, f"--scope {column_name}={given}")
        if column.name in seen:
            raise MappingError(
                f"--scope {column_name}={given}: the file has a {column.name} column too;"
                " --scope sets it for every row (drop one of them)"
            )
        seen[column.name] = len(header)
        header.append(column.name)
        scope.append((column, given))
    if len(header) >= MAX_COLUMNS:
        # The stage holds every column as text, and its ord besides; past PostgreSQL's
        # limit its CREATE failed with "tables can have at most 1600 columns", no line.
        raise InputError(
            f"{where}: {len(header)} columns; PostgreSQL tables hold at most {MAX_COLUMNS}"
            f" (csvload stages at most {MAX_COLUMNS - 1})"
        )
    for k in target.key:
        if k not in seen:
            found = ", ".join(repr(h) for h in header[:8])
            raise MissingColumnError(
                f"{where}: no {k} column in the header (found {found}; "
                f"use --map 'Your Column={k}')"
            )
    defaults = tuple(
        (writable_column(column, f"--default {column}={value}"), value)
        for column, value in binding.defaults
    )
    touch = None
    if binding.touch is not None and not binding.no_touch:
        touch = writable_column(binding.touch, f"--touch {binding.touch}")
        if touch.name in seen:
            raise MappingError(
                f"--touch {touch.name}: the file has that column too; touch a column the"
                " file does not supply"
            )
    elif not binding.no_touch:
        updated_at = by_name.get("updated_at")
        if (
            updated_at is not None
            and updated_at.writable
            and updated_at.type_name in ("timestamptz", "timestamp")
            and "updated_at" not in seen
        ):
            touch = updated_at
    if touch is not None and touch.type_name not in ("timestamptz", "timestamp", "date"):
        raise MappingError(
            f"--touch {touch.name}: {target.display}.{touch.name} is {touch.type}, not a"
            " timestamp"
        )
    if writing:  # verify reads the table and the file, and inserts nothing
        _check_new_rows_filled(target, seen, defaults, touch, filled)
    fields = tuple(Field(by_name[name], seen[name]) for name in by_name if name in seen)
    return Plan(
        target=target,
        fields=fields,
        defaults=defaults,
        touch=touch,
        decimal_comma=binding.decimal_comma,
        ignored=tuple(ignored),
        header=tuple(header),
        scope=tuple(scope),
    )


def _check_new_rows_filled(
    target: Target, seen, defaults, touch: Column | None, filled: Sequence[str]
) -> None:
    names = [c.name for c in target.columns]
    given = {c.name for c, _ in defaults} | {
        resolve(f, names, f"--active-column {f}", _EXACTLY) for f in filled
    }
    for c in target.columns:
        if not c.not_null or c.default is not None or c.identity or c.generated:
            continue
        touched = touch is not None and touch.name == c.name
        if c.name in seen or c.name in given or touched:
            continue
        hint = "now" if c.type_name in ("timestamptz", "timestamp", "date") else "VALUE"
        raise TargetError(
            f"{target.name}.{c.name} is NOT NULL and has no default; add --default "
            f"{c.name}={hint}"
        )
