"""The library's one entry point for an import: run() opens the source, records the run,
connects, imports, and delivers the webhooks, and returns an Outcome.  The caller renders
it; it reaches the run through Hooks (warnings, progress, and a stop such as a signal)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO

from csvload import webhook
from csvload.errors import CsvloadError, ExitStatus, Interrupted
from csvload.history.recorder import RunRecorder
from csvload.load.loader import Import, ImportOptions
from csvload.load.result import ImportResult, ProgressCallback
from csvload.read.inputs import open_input
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
    outcome = Outcome(ImportResult(status="failed", file=request.source.path))
    database = {"name": None, "host": None}
    recorder: RunRecorder | None = None
    try:
        with open_input(request.source, request.paths, stdin=request.stdin) as source:
            options = request.options
            if options.preset is None:
                scoped = {c for c, _ in options.binding.scope}
                source.find_keys(tuple(k for k in options.key if k not in scoped))
            dsn = request.dsn() if callable(request.dsn) else request.dsn
            recorder = RunRecorder.start(
                dsn,
                file=source.name,
                paths=source.paths,
                options=request.record,
                connect_timeout=request.connect_timeout,
                table=options.table,
                key=options.key,
            )
            outcome.result.run_id = recorder.run_id
            outcome.result.table, outcome.result.key = options.table, list(options.key)
            with connect(dsn, connect_timeout=request.connect_timeout) as conn:
                database = target(conn)
                _import(conn, source, request, recorder, hooks, outcome)
    except CsvloadError as e:
        outcome.error = e
    except Stopped as e:
        outcome.error = Interrupted(
            f"{request.source.path}: {e.name}: rolled back, nothing was written"
        )
        outcome.error.exit_status = e.status
    finally:
        hooks.hold()
        if recorder is not None:
            _end_run(recorder, outcome)
    if recorder is not None and recorder.warning:
        _warn(hooks, outcome, f"run history: {recorder.warning}")
    if outcome.error is not None:
        outcome.result.status, outcome.result.error = "failed", str(outcome.error)
    outcome.deliveries = _deliver(request, outcome.result, database, hooks)
    return outcome


def _import(conn, source, request, recorder, hooks: Hooks, outcome: Outcome) -> None:
    def before_commit(conn, result):
        recorder.finish_within(conn, result)
        hooks.hold()

    job = Import(conn, source, request.options, before_commit=before_commit,
                 run_id=recorder.run_id)  # fmt: skip
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


def _deliver(request: ImportRequest, result: ImportResult, database: dict, hooks: Hooks) -> list:
    """One event per URL, after the transaction has ended; it never changes the import.
    A stop that came after the commit, or comes now, ends the deliveries."""
    if not request.webhooks.urls:
        return []
    stopped = hooks.stopped()
    if stopped and result.status != "failed":
        return webhook.not_sent(request.webhooks, f"not sent: {stopped} after the commit")
    path = request.source.path
    file = webhook.file_info(path) if path != "-" and os.path.isfile(path) else None
    event = webhook.build_event(
        webhook.FAILED if result.status == "failed" else webhook.COMPLETED,
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
