"""The command line: option parsing, rendering and exit codes, thin over the library."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import click
from dotenv import dotenv_values

from csvload import __version__, schema
from csvload.database import connect, describe
from csvload.dbcommands import db
from csvload.errors import CsvloadError, ExitStatus
from csvload.loader import DEFAULT_BATCH_SIZE, ImportOptions, ImportResult, import_source
from csvload.rejects import default_path
from csvload.render import display_for, summary_line
from csvload.source import FIELDS, Source, SourceOptions, normalise_encoding


def setting(name: str) -> str | None:
    """A setting from the environment, else from ./.env; the environment wins."""
    value = os.environ.get(name)
    if value:
        return value
    if os.path.isfile(".env"):
        return dotenv_values(".env").get(name) or None
    return None


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else DATABASE_URL (environment, then .env), else libpq's PG* variables, else
    the managed local server."""
    if dsn:
        return dsn
    url = setting("DATABASE_URL")
    if url:
        return url
    if any(os.environ.get(v) for v in ("PGHOST", "PGDATABASE", "PGSERVICE")):
        return ""  # libpq reads PG* itself
    return _local_server_dsn()


def _local_server_dsn() -> str:
    from csvload.embedded import LocalServer, default_home

    server = LocalServer(default_home(os.environ, os.geteuid() == 0))
    dsn = server.ensure()
    click.echo(f"csvload: using the local database {server.url()}", err=True)
    return dsn


class MapParam(click.ParamType):
    """--map 'Header In File=field'."""

    name = "HEADER=FIELD"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        header, sep, target = value.rpartition("=")
        target = target.strip().lower()
        if not sep or not header.strip():
            self.fail(f"{value!r} is not HEADER=FIELD", param, ctx)
        if target not in FIELDS:
            self.fail(
                f"unknown field {target!r} in {value!r} (fields: {', '.join(FIELDS)})", param, ctx
            )
        return (header, target)


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


def fail(error: CsvloadError, as_json: bool = False, result: ImportResult | None = None):
    """Print the one-line error (and the JSON summary when asked) and exit."""
    if as_json and result is not None:
        result.status = "failed"
        result.error = str(error)
        click.echo(json.dumps(result.as_dict()))
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_status)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="csvload")
def main():
    """Stream big product CSV files into PostgreSQL."""


@main.command()
@dsn_option
@click.option("--connect-timeout", type=click.FloatRange(min=1), default=10, show_default=True)
def init(dsn, connect_timeout):
    """Create the products table and its indexes (idempotent)."""
    try:
        resolved = resolve_dsn(dsn)
        with connect(resolved, connect_timeout=connect_timeout) as conn:
            schema.create_products(conn)
    except CsvloadError as e:
        fail(e)
    click.echo(f"csvload: products is ready in {describe(resolved)}", err=True)


@main.command("import")
@click.argument("path")
@dsn_option
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per COPY chunk.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Rejected rows allowed before the import fails.",
)
@click.option(
    "--rejects",
    "rejects_path",
    type=click.Path(dir_okay=False),
    help="Where to write rejected rows. Default: <input>.rejects.csv.",
)
@click.option("--dry-run", is_flag=True, help="Run everything, then roll back.")
@click.option("--encoding", type=EncodingParam(), default="utf-8", show_default=True)
@click.option(
    "--delimiter", default=",", show_default=True, help="Field delimiter, or 'auto' to sniff it."
)
@click.option(
    "--map",
    "mapping",
    type=MapParam(),
    multiple=True,
    help="Map a header to a field: 'Product Name=name'. Repeatable.",
)
@click.option("--connect-timeout", type=click.FloatRange(min=1), default=10, show_default=True)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for the products lock (default: wait).",
)
@click.option(
    "--statement-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds any one statement may run (default: no limit).",
)
def import_(
    path,
    dsn,
    batch_size,
    as_json,
    quiet,
    max_errors,
    rejects_path,
    dry_run,
    encoding,
    delimiter,
    mapping,
    connect_timeout,
    lock_timeout,
    statement_timeout,
):
    """Import a product CSV (PATH, or - for stdin) into products."""
    if delimiter != "auto" and len(delimiter.encode()) != 1:
        raise click.BadParameter("must be one character, or 'auto'", param_hint="--delimiter")
    source_options = SourceOptions(path, encoding, delimiter, tuple(mapping))
    options = ImportOptions(
        batch_size=batch_size,
        max_errors=max_errors,
        dry_run=dry_run,
        rejects_path=Path(rejects_path) if rejects_path else default_path(path, Path.cwd()),
        lock_timeout=lock_timeout,
        statement_timeout=statement_timeout,
    )
    result = ImportResult(status="failed", file=source_options.path)
    try:
        with Source(source_options, stdin=sys.stdin.buffer) as source:
            if source.ignored and not quiet:
                click.echo(
                    f"Warning: {source.name}: ignoring unknown columns: "
                    f"{', '.join(source.ignored)}",
                    err=True,
                )
            resolved = resolve_dsn(dsn)
            with (
                connect(resolved, connect_timeout=connect_timeout) as conn,
                display_for(quiet, source.name) as display,
            ):
                result = import_source(conn, source, options, display)
    except CsvloadError as e:
        fail(e, as_json, result)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    if not quiet:
        click.echo(summary_line(result), err=True)
    sys.exit(ExitStatus.REJECTED_ROWS if result.rejected else ExitStatus.OK)


@main.command()
@click.argument("rows", type=click.IntRange(min=0))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="Where to write (default: stdout).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--duplicates",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Fraction of rows repeating an earlier SKU.",
)
@click.option(
    "--rename",
    "rename_fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fraction of names changed: a re-import variant of the same SKUs.",
)
def generate(rows, output, seed, duplicates, rename_fraction):
    """Write a realistic product CSV of ROWS rows (name,sku,description)."""
    from csvload.generate import generate as write_rows

    options = {"seed": seed, "duplicates": duplicates, "rename_fraction": rename_fraction}
    if output == "-":
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        write_rows(out, rows, **options)
        out.detach()
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        write_rows(out, rows, **options)


main.add_command(db)
