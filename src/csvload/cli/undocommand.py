"""`csvload undo RUN_ID` and `csvload undo --last [--table T | --feed NAME]`: parse, call
the library once (csvload.undo.run), render the outcome."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from csvload import undo as undo_lib
from csvload import webhook
from csvload.cli.options import click_options, fail, resolve_dsn
from csvload.errors import CsvloadError, ExitStatus

UNDO_OPTIONS = (
    "last", "table", "feed", "config_path", "dry_run", "skip_conflicts", "conflicts_path",
    "as_json", "quiet", "dsn", "connect_timeout", "lock_timeout", "statement_timeout",
    "webhooks", "webhook_secret", "webhook_timeout", "webhook_retries",
)  # fmt: skip

_HELP = {
    "dry_run": "Print what would be reverted and what conflicts; change nothing.",
    "table": "With --last: the newest import into this table.",
    "feed": "With --last: the newest import into the table of [feeds.NAME].",
    "webhooks": "POST an import.undone event here. Repeatable.",
}


@click.command()
@click.argument("run_id", required=False)
@click_options(UNDO_OPTIONS, _HELP)
@click.pass_context
def undo(ctx, run_id, **params):
    """Take back a committed import (RUN_ID, or a prefix of it, or --last) in one
    transaction: delete the rows it inserted, restore the columns it changed, reactivate
    and re-insert the rows it deactivated and deleted.  Rows changed since are never
    overwritten: the undo then fails, unless --skip-conflicts."""
    given = ctx.get_parameter_source("table") == click.core.ParameterSource.COMMANDLINE
    params["table"] = params["table"] if given else None  # its default is import's
    if (run_id is None) == (not params["last"]):
        raise click.UsageError("give a RUN_ID or --last (one of them)")
    if (params["table"] or params["feed"]) and not params["last"]:
        raise click.UsageError("--table and --feed choose the run for --last; give --last")
    if params["table"] and params["feed"]:
        raise click.UsageError("--table and --feed both name the table; give one")
    if params["conflicts_path"] and not params["skip_conflicts"]:
        raise click.UsageError("--conflicts names the file of --skip-conflicts; give it too")
    table = params["table"] or (_feed_table(params) if params["feed"] else None)
    conflicts = params["conflicts_path"]
    if params["skip_conflicts"] and not conflicts:
        conflicts = f"undo-{(run_id or 'last')[:8]}.conflicts.csv"
    request = undo_lib.UndoRequest(
        dsn=lambda: resolve_dsn(params["dsn"]),
        run_id=run_id, last=params["last"], table=table, dry_run=params["dry_run"],
        skip_conflicts=params["skip_conflicts"],
        conflicts_path=Path(conflicts) if conflicts else None,
        connect_timeout=params["connect_timeout"], lock_timeout=params["lock_timeout"],
        statement_timeout=params["statement_timeout"],
        webhooks=webhook.WebhookOptions(
            urls=params["webhooks"], secret=params["webhook_secret"],
            timeout=params["webhook_timeout"], attempts=params["webhook_retries"] + 1,
        ),
    )  # fmt: skip
    outcome = undo_lib.run(request)
    sys.exit(_report(outcome, params["as_json"], params["quiet"]))


def _feed_table(params: dict) -> str:
    from csvload.cli.config import load_feed

    path = Path(params["config_path"]) if params["config_path"] else None
    try:
        feed = load_feed(path, params["feed"], Path.cwd())
    except CsvloadError as e:
        fail(e)
    return str(feed.settings.get("table") or "products")


def _report(outcome: undo_lib.UndoOutcome, as_json: bool, quiet: bool) -> ExitStatus:
    result, error = outcome.result, outcome.error
    if as_json:
        summary = result.as_dict()
        if outcome.deliveries:
            summary["webhooks"] = [d.as_dict() for d in outcome.deliveries]
        click.echo(json.dumps(summary))
    for warning in outcome.warnings:
        if not quiet:
            click.echo(f"Warning: {warning}", err=True)
    if error is not None:
        click.echo(f"Error: {error}", err=True)
        return error.exit_status
    if not quiet:
        click.echo(undo_line(result), err=True)
    failed = [d for d in outcome.deliveries if not d.ok]
    for d in failed:
        click.echo(
            f"Error: webhook {d.url} failed after {d.attempts} attempt(s): {d.error}; "
            "the undo itself was committed",
            err=True,
        )
    return ExitStatus.WEBHOOK_FAILED if failed else ExitStatus.OK


def undo_line(r: undo_lib.UndoResult) -> str:
    """The closing line for a person."""
    verb = "would revert" if r.status == "dry_run" else "undone"
    counts = (
        f"{r.deleted:,} deleted, {r.restored:,} restored ({r.reactivated:,} reactivated),"
        f" {r.reinserted:,} re-inserted"
    )
    conflicts = f", {r.conflicts:,} conflicts"
    if r.conflicts and r.conflict_examples:
        conflicts += " (" + "; ".join(f"{k}: {why}" for k, why in r.conflict_examples) + ")"
    if r.conflicts_file:
        conflicts += f" listed in {r.conflicts_file}"
    run = f"; run {r.run_id}" if r.run_id else ""
    return (
        f"{r.file} into {r.table}: run {r.undo_of} {verb}: {counts}{conflicts}"
        f" in {r.seconds:.1f} s{run}"
    )
