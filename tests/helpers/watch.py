"""The drop folder's tests: files dropped the way a sender should (write, then rename),
`csvload watch` as a real process, a table that makes an import slow, and waiting for what
a watcher does."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from helpers.cli import csvload_cmd
from helpers.db import execute, query

WAIT = 60.0  # seconds; generous for a loaded 2-core machine, never reached when healthy


def drop_file(folder: Path, name: str, text: str, age: float = 0.0) -> Path:
    """Write `text` as folder/name.part, then rename it to folder/name, modified `age`
    seconds ago."""
    part = folder / (name + ".part")
    part.write_text(text, encoding="utf-8")
    when = time.time_ns() - int(age * 1e9)
    os.utime(part, ns=(when, when))
    path = folder / name
    os.rename(part, path)
    return path


def start_watch(dsn: str, folder: Path, *args: str) -> subprocess.Popen:
    """`csvload watch FOLDER --dsn DSN ARGS` as a process of its own."""
    return subprocess.Popen(
        csvload_cmd("watch", str(folder), "--dsn", dsn, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def slow_imports(dsn: str, seconds: float) -> None:
    """Every statement that writes products takes `seconds` longer (a trigger sleeps)."""
    execute(
        dsn,
        "CREATE FUNCTION slowly() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$BEGIN PERFORM pg_sleep({float(seconds)}); RETURN NULL; END$$;"
        " CREATE TRIGGER slowly AFTER INSERT OR UPDATE ON products"
        " FOR EACH STATEMENT EXECUTE FUNCTION slowly()",
    )


def sleeping_in_trigger(dsn: str) -> bool:
    """An import's backend is in the trigger's pg_sleep right now."""
    return bool(
        query(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'csvload'"
            " AND wait_event = 'PgSleep'",
        )
    )


def runs(dsn: str) -> list[tuple[str, str]]:
    """(file name, status) of every recorded run, oldest first; [] before the first."""
    if not query(dsn, "SELECT to_regclass('csvload_runs') IS NOT NULL")[0][0]:
        return []
    rows = query(dsn, "SELECT file, status FROM csvload_runs ORDER BY started_at")
    return [(Path(file).name, status) for file, status in rows]


def wait_until(seen: Callable[[], bool], what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll until seen() is true; fail naming `what` (and the watcher's output) if not."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if seen():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the watcher ended before {what}: {proc.communicate()}")
        time.sleep(0.02)
    if proc is not None:
        proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    """Send `signum`; the exit code, stdout and stderr once the watcher has ended."""
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=WAIT)
    return proc.returncode, out, err


def watch_once(dsn: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`csvload watch FOLDER --once --settle 0 ARGS` as a process; its result."""
    return subprocess.run(
        csvload_cmd("watch", str(folder), "--dsn", dsn, "--once", "--settle", "0", *args),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
