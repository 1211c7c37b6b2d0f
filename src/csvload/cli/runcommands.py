"""`csvload status`, `runs`, `stats` and `verify`: reading the run history and the table."""

from __future__ import annotations

import json
import sys
import time
from types import SimpleNamespace

import click

from csvload.cli.options import (
    INPUT,
    REMOTE,
    click_options,
    connect_timeout_option,
    dsn_option,
    fail,
    fields,
    resolve_dsn,
)
from csvload.cli.render import display_for, mb
from csvload.cli.sources import source_options
from csvload.errors import CsvloadError, ExitStatus
from csvload.history.runs import HEARTBEAT_INTERVAL, RunInfo, latest_run, list_runs
from csvload.history.undone import KEEP, prune, undo_state
from csvload.load.loader import ImportOptions
from csvload.load.result import OPTIONAL_COUNTS
from csvload.read.inputs import open_input
from csvload.server.database import connect, display_name
from csvload.table.binding import Binding
from csvload.table.schema import PRODUCTS

_DONE_OK = ("running", "succeeded", "dry_run", "unchanged_feed")


def _connect(dsn: str | None, connect_timeout: float):
    return connect(resolve_dsn(dsn), connect_timeout=connect_timeout, autocommit=True)


# -- status --------------------------------------------------------------------------------


@click.command()
@click.argument("run_id", required=False)
@dsn_option
@click.option("--watch", is_flag=True, help="Refresh until the run ends (Ctrl-C stops).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON on stdout (one line per refresh)."
)
@connect_timeout_option
def status(run_id, dsn, watch, as_json, connect_timeout):
    """Show the current import, else the latest one (or RUN_ID, or a prefix of it):
    phase, bytes and rows, rate and ETA.

    Exits 0 when the run is running or ended well, 1 when it failed or was interrupted.
    """
    try:
        with _connect(dsn, connect_timeout) as conn:
            info = latest_run(conn, run_id)
            if info is None:
                fail(CsvloadError(f"no import recorded in {display_name(conn.info.dsn)} yet"))
            if watch:
                info = _watch(conn, info, as_json)
    except CsvloadError as e:
        fail(e)
    if not watch:
        if as_json:
            click.echo(json.dumps(info.as_dict()))
        else:
            click.echo("\n".join(describe_run(info)), err=True)
    sys.exit(ExitStatus.OK if info.status in _DONE_OK else ExitStatus.FAILED)


def _watch(conn, info: RunInfo, as_json: bool) -> RunInfo:
    """Re-read the run every heartbeat until it ends.  Ctrl-C exits 0 without a word."""
    stream = sys.stderr
    try:
        if not as_json and stream.isatty():
            return _watch_live(conn, info, stream)
        last = None
        while True:
            key = (info.status, info.phase, info.rows_done, info.bytes_done)
            if key != last:
                last = key
                if as_json:
                    click.echo(json.dumps(info.as_dict()))
                else:
                    click.echo(one_line(info), err=True)
            if info.status != "running":
                return info
            time.sleep(HEARTBEAT_INTERVAL)
            info = latest_run(conn, info.run_id)
    except KeyboardInterrupt:
        sys.exit(ExitStatus.OK)


def _watch_live(conn, info: RunInfo, stream) -> RunInfo:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    with Live(Text("\n".join(describe_run(info))), console=Console(file=stream)) as live:
        while info.status == "running":
            time.sleep(HEARTBEAT_INTERVAL)
            info = latest_run(conn, info.run_id)
            live.update(Text("\n".join(describe_run(info))))
    return info


