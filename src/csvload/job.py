"""The library's one entry point for an import: run() opens the source, records the run,
connects, imports, and delivers the webhooks, and returns an Outcome.  The caller renders
it; it reaches the run through Hooks (warnings, progress, and a stop such as a signal)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import BinaryIO

from csvload import webhook
from csvload.errors import CsvloadError, ExitStatus, InputUsageError, Interrupted
from csvload.history import runs
from csvload.history.recorder import RunRecorder
from csvload.load.loader import Import, ImportOptions
from csvload.load.result import ImportResult, ProgressCallback
from csvload.read.inputs import open_input
from csvload.read.remote import Fetched, Previous, RemoteOptions, UnchangedFeed, is_remote, shown
from csvload.read.source import SourceOptions
from csvload.server.database import connect, target


@dataclass(frozen=True)
class ImportRequest:
    """One import: what to read, where to write it (a resolved DSN), what to tell."""

    source: SourceOptions
    options: ImportOptions
    # The DSN, or the caller's function that finds it, called once the source is open (a
    # file that cannot be read fails before a local server is started for it).
    dsn: str | Callable[[], str]
    connect_timeout: float
    webhooks: webhook.WebhookOptions = field(default_factory=webhook.WebhookOptions)
    record: dict = field(default_factory=dict)  # the options the run history keeps
    stdin: BinaryIO | None = None  # what a source path "-" reads
    # Every input, in order, when there are several (source.path is then the first): all
    # read with the source's options into one import.
    paths: tuple[str, ...] = ()


@dataclass
class Outcome:
    result: ImportResult
    deliveries: list[webhook.Delivery] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: CsvloadError | None = None
    fetched: Fetched | None = None  # what a URL source's fetch found


class Stopped(BaseException):
    """Raised by the caller (a signal handler, say) to stop the import: before the commit
    it rolls back; during a webhook delivery it ends the deliveries."""

    def __init__(self, name: str, status: ExitStatus):
        super().__init__(name)
        self.name, self.status = name, status


def _no_progress(name: str) -> AbstractContextManager[ProgressCallback | None]:
    return contextlib.nullcontext(None)


@dataclass
class Hooks:
    """How the caller follows and steers one run."""

    warn: Callable[[str], None] = lambda text: None  # as each warning arises
    # Opened around the import with the source's name: what it gives gets the progress.
    progress: Callable[[str], AbstractContextManager] = _no_progress
    # From this call on the import can no longer roll back (it commits, or it has ended):
    # the caller must no longer raise Stopped, only note the stop.
    hold: Callable[[], None] = lambda: None
    # A stop the caller noted after hold(): its name, or None.
    stopped: Callable[[], str | None] = lambda: None
    # Around the deliveries: the caller may raise Stopped again inside it.
    interruptible: Callable[[], AbstractContextManager] = contextlib.nullcontext


def run(request: ImportRequest, hooks: Hooks | None = None) -> Outcome:
    """Run one import, record it and deliver its webhooks.  Never raises CsvloadError:
    the outcome carries it."""
    hooks = hooks or Hooks()
    name = shown(request.source.path)
    outcome = Outcome(ImportResult(status="failed", file=name))
    database = {"name": None, "host": None}
    recorder: RunRecorder | None = None
    dsn: str | None = None
    source_options = request.source
    try:
        remote = source_options.remote
        if remote is not None and remote.if_changed:
            if len(request.paths) > 1:
                raise InputUsageError(
                    "--if-changed skips one unchanged URL source; give one URL, not "
                    f"{len(request.paths)} inputs"
                )
            if is_remote(source_options.path):
                # The conditional request needs the last import's ETag, before any byte.
                dsn = _dsn(request)
                source_options = _with_previous(request, dsn, name)
        with open_input(source_options, request.paths, stdin=request.stdin) as source:
            outcome.fetched = source.fetched
            options = request.options
            if options.preset is None:
                scoped = {c for c, _ in options.binding.scope}
                source.find_keys(tuple(k for k in options.key if k not in scoped))
            dsn = dsn if dsn is not None else _dsn(request)
            recorder = RunRecorder.start(
                dsn,
                file=source.name,
                # A URL is listed as it is shown: its credentials never reach the record.
                paths=tuple(shown(p) if is_remote(p) else p for p in source.paths),
                options=request.record,
                connect_timeout=request.connect_timeout,
                table=options.table,
                key=options.key,
                remote=_columns(source.fetched),
            )
            outcome.result.run_id = recorder.run_id
            outcome.result.table, outcome.result.key = options.table, list(options.key)
            with connect(dsn, connect_timeout=request.connect_timeout) as conn:
                database = target(conn)
                _import(conn, source, request, recorder, hooks, outcome)
    except UnchangedFeed as e:
        recorder = _unchanged(e, request, source_options, dsn, recorder, outcome)
    except CsvloadError as e:
        outcome.error = e
    except Stopped as e:
        outcome.error = Interrupted(f"{name}: {e.name}: rolled back, nothing was written")
        outcome.error.exit_status = e.status
    finally:
        hooks.hold()
        if recorder is not None:
            if outcome.fetched is not None and outcome.fetched.sha256:
                recorder.remote["sha256"] = outcome.fetched.sha256
            _end_run(recorder, outcome)
    if recorder is not None and recorder.warning:
        _warn(hooks, outcome, f"run history: {recorder.warning}")
    if outcome.error is not None:
        outcome.result.status, outcome.result.error = "failed", str(outcome.error)
    outcome.deliveries = _deliver(request, outcome.result, database, hooks, outcome.fetched)
    return outcome


def _dsn(request: ImportRequest) -> str:
    return request.dsn() if callable(request.dsn) else request.dsn


def _columns(fetched: Fetched | None) -> dict | None:
    """A URL source's columns in the run history: its redacted URL and validators."""
    if fetched is None:
        return None
    return fetched.columns() | {"size": fetched.size, "bytes_total": fetched.size}


