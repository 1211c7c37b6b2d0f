"""`csvload watch DIR`: the drop folder's command.  It takes the import command's options
(each file is imported as `csvload import` would import it), runs the library's watcher
(dropfolder/watcher.py) and renders one line per file; the exit status is decided here.

What it needs of the import command (its option names, the feed merge and checks, the
ImportJob, the signal handling) is handed over by cli/app.py when it registers the
command, so that neither command module imports the other."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from csvload import job as import_job
from csvload.cli.options import click_options, fail, resolve_dsn
from csvload.cli.render import committed, summary_line
from csvload.dropfolder import watcher
from csvload.errors import CsvloadError, ExitStatus, OutputPathError
from csvload.load.loader import check_outputs

# Import options that do not apply to a folder: the watcher puts each file's rejects
# beside it in done/ or failed/, and a dry run would mark every file as done.
NOT_FOR_WATCH = ("rejects_path", "dry_run", "webhook_on_dry_run")
WATCH_OWN = ("once", "interval", "settle")
# The --once exit status when files differ, worst first.
_SEVERITY = (ExitStatus.FAILED, ExitStatus.WEBHOOK_FAILED, ExitStatus.REJECTED_ROWS)


def watch_command(import_options: tuple[str, ...], import_params: Callable, job_class,
                  signals: Callable) -> click.Command:  # fmt: skip
    """The watch command, built from the import command's pieces (see the docstring)."""
    names = WATCH_OWN + tuple(n for n in import_options if n not in NOT_FOR_WATCH)

    @click.command("watch")
    @click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click_options(names, help={"as_json": "Print one JSON line per file on stdout."})
    @click.pass_context
    def watch(ctx, folder: Path, **params):
        """Import each complete new file in FOLDER once, oldest first; move it to
        FOLDER/done/, or to FOLDER/failed/ with its rejects and a .error file."""
        params = import_params(ctx, params)
        params |= {"dry_run": False, "webhook_on_dry_run": False}

        def job_for(path: str, rejects: Path | None = None):
            return job_class.from_params(
                {**params, "path": path, "rejects_path": str(rejects) if rejects else None}
            )

        first = job_for(str(folder / "file.csv"))
        try:
            check_outputs(first.options, None)
        except OutputPathError as e:
            raise click.BadParameter(e.reason, param_hint=e.option) from e
        changes = first.options.changes_path
        if changes is not None and changes.resolve().parent == folder.resolve():
            # It would be taken for a file dropped there, and imported.
            raise click.BadParameter("must not be in the watched folder", param_hint="--changes")
        try:
            dsn = resolve_dsn(params["dsn"])
        except CsvloadError as e:
            fail(e)

        def request_for(path: str, rejects: Path, record: dict) -> import_job.ImportRequest:
            job = job_for(path, rejects)
            return import_job.ImportRequest(
                job.source, job.options, dsn, job.connect_timeout, job.webhooks,
                job.record() | record,
            )  # fmt: skip

        options = watcher.WatchOptions(
            folder, params["once"], params["interval"], params["settle"], first.connect_timeout
        )
        sys.exit(_watch(options, dsn, request_for, first, signals))

    return watch


def _watch(options: watcher.WatchOptions, dsn: str, request_for, first, signals) -> ExitStatus:
    """Run the watcher, render its events; the exit status (docs/watch.md)."""
    statuses: list[ExitStatus] = []
    with signals() as stop:
        hooks = watcher.Hooks(run=stop.hooks(first.quiet), resume=stop.arm)
        try:
            for event in watcher.watch(options, dsn, request_for, hooks):
                statuses.append(_render(event, first.as_json, first.quiet))
        except import_job.Stopped:  # between two files: nothing to roll back
            pass
        except CsvloadError as e:
            fail(e)
    if statuses and statuses[-1] in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED):
        return statuses[-1]
    if not options.once:
        return ExitStatus.OK
    return next((s for s in _SEVERITY if s in statuses), ExitStatus.OK)


def _render(event: watcher.Event, as_json: bool, quiet: bool) -> ExitStatus:
    """One line on stderr (and with --json one on stdout) for a file; its exit status."""
    outcome = event.outcome
    where = _shown(event)
    if as_json:
        line = outcome.result.as_dict() if outcome else {"file": str(event.path)}
        line |= {"event": event.kind, "moved_to": str(event.moved_to) if event.moved_to else None}
        if event.run_id:
            line["run_id"] = event.run_id
        if event.error:
            line["error"] = event.error
        if outcome and outcome.deliveries:
            line["webhooks"] = [d.as_dict() for d in outcome.deliveries]
        click.echo(json.dumps(line))
    if event.kind == watcher.ALREADY:
        if not quiet:
            click.echo(f"{event.path}: imported already by run {event.run_id}; {where}", err=True)
        return ExitStatus.OK
    if event.error is not None:
        click.echo(f"Error: {event.error}; {where}", err=True)
        return outcome.error.exit_status if event.kind == watcher.STOPPED else ExitStatus.FAILED
    assert outcome is not None
    if not quiet:
        click.echo(f"{summary_line(outcome.result)}; {where}", err=True)
    return committed(outcome.result, outcome.deliveries)


def _shown(event: watcher.Event) -> str:
    """Where the file went, as the line says it."""
    if event.moved_to is not None:
        return f"moved to {event.moved_to.parent.name}/{event.moved_to.name}"
    return f"{event.path.name} stays in the folder, to be imported next time"
