"""Running `csvload undo` for the tests of tests/undo/."""

from __future__ import annotations

import json

from click.testing import Result

from helpers.cli import quiet_cli


def undo(dsn: str, *args: str) -> Result:
    """`csvload undo ARGS --json --quiet`."""
    return quiet_cli(dsn, "undo", *args, "--json")


def undone(dsn: str, *args: str) -> dict:
    """undo() that must succeed: its JSON outcome."""
    result = undo(dsn, *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)
