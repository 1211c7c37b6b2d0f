"""The command line: option parsing, rendering and exit codes, thin over the library."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg

from csvload import __version__, webhook
from csvload import job as import_job
from csvload.cli.dbcommands import db
from csvload.cli.options import (
    FEED_PARAMS,
    INPUT,
    RECORDED,
    REMOTE,
    click_options,
    connect_timeout_option,
    dsn_option,
    fail,
    fields,
    resolve_dsn,
)
from csvload.cli.paramtypes import FiniteFloat, WebhookUrl, seconds
from csvload.cli.render import committed, display_for, summary_line
from csvload.cli.runcommands import runs as runs_command
from csvload.cli.runcommands import stats, status, verify
from csvload.cli.sources import source_options
from csvload.cli.watchcommand import watch_command
from csvload.errors import CsvloadError, ExitStatus, NoTableError, OutputPathError
from csvload.history import runs
from csvload.load.guards import Guards
from csvload.load.loader import ImportOptions, check_outputs
from csvload.read.rejects import default_path
from csvload.read.source import SourceOptions
from csvload.server.database import connect, display_name, translate
from csvload.table import citus, schema
from csvload.table.binding import Binding


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="csvload")
def main():
    """Stream big product CSV files into PostgreSQL."""
    # psycopg logs a warning when the rollback after an interrupted COPY cannot be sent;
    # the server aborts the transaction anyway, and csvload reports the outcome itself.
    # paramiko logs a broken transport as a traceback-like line: csvload words those
    # failures itself, in one redacted line.
    for name in ("psycopg", "paramiko"):
        log = logging.getLogger(name)
        log.addHandler(logging.NullHandler())
        log.propagate = False


@main.command()
@dsn_option
@connect_timeout_option
@click.option(
    "--distributed",
    is_flag=True,
    help="On a Citus coordinator: products distributed by a citext sku over the workers.",
)
@click.option(
    "--shards",
    type=click.IntRange(1, 64000),
    default=None,
    help="With --distributed: the shard count (default: Citus's citus.shard_count).",
)
def init(dsn, connect_timeout, distributed, shards):
    """Create csvload's own products table and its indexes (idempotent)."""
    if shards is not None and not distributed:
        raise click.UsageError("--shards needs --distributed")
    try:
        resolved = resolve_dsn(dsn)
        with connect(resolved, connect_timeout=connect_timeout) as conn:
            if distributed:
                try:
                    citus.create_distributed_products(conn, shards)
                except psycopg.Error as e:
                    raise translate(e, "init --distributed") from e
            elif not _citus_manages_products(conn):
                schema.create_products(conn)
            runs.create_runs_table(conn)
    except CsvloadError as e:
        fail(e)
    click.echo(f"csvload: products is ready in {display_name(resolved)}", err=True)


def _citus_manages_products(conn) -> bool:
    """products exists and Citus manages it (init --distributed made it, say): then init
    leaves it as it is, as for any existing products (its local unique index on
    lower(sku) could not be created there)."""
    try:
        return citus.table_kind(conn, schema.PRODUCTS).citus_plans
    except NoTableError:
        return False


IMPORT_OPTIONS = (
    "dsn", "batch_size", "as_json", "quiet", "max_errors", "rejects_path", "dry_run", *INPUT,
    "connect_timeout", "lock_timeout", "statement_timeout", "webhooks", "webhook_secret",
    "webhook_timeout", "webhook_retries", "webhook_on_dry_run", "defaults", "touch",
    "no_touch", "missing", "active_column", "max_missing", "mode", "update", "keep", "fill",
    "empty", "min_rows", "max_updated", "max_change", "changes_path", *REMOTE, "if_changed",
    "feed", "config_path",
)  # fmt: skip


@main.command("import")
@click.argument("path", required=False)
@click_options(IMPORT_OPTIONS)
@click.pass_context
def import_(ctx, **params):
    """Import a product CSV (PATH, - for stdin, or an https:// or sftp:// URL) into a
    table (default: products)."""
    params = _import_params(ctx, params)
    params["path"] = params["path"] or params.get("source")
    if not params["path"]:
        raise click.UsageError(
            "give PATH (a file, - for stdin, or a URL), or a --feed whose config sets source"
        )
    job = ImportJob.from_params(params)
    # Before anything is read: the flags and the config file's paths alike.
    path = job.source.path
    try:
        check_outputs(job.options, _stdin_descriptor() if path == "-" else path)
    except OutputPathError as e:
        raise click.BadParameter(e.reason, param_hint=e.option) from e
    sys.exit(run_import(job))


