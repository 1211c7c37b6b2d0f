"""The target of an import: the table as the catalog describes it (catalog.py) and a file
bound to it (binding.py).  The names are re-exported here for their importers."""

from csvload.table.binding import MAX_COLUMNS, NOW, Binding, Field, Plan, bind
from csvload.table.catalog import (
    CITEXT,
    EXACT,
    LOWER,
    Check,
    Column,
    ForeignKey,
    PartitionBound,
    Target,
    describe,
    describe_columns,
    parse_key,
    quote_ident,
    resolve,
)

__all__ = [
    "CITEXT", "EXACT", "LOWER", "MAX_COLUMNS", "NOW", "Binding", "Check", "Column", "Field",
    "ForeignKey", "PartitionBound", "Plan", "Target", "bind", "describe", "describe_columns",
    "parse_key", "quote_ident", "resolve",
]  # fmt: skip