def _with_previous(request: ImportRequest, dsn: str, name: str) -> SourceOptions:
    """The source's options with what the last successful import of the URL into the
    table recorded (--if-changed)."""
    with connect(dsn, connect_timeout=request.connect_timeout, autocommit=True) as conn:
        found = runs.last_fetch(conn, name, request.options.table)
    previous = None
    if found is not None:
        previous = Previous(
            etag=found["etag"], last_modified=found["last_modified"], size=found["size"],
            mtime=found["remote_mtime"], sha256=found["sha256"],
        )  # fmt: skip
    remote = replace(request.source.remote or RemoteOptions(), previous=previous)
    return replace(request.source, remote=remote)


def _unchanged(
    e: UnchangedFeed,
    request: ImportRequest,
    source: SourceOptions,
    dsn: str | None,
    recorder: RunRecorder | None,
    outcome: Outcome,
) -> RunRecorder | None:
    """--if-changed found the source unchanged: no import (a body that was already being
    staged has been rolled back with its transaction, before the table was locked), and a
    run recorded as unchanged_feed.  Returns the run's recorder."""
    fetched = outcome.fetched = e.fetched
    options = request.options
    outcome.result = ImportResult(
        status="unchanged_feed", file=fetched.shown, table=options.table,
        key=list(options.key), source=fetched.shown,
    )  # fmt: skip
    previous = source.remote.previous if source.remote else None
    try:
        if recorder is None:
            assert dsn is not None  # resolved for the conditional request
            recorder = RunRecorder.start(
                dsn, file=fetched.shown, options=request.record,
                connect_timeout=request.connect_timeout, table=options.table,
                key=options.key, remote=_columns(fetched),
            )  # fmt: skip
    except CsvloadError as error:
        outcome.error = error
        return None
    if fetched.sha256 is None and previous is not None:
        fetched.sha256 = previous.sha256  # 304: the body is the one last imported
    outcome.result.run_id = recorder.run_id
    return recorder


def _import(conn, source, request, recorder, hooks: Hooks, outcome: Outcome) -> None:
    def before_commit(conn, result):
        if source.fetched is not None:
            recorder.remote["sha256"] = source.fetched.sha256
        recorder.finish_within(conn, result)
        hooks.hold()

    job = Import(conn, source, request.options, before_commit=before_commit,
                 run_id=recorder.run_id)  # fmt: skip
    if source.fetched is not None:
        job.result.file = job.result.source = source.fetched.shown
    outcome.result = job.result
    plan = job.prepare()
    if plan.ignored:
        ignored = ", ".join(name if name.strip() else "(no header)" for name in plan.ignored)
        _warn(hooks, outcome, f"{source.name}: ignoring unknown columns: {ignored}")
    with hooks.progress(source.name) as display:

        def progress(p):
            if display is not None:
                display(p)
            recorder.progress(p)

        job.report = progress
        job.run()


def _warn(hooks: Hooks, outcome: Outcome, text: str) -> None:
    outcome.warnings.append(text)
    hooks.warn(text)


def _end_run(recorder: RunRecorder, outcome: Outcome) -> None:
    if outcome.error is None:
        recorder.finish(outcome.result)
    else:
        interrupted = isinstance(outcome.error, Interrupted)
        recorder.fail(str(outcome.error), outcome.result, interrupted=interrupted)


def _deliver(
    request: ImportRequest, result: ImportResult, database: dict, hooks: Hooks,
    fetched: Fetched | None = None,
) -> list:
    """One event per URL, after the transaction has ended; it never changes the import.
    A stop that came after the commit, or comes now, ends the deliveries."""
    if not request.webhooks.urls:
        return []
    stopped = hooks.stopped()
    if stopped and result.status != "failed":
        return webhook.not_sent(request.webhooks, f"not sent: {stopped} after the commit")
    path = request.source.path
    if fetched is not None:
        file = {"name": fetched.shown, "size": fetched.size, "sha256": fetched.sha256}
    else:
        file = webhook.file_info(path) if path != "-" and os.path.isfile(path) else None
    kind = {"failed": webhook.FAILED, "unchanged_feed": webhook.UNCHANGED}
    event = webhook.build_event(
        kind.get(result.status, webhook.COMPLETED),
        result.as_dict(),
        file=file,
        database=database,
        run_id=result.run_id,
        error=result.error,
    )
    try:
        with hooks.interruptible():
            return webhook.deliver(request.webhooks, event)
    except Stopped as e:
        return webhook.not_sent(request.webhooks, f"stopped: {e.name} during the delivery")