def describe_run(r: RunInfo) -> list[str]:
    """The run for a person, a few lines."""
    lines = [f"run {r.run_id}  {r.file}  {r.status.upper()}"]
    if r.table:
        lines.append(f"  table     {r.table} (key {', '.join(r.key or [])})")
    progress = f"{mb(r.bytes_done)}" + (f" of {mb(r.bytes_total)}" if r.bytes_total else "")
    if r.percent is not None:
        progress += f" ({r.percent:.0f}%)"
    lines.append(f"  phase     {r.phase}, {progress}")
    rows = r.rows_read if r.rows_read is not None else r.rows_done
    lines.append(f"  rows      {rows:,} ({r.rows_per_second:,.0f} rows/s)")
    if r.status == "running":
        eta = f"{r.eta_seconds:,.0f} s to read the rest" if r.eta_seconds is not None else "-"
        lines.append(f"  eta       {eta}")
    if r.inserted is not None:
        lines.append(
            f"  ledger    {r.inserted:,} inserted, {r.updated:,} updated, "
            f"{r.unchanged:,} unchanged, {r.duplicates:,} duplicates, {r.rejected:,} rejected"
            + "".join(
                f", {getattr(r, k):,} {k}"
                for k in OPTIONAL_COUNTS
                if getattr(r, k)
            )
        )
    lines.append(
        f"  started   {_when(r.started_at)}, {r.elapsed_seconds:,.1f} s"
        f"{' so far' if r.status == 'running' else ''}, on {r.host} pid {r.pid}"
    )
    if r.status == "running" and r.heartbeat_age_seconds > 3 * HEARTBEAT_INTERVAL:
        lines.append(f"  heartbeat {r.heartbeat_age_seconds:.0f} s ago")
    if r.error:
        lines.append(f"  error     {r.error}")
    return lines


def one_line(r: RunInfo) -> str:
    rows = r.rows_read if r.rows_read is not None else r.rows_done
    pct = f" ({r.percent:.0f}%)" if r.percent is not None and r.status == "running" else ""
    eta = f", ETA {r.eta_seconds:,.0f} s" if r.eta_seconds is not None else ""
    return (
        f"{r.run_id[:8]} {r.file}: {r.status}, {r.phase}{pct}, {rows:,} rows, "
        f"{r.rows_per_second:,.0f} rows/s{eta}"
    )


