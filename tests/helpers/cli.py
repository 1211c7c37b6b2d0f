"""Running csvload: in-process through click's CliRunner (stdout and stderr kept apart), or
as a subprocess where a test needs a real process (signals, limits, a terminal)."""

from __future__ import annotations

import json
import sys

import click
from click.testing import CliRunner, Result

from csvload.cli import main

# The ledger of an import's summary: rows_read is the sum of these counts.  Written out
# here rather than taken from csvload, so the tests check csvload's arithmetic.
LEDGER = (
    "inserted", "updated", "unchanged", "suppressed", "duplicates", "rejected", "skipped",
    "existing", "not_found",
)


def cli(
    dsn: str | None,
    *args: str,
    input: str | bytes | None = None,
    env: dict | None = None,
    command: click.Command = main,
) -> Result:
    """`csvload ARGS --dsn DSN` in-process (without --dsn when dsn is None); exceptions are
    not caught, so a bug fails the test with its traceback."""
    argv = [*args, "--dsn", dsn] if dsn is not None else list(args)
    return CliRunner(env=env).invoke(command, argv, input=input, catch_exceptions=False)


def quiet_cli(dsn: str | None, *args: str, **kwargs) -> Result:
    """cli() with --quiet: no progress lines, so stderr holds only warnings and errors."""
    quiet = () if "--quiet" in args or "-q" in args else ("--quiet",)
    return cli(dsn, *args, *quiet, **kwargs)


def assert_balanced(summary: dict) -> None:
    assert summary["rows_read"] == sum(summary[k] for k in LEDGER), summary


def imported(dsn: str, path, *args: str, exit_codes=(0,)) -> dict:
    """`csvload import PATH --json --quiet ARGS`: its summary, the exit code one of
    `exit_codes` and the ledger balanced."""
    result = quiet_cli(dsn, "import", str(path), "--json", *args)
    assert result.exit_code in exit_codes, result.stderr
    summary = json.loads(result.stdout)
    assert_balanced(summary)
    return summary


def error_line(result: Result) -> str:
    """The one line the CLI printed on stderr."""
    return only_line(result.stderr)


def only_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    return lines[0]


def csvload_cmd(*args: str) -> list[str]:
    """The argv of `csvload ARGS` as a subprocess of this Python."""
    return [sys.executable, "-m", "csvload", *args]
