"""The input a command reads, from its parameters: SourceOptions, and for a URL its
RemoteOptions, with the secrets read from the environment here, in the CLI (the library
never reads the environment): a --header value written env:NAME, and the sftp password
from CSVLOAD_SFTP_PASSWORD (never a flag: it would be in the shell history and in ps)."""

from __future__ import annotations

import os

import click

from csvload.cli.paramtypes import ENV_PREFIX
from csvload.read.remote import RemoteOptions, is_remote
from csvload.read.source import SourceOptions

SFTP_PASSWORD = "CSVLOAD_SFTP_PASSWORD"


def source_options(path: str, given: dict[str, dict[str, object]]) -> SourceOptions:
    """The SourceOptions of `path` from options.fields()'s groups ("source",
    "source.remote")."""
    remote = dict(given.get("source.remote", {}))
    if not is_remote(path):
        if remote.get("if_changed"):
            raise click.UsageError("--if-changed needs a URL source (https://, http:// or sftp://)")
        remote["headers"] = ()  # nothing to send them to
    else:
        remote["headers"] = resolve_headers(remote.get("headers", ()))
        remote["password"] = os.environ.get(SFTP_PASSWORD) or None
    return SourceOptions(path, **given.get("source", {}), remote=RemoteOptions(**remote))


def resolve_headers(headers) -> tuple[tuple[str, str], ...]:
    """--header values with each env:NAME replaced by $NAME; a variable that is not set is
    a usage error (which never shows a value)."""
    resolved = []
    for name, value in headers:
        if value.startswith(ENV_PREFIX):
            variable = value[len(ENV_PREFIX) :]
            value = os.environ.get(variable, "")
            if not value:
                raise click.UsageError(
                    f"--header {name}: the environment variable {variable} is not set"
                )
        resolved.append((name, value))
    return tuple(resolved)