# -- runs ------------------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@dsn_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array on stdout.")
@connect_timeout_option
@click.pass_context
def runs(ctx, dsn, limit, as_json, connect_timeout):
    """The import history, newest first: one row per run on stdout, with whether `csvload
    undo` can take it back and the size of its record."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        with _connect(dsn, connect_timeout) as conn:
            found = list_runs(conn, limit)
            undo = undo_state(conn, [r.run_id for r in found])
    except CsvloadError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps([r.as_dict() | _undo_fields(r, undo) for r in found]))
        return
    if not found:
        click.echo("csvload: no import recorded yet", err=True)
        return
    click.echo(
        f"{'RUN ID':<36}  {'STARTED':<19}  {'STATUS':<11}  {'ROWS':>11}  SECONDS  UNDO"
        "               TABLE  FILE",
        err=True,
    )
    for r in found:
        rows = r.rows_read if r.rows_read is not None else r.rows_done
        click.echo(
            f"{r.run_id}  {_when(r.started_at)}  {r.status:<11}  {rows:>11,}  "
            f"{r.elapsed_seconds:>7,.1f}  {_undo_cell(r, undo):<17}  {r.table or '-'}  {r.file}"
        )


def _undo_fields(r: RunInfo, undo: dict) -> dict:
    """--json: undoable (bool) and undo_bytes (the record's size, or null)."""
    state = undo.get(r.run_id)
    return {
        "undoable": bool(state and state.undoable and r.status == "succeeded"),
        "undo_bytes": state.size if state else None,
        "undone_by": state.undone_by if state else None,
    }


def _undo_cell(r: RunInfo, undo: dict) -> str:
    """yes (size) / undone / an undo / -."""
    if r.kind == "undo":
        return f"undoes {r.undo_of[:8]}" if r.undo_of else "an undo"
    state = undo.get(r.run_id)
    if state is None or r.status != "succeeded":
        return "-"
    if not state.undoable:
        return f"undone by {state.undone_by[:8]}"
    size = state.size
    return f"yes ({size / 1e6:,.1f} MB)" if size >= 1e5 else f"yes ({size / 1e3:,.1f} kB)"


@runs.command("prune")
@dsn_option
@click.option(
    "--keep", type=click.IntRange(min=0), default=KEEP, show_default=True,
    help="Keep the undo records of the newest N imports into each table.",
)  # fmt: skip
@click.option(
    "--older-than", "days", type=click.FloatRange(min=0), default=None, metavar="DAYS",
    help="Also drop the records of imports older than this.",
)  # fmt: skip
@connect_timeout_option
def prune_runs(dsn, keep, days, connect_timeout):
    """Drop old undo records: those runs stay in the history but can no longer be undone."""
    try:
        with _connect(dsn, connect_timeout) as conn:
            dropped = prune(conn, keep, days)
    except CsvloadError as e:
        fail(e)
    click.echo(f"csvload: dropped the undo records of {dropped} run(s)", err=True)


# -- stats -----------------------------------------------------------------------------------


@click.command()
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.option("--table", default=PRODUCTS, show_default=True, metavar="[SCHEMA.]TABLE")
@connect_timeout_option
def stats(dsn, as_json, table, connect_timeout):
    """Row and active counts, table and index sizes, index usage, the last import."""
    from csvload.history.stats import collect

    try:
        with _connect(dsn, connect_timeout) as conn:
            s = collect(conn, table)
    except CsvloadError as e:
        fail(e)
    if as_json:
        click.echo(json.dumps(s.as_dict()))
        return
    out = [
        f"table           {s.table}",
        f"rows            {s.rows:,}",
        f"active          {s.active:,}" if s.active is not None else "active          -",
        f"total size      {mb(s.total_bytes)}",
        f"table size      {mb(s.table_bytes)}",
        f"indexes size    {mb(s.indexes_bytes)}",
    ]
    last = s.last_import
    out.append(
        f"last import     {_when(last.finished_at)} {last.file} ({last.run_id})"
        if last and last.finished_at
        else "last import     none recorded"
    )
    for i in s.indexes:
        out.append(
            f"index           {i.name}  {mb(i.bytes)}  {i.scans:,} scans  "
            f"{i.tuples_read:,} read  {i.tuples_fetched:,} fetched"
        )
    click.echo("\n".join(out))


# -- verify ----------------------------------------------------------------------------------


VERIFY_OPTIONS = (
    "dsn", "as_json", "quiet", *INPUT, "batch_size", "missing", "active_column",
    "connect_timeout", *REMOTE,
)  # fmt: skip


@click.command()
@click.argument("path")
@click_options(
    VERIFY_OPTIONS,
    help={
        "as_json": "Print a JSON result on stdout.",
        "batch_size": None,
        "missing": "How the import treats rows the file lacks: deactivate and delete expect"
        " them inactive or gone.",
        "active_column": None,
    },
)
def verify(path, **params):
    """Check that the table holds every key of PATH (- for stdin, or a URL) with the values of its
    last occurrence; changes nothing.  Exits 0 when all match, 1 when not."""
    from csvload.load.verify import verify_source

    given = fields(params, VERIFY_OPTIONS)
    job = SimpleNamespace(**given[""])  # dsn, connect_timeout, as_json, quiet
    options = ImportOptions(**given["options"], binding=Binding(**given["options.binding"]))
    try:
        with (
            open_input(source_options(path, given), stdin=sys.stdin.buffer) as source,
            _connect(job.dsn, job.connect_timeout) as conn,
            display_for(job.quiet, source.name) as display,
        ):
            result = verify_source(conn, source, options, display)
    except CsvloadError as e:
        fail(e)
    if job.as_json:
        click.echo(json.dumps(result.as_dict()))
    if not job.quiet:
        click.echo(verify_line(result), err=True)
    sys.exit(ExitStatus.OK if result.ok else ExitStatus.FAILED)


def verify_line(r) -> str:
    line = (
        f"{r.file}: {r.keys:,} keys checked against {r.table} ({', '.join(r.compared)}): "
        f"{r.matching:,} match, {r.missing:,} missing, {r.different:,} different"
    )
    if r.rejected:
        line += f"; {r.rejected:,} rejected rows not checked"
    if r.stale:
        state = "active" if r.missing_mode == "deactivate" else "there"
        line += f"; {r.stale:,} rows the file no longer lists are still {state}: "
        # A row whose key is NULL (a nullable unique column) is listed by no file.
        line += ", ".join("(NULL key)" if k is None else k for k in r.stale_examples)
    if r.missing_examples:
        line += "; missing: " + ", ".join(r.missing_examples)
    if r.different_examples:
        line += "; different: " + ", ".join(
            f"{d.key} ({', '.join(d.fields)})" for d in r.different_examples
        )
    return line


def _when(t) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S") if t is not None else "-"