def _import_params(ctx: click.Context, params: dict) -> dict:
    """The parameters of an import, the feed's settings merged in; raises UsageError for
    options that contradict each other (import, and watch for each file)."""
    if params["feed"]:
        params = _with_feed(ctx, params)
    elif params["config_path"]:
        raise click.UsageError("--config names the file that --feed reads; give --feed too")
    if params["touch"] and params["no_touch"]:
        raise click.UsageError("--touch and --no-touch contradict each other")
    return params


def _stdin_descriptor() -> int | None:
    """What `-` reads, to compare the outputs with; None when stdin is no file."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _with_feed(ctx: click.Context, params: dict) -> dict:
    """The command's parameters with the feed's settings under them: a flag given on the
    command line (or through its environment variable) wins over the file."""
    explicit = {
        name
        for name in params
        if ctx.get_parameter_source(name)
        in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    }
    from csvload.cli.config import load_feed  # tomllib only for a run with --feed
    from csvload.cli.config import merge as merge_feed

    config_path = Path(params["config_path"]) if params["config_path"] else None
    try:
        feed = load_feed(config_path, params["feed"], Path.cwd())
    except CsvloadError as e:
        fail(e)
    return merge_feed(feed.settings, params, explicit, FEED_PARAMS)


@dataclass(frozen=True)
class ImportJob:
    """Everything the import command was asked to do."""

    source: SourceOptions
    options: ImportOptions
    webhooks: webhook.WebhookOptions
    dsn: str | None
    connect_timeout: float
    as_json: bool
    quiet: bool

    @classmethod
    def from_params(cls, params: dict) -> ImportJob:
        """The job of the import command's parameters, each put where its option's
        definition (options.OPTIONS) says."""
        path = params["path"]
        given = fields(params, IMPORT_OPTIONS)
        options, hooks = given["options"], given["webhooks"]
        changes, rejects = options["changes_path"], options["rejects_path"]
        options["changes_path"] = Path(changes) if changes else None
        options["rejects_path"] = Path(rejects) if rejects else default_path(path, Path.cwd())
        if params["dry_run"] and not params["webhook_on_dry_run"]:
            hooks["urls"] = ()
        hooks["attempts"] = params["webhook_retries"] + 1
        return cls(
            source=source_options(path, given),
            options=ImportOptions(
                **options, binding=Binding(**given["options.binding"]),
                guards=Guards(**given["options.guards"]),
            ),
            webhooks=webhook.WebhookOptions(**hooks),
            **given[""],
        )

    def record(self) -> dict:
        """The options worth keeping in the run history: never the DSN or a secret."""
        return {o.record: o.recorded(o.value_in(self)) for o in RECORDED}


def run_import(job: ImportJob) -> ExitStatus:
    """Run one import through the library (job.run), render its outcome; return the
    exit status.

    A signal (SIGINT, SIGTERM) before the commit rolls the import back.  From the moment
    the import starts to commit it can no longer do that: the signal is noted, the commit
    and the run record finish, no webhook is sent (one already on its way is cut short),
    and the import is reported as the success it is, with exit 4 where a webhook was due.
    """
    with _Signals() as signals:
        request = import_job.ImportRequest(
            job.source, job.options, lambda: resolve_dsn(job.dsn), job.connect_timeout,
            job.webhooks, job.record(),
            stdin=sys.stdin.buffer,
        )  # fmt: skip
        return _report(job, import_job.run(request, signals.hooks(job.quiet)))


def _report(job: ImportJob, outcome: import_job.Outcome) -> ExitStatus:
    """Render the outcome on stdout (--json) and stderr; return the exit status."""
    result, error, deliveries = outcome.result, outcome.error, outcome.deliveries
    if job.as_json:
        summary = result.as_dict()
        if job.webhooks.urls:
            summary["webhooks"] = [d.as_dict() for d in deliveries]
        click.echo(json.dumps(summary))
    if error is not None:
        click.echo(f"Error: {error}", err=True)
        return error.exit_status
    if not job.quiet:
        click.echo(summary_line(result), err=True)
    return committed(result, deliveries)


_SIGNALS = {
    signal.SIGINT: ("interrupted", ExitStatus.INTERRUPTED),
    signal.SIGTERM: ("terminated", ExitStatus.TERMINATED),
}


class _Signals:
    """SIGINT and SIGTERM during one import.  The first one raises job.Stopped while the
    import can still roll back; after hold() (the import is about to commit) it is only
    noted in .received, except inside interrupting(), where it cuts a webhook delivery
    short.  Any later signal is ignored, so a second Ctrl-C during the rollback or while
    the outcome is printed cannot leave a traceback or another exit status.  Handlers stay
    ignoring until the process exits once a signal has arrived."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._raising = True
        self._previous: dict = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handler) for sig in _SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        if self.received is None:
            for sig, old in self._previous.items():
                signal.signal(sig, old)

    def _handler(self, signum, frame) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        name, status = _SIGNALS[signum]
        self.received = name
        if self._raising:
            raise import_job.Stopped(name, status)

    def hooks(self, quiet: bool) -> import_job.Hooks:
        """The hooks of an import steered by these signals, shown on stderr (or not)."""
        return import_job.Hooks(
            warn=lambda text: None if quiet else click.echo(f"Warning: {text}", err=True),
            progress=lambda name: display_for(quiet, name),
            hold=self.hold,
            stopped=lambda: self.received,
            interruptible=self.interrupting,
        )

    def hold(self) -> None:
        """From now on a signal is only noted: the import is committing or committed."""
        self._raising = False

    def arm(self) -> None:
        """A signal raises job.Stopped again: a watcher between two files (watch)."""
        self._raising = True

    @contextlib.contextmanager
    def interrupting(self):
        self._raising = True
        try:
            yield
        finally:
            self._raising = False


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
    type=FiniteFloat(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Fraction of rows repeating an earlier SKU.",
)
@click.option(
    "--rename",
    "rename_fraction",
    type=FiniteFloat(0, 1),
    default=0.0,
    help="Fraction of names changed: a re-import variant of the same SKUs.",
)
def generate(rows, output, seed, duplicates, rename_fraction):
    """Write a realistic product CSV of ROWS rows (name,sku,description)."""
    from csvload.generate import generate as write_rows
    from csvload.generate import generate_file

    options = {"seed": seed, "duplicates": duplicates, "rename_fraction": rename_fraction}
    if output == "-":
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        write_rows(out, rows, **options)
        out.detach()
        return
    try:
        generate_file(output, rows, shown=f"-o {output}", **options)
    except CsvloadError as e:
        fail(e)


