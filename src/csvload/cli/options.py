"""The click pieces the commands share: where the DSN comes from, the option decorators
and parameter types, and the one-line error exit.  Every command module imports them from
here, so no command module imports another."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click

from csvload.errors import CsvloadError
from csvload.load.missing import parse_limit
from csvload.read.presets import PRESETS
from csvload.read.source import normalise_encoding
from csvload.server.database import check_dsn
from csvload.table.schema import PRODUCTS
from csvload.table.target import parse_key

DOTENV = ".env"


def setting(name: str) -> tuple[str, str] | None:
    """A setting from the environment, else from ./.env (the environment wins), with where
    it came from: the variable's name, or ".env line N: NAME".  Raises ConfigError for a
    .env csvload cannot read (not a file, too big, not UTF-8, a line python-dotenv cannot
    parse)."""
    value = os.environ.get(name)
    if value:
        return value, name
    # A directory named .env is a virtualenv (python -m venv .env), not a dotenv file.
    if os.path.exists(DOTENV) and not os.path.isdir(DOTENV):
        # Imported here: config pulls in tomllib, which a run without .env never needs.
        from csvload.cli.config import dotenv_setting

        found = dotenv_setting(Path(DOTENV), DOTENV, name)
        if found:
            return found[0], f"{DOTENV} line {found[1]}: {name}"
    return None


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else DATABASE_URL (environment, then .env), else libpq's PG* variables, else
    the managed local server.  A DSN libpq cannot parse is a DsnError that names where it
    came from and never quotes it."""
    if dsn:
        check_dsn(dsn, "--dsn")
        return dsn
    url = setting("DATABASE_URL")
    if url:
        check_dsn(*url)
        return url[0]
    if any(os.environ.get(v) for v in ("PGHOST", "PGDATABASE", "PGSERVICE")):
        return ""  # libpq reads PG* itself
    return _local_server_dsn()


def _local_server_dsn() -> str:
    from csvload.server.embedded import LocalServer, default_home

    server = LocalServer(default_home(os.environ, os.geteuid() == 0))
    dsn = server.ensure()
    click.echo(f"csvload: using the local database {server.url()}", err=True)
    return dsn


class MapParam(click.ParamType):
    """--map 'Header In File=column': which table column is checked against the target
    later, where a bad one is a usage error that lists the writable columns."""

    name = "HEADER=COLUMN"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        header, sep, target = value.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            self.fail(f"{value!r} is not HEADER=COLUMN", param, ctx)
        return (header, target.strip())


class AssignmentParam(click.ParamType):
    """--default COLUMN=VALUE, --scope COLUMN=VALUE."""

    name = "COLUMN=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        column, sep, given = value.partition("=")
        if not sep or not column.strip():
            self.fail(f"{value!r} is not COLUMN=VALUE", param, ctx)
        return (column.strip(), given)


class LimitParam(click.ParamType):
    """--max-missing N or P%."""

    name = "N|P%"

    def convert(self, value, param, ctx):
        if isinstance(value, int):  # from a feed's config, already checked
            return value
        try:
            return parse_limit(str(value))
        except CsvloadError as e:
            self.fail(str(e), param, ctx)


class KeyParam(click.ParamType):
    name = "COLUMN[,COLUMN...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_key(value)
        except CsvloadError as e:
            self.fail(str(e), param, ctx)


class EncodingParam(click.ParamType):
    name = "ENCODING"

    def convert(self, value, param, ctx):
        try:
            normalise_encoding(value)
        except CsvloadError as e:
            self.fail(str(e), param, ctx)
        return value


def dsn_option(f):
    return click.option(
        "--dsn",
        metavar="DSN",
        help="PostgreSQL URL or key=value DSN. Default: $DATABASE_URL, .env, PG* variables, "
        "else the managed local server.",
    )(f)


def _check_delimiter(ctx, param, value: str) -> str:
    if value != "auto" and (len(value.encode()) != 1 or value in '"\r\n'):
        raise click.BadParameter(
            "must be one character other than a quote or a line break, or 'auto'"
        )
    return value


def input_options(f):
    """The options that say how to read a CSV and which table it goes to: shared by
    import and verify."""
    for option in (
        click.option(
            "--scope",
            type=AssignmentParam(),
            multiple=True,
            help="Only rows where COLUMN = VALUE, and VALUE written into COLUMN for every row"
            " of the file. Repeatable.",
        ),
        click.option(
            "--preset",
            type=click.Choice(sorted(PRESETS)),
            help="Read a shop's product export as it comes.",
        ),
        click.option(
            "--decimal-comma",
            is_flag=True,
            help="Numbers are written like 1.234,56.",
        ),
        click.option(
            "--map",
            "mapping",
            type=MapParam(),
            multiple=True,
            help="Map a header to a column: 'Product Name=name'. Repeatable.",
        ),
        click.option(
            "--key",
            type=KeyParam(),
            default="sku",
            show_default=True,
            help="The column(s) that identify a row, backed by a unique index: supplier,sku.",
        ),
        click.option(
            "--table",
            default=PRODUCTS,
            show_default=True,
            metavar="[SCHEMA.]TABLE",
            help="The table to load into.",
        ),
        click.option(
            "--delimiter",
            default=",",
            show_default=True,
            callback=_check_delimiter,
            help="Field delimiter, or 'auto' to sniff it.",
        ),
        click.option("--encoding", type=EncodingParam(), default="utf-8", show_default=True),
    ):
        f = option(f)
    return f


class FiniteFloat(click.FloatRange):
    """A FloatRange that refuses inf and nan.  float() reads "inf" and "nan", and a range
    lets them through (nan compares false with every bound, inf passes a range with no
    maximum); they then failed deep inside as an OverflowError or a ValueError."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


# PostgreSQL takes lock_timeout and statement_timeout in milliseconds up to 2^31 - 1: 24
# days.  Every timeout has that ceiling, so none fails later on its size.
MAX_SECONDS = 2_147_483


def seconds(minimum: float) -> FiniteFloat:
    """The type of every option that is a number of seconds."""
    return FiniteFloat(min=minimum, max=MAX_SECONDS)


def connect_timeout_option(f):
    return click.option("--connect-timeout", type=seconds(1), default=10, show_default=True)(f)


def fail(error: CsvloadError):
    """Print the one-line error and exit with its status."""
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_status)
