"""The command line: Click commands, option definitions, rendering, exit codes."""

from csvload.cli.app import main

__all__ = ["main"]