main.add_command(db)


@main.group("webhook")
def webhook_group():
    """Check webhook receivers."""


@webhook_group.command("test")
@click.argument("url", type=WebhookUrl())
@click.option(
    "--secret",
    envvar="CSVLOAD_WEBHOOK_SECRET",
    metavar="SECRET",
    help="Sign the event (default: $CSVLOAD_WEBHOOK_SECRET).",
)
@click.option("--timeout", type=seconds(0.1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def webhook_test(url, secret, timeout, as_json):
    """POST a sample event to URL and show the status code and latency."""
    delivery, ms = webhook.send_test(url, secret, timeout)
    if as_json:
        click.echo(json.dumps(delivery.as_dict() | {"latency_ms": round(ms, 1)}))
    outcome = f"HTTP {delivery.last_status_code}" if delivery.ok else delivery.error
    signed = "signed" if secret else "unsigned"
    click.echo(f"{delivery.url}: {delivery.status} ({outcome}) in {ms:.0f} ms, {signed}", err=True)
    sys.exit(ExitStatus.OK if delivery.ok else ExitStatus.WEBHOOK_FAILED)


for _command in (status, runs_command, stats, verify):
    main.add_command(_command)
main.add_command(watch_command(IMPORT_OPTIONS, _import_params, ImportJob, _Signals))

# What is imported by now lives as long as the process.  Moving it out of the cyclic
# collector's sight spares the collections at exit that would walk it: about 25 ms of
# csvload's 0.2 s start-up and exit, measured.
gc.freeze()
