"""How the CLI shows progress and results to a person, on stderr: a rich bar on a
terminal, a plain line every few seconds elsewhere, nothing with --quiet."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, TextIO

import click

from csvload.errors import ExitStatus
from csvload.load.result import OPTIONAL_COUNTS, ImportResult
from csvload.load.result import Progress as LoadProgress

if TYPE_CHECKING:
    from rich.progress import Progress

PLAIN_INTERVAL = 5.0  # seconds between plain progress lines
REFRESH = 4  # progress bar redraws per second, at most


class QuietDisplay:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __call__(self, p: LoadProgress) -> None:
        return None


class LineDisplay(QuietDisplay):
    """For logs and pipes: one line every few seconds, and one per phase change."""

    def __init__(self, stream: TextIO, name: str):
        self.stream = stream
        self.name = name
        self.started = time.monotonic()
        self.last = 0.0
        self.phase = ""

    def __call__(self, p: LoadProgress) -> None:
        now = time.monotonic()
        if p.phase == self.phase and now - self.last < PLAIN_INTERVAL:
            return
        if p.phase == "done":
            return
        self.phase, self.last = p.phase, now
        if p.phase == "reading" and p.rows == 0:
            return  # "0 rows, 0%" says nothing; the first real line comes a few seconds in
        rate = p.rows / max(now - self.started, 1e-9)
        done = f"{mb(p.bytes_done)}" + (f" of {mb(p.bytes_total)}" if p.bytes_total else "")
        if p.phase == "reading":
            pct = f" ({100 * p.bytes_done / p.bytes_total:.0f}%)" if p.bytes_total else ""
            line = f"{self.name}: reading {done}{pct}, {p.rows:,} rows, {rate:,.0f} rows/s"
        elif p.phase == "waiting":
            line = f"{self.name}: waiting for another import into the table to finish..."
        else:
            line = f"{self.name}: {p.phase}, {p.rows:,} rows"
        print(line, file=self.stream, flush=True)


class BarDisplay(QuietDisplay):
    """A rich progress bar on a terminal, redrawn a few times a second at most.

    Importing rich takes about 30 ms of CPU, a fifth of csvload's start-up.  It runs on a
    thread of its own, so that it overlaps the reading, where the reader waits on the server
    anyway: reading reports that arrive before it is done are skipped, and the bar appears
    with the next one.  Any other report (waiting, merging, done) waits for it.
    """

    def __init__(self, stream: TextIO, name: str):
        self.stream = stream
        self.name = name
        self.started = time.monotonic()
        self.drawn = 0.0
        self.phase = ""
        self.bar = None
        self.task = None
        self._made: Progress | BaseException | None = None
        self._loader = threading.Thread(target=self._load, name="csvload-rich", daemon=True)

    def _load(self) -> None:
        try:
            self._made = _make_bar(self.stream)
        except BaseException as e:  # handed to the main thread, which raises it
            self._made = e

    def _show(self) -> None:
        self._loader.join()
        if isinstance(self._made, BaseException):
            raise self._made
        self.bar = self._made
        self.bar.__enter__()
        self.task = self.bar.add_task(self.name, total=None, phase="starting", rows=0, rate=0.0)

    def __enter__(self):
        self._loader.start()
        return self

    def __exit__(self, *exc):
        if self.bar is None:
            # Nothing was shown (the import failed, or reported nothing, before rich was
            # ready): there is no bar to close; the error line or summary says it all.
            self._loader.join()
            return None
        self.bar.__exit__(*exc)

    def __call__(self, p: LoadProgress) -> None:
        if self.bar is None:
            if p.phase == "reading" and self._loader.is_alive():
                return  # rich is still loading: the next report draws
            self._show()
        rate = p.rows / max(time.monotonic() - self.started, 1e-9)
        if p.phase == "reading":
            self.bar.update(
                self.task, total=p.bytes_total, completed=p.bytes_done,
                phase=p.phase, rows=p.rows, rate=rate,
            )  # fmt: skip
        else:
            total = self.bar.tasks[0].total
            self.bar.update(
                self.task, completed=total or self.bar.tasks[0].completed,
                phase=p.phase, rows=p.rows, rate=rate,
            )  # fmt: skip
        now = time.monotonic()
        if p.phase != self.phase or now - self.drawn >= 1 / REFRESH:
            self.phase, self.drawn = p.phase, now
            self.bar.refresh()


def _make_bar(stream: TextIO) -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.fields[phase]:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TextColumn("{task.fields[rate]:>9,.0f} rows/s"),
        TimeRemainingColumn(),
        console=Console(file=stream),
        # Redrawn from the progress reports, at most REFRESH times a second, rather than by
        # rich's refresh thread: no thread competes with the reader for the GIL, and nothing
        # is redrawn while the server merges (the bar would not move).
        auto_refresh=False,
        transient=False,
    )


def display_for(quiet: bool, name: str, stream: TextIO | None = None):
    stream = stream or sys.stderr
    if quiet:
        return QuietDisplay()
    if stream.isatty():
        return BarDisplay(stream, name)
    return LineDisplay(stream, name)


_LABELS = {
    "suppressed": "suppressed by a trigger",
    "existing": "existing left as they are",
    "not_found": "not found",
}


def summary_line(r: ImportResult) -> str:
    if r.status == "unchanged_feed":
        run = f"; run {r.run_id}" if r.run_id else ""
        return f"{r.file}: unchanged since the last import, nothing imported (--if-changed){run}"
    verb = {"dry_run": "dry run, nothing written", "succeeded": "imported"}.get(r.status, r.status)
    line = (
        f"{r.file}: {verb}: {r.rows_read:,} rows read, {r.inserted:,} inserted, "
        f"{r.updated:,} updated, {r.unchanged:,} unchanged, {r.duplicates:,} duplicates, "
        f"{r.rejected:,} rejected"
    )
    for name in OPTIONAL_COUNTS:
        if getattr(r, name):
            line += f", {getattr(r, name):,} {_LABELS.get(name, name)}"
    line += f" in {r.seconds:.1f} s ({r.rows_per_second:,.0f} rows/s)"
    if r.changes_file:
        line += f"; changes in {r.changes_file}"
    if r.rejects_file:
        line += f"; rejects in {r.rejects_file}"
    if r.run_id:
        line += f"; run {r.run_id}"
    return line


def committed(result: ImportResult, deliveries) -> ExitStatus:
    """The exit status of an import that committed, after the error line of each webhook
    that could not be delivered (on stderr)."""
    failed = [d for d in deliveries if not d.ok]
    for d in failed:
        click.echo(
            f"Error: webhook {d.url} failed after {d.attempts} attempt(s): {d.error}; "
            "the import itself was committed",
            err=True,
        )
    if failed:
        return ExitStatus.WEBHOOK_FAILED
    return ExitStatus.REJECTED_ROWS if result.rejected else ExitStatus.OK


def mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:,.1f} MB"
