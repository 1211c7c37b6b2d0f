"""`csvload db start|stop|status|url`: thin commands over the managed local server."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from csvload.errors import CsvloadError

if TYPE_CHECKING:
    from csvload.server.embedded import LocalServer, ServerStatus


def _server() -> LocalServer:
    # Imported here: an import with a DSN never needs the server code.
    from csvload.server.embedded import LocalServer, default_home

    try:
        return LocalServer(default_home(os.environ, os.geteuid() == 0))
    except CsvloadError as e:
        raise _click_error(e) from e


def _click_error(e: CsvloadError) -> click.ClickException:
    exc = click.ClickException(str(e))
    exc.exit_code = int(e.exit_status)
    return exc


@click.group()
def db() -> None:
    """Manage the local PostgreSQL server csvload uses when given no DSN.

    Its files live in CSVLOAD_HOME (as root: /var/lib/csvload; otherwise
    $XDG_DATA_HOME/csvload or ~/.local/share/csvload).
    """


@db.command()
def start() -> None:
    """Initialise the server if needed and start it (running already is fine)."""
    server = _server()
    try:
        server.ensure()
        status = server.status()
    except CsvloadError as e:
        raise _click_error(e) from e
    click.echo(f"local PostgreSQL {status.version} running (pid {status.pid})", err=True)
    click.echo(f"data: {status.data_dir}", err=True)


@db.command()
def stop() -> None:
    """Stop the server (fast shutdown: open sessions are rolled back)."""
    try:
        was_running = _server().stop()
    except CsvloadError as e:
        raise _click_error(e) from e
    click.echo(
        "local PostgreSQL stopped" if was_running else "local PostgreSQL was not running", err=True
    )


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON on stdout.")
def status(as_json: bool) -> None:
    """Show whether the server runs, where its files are and which binaries it uses."""
    try:
        st = _server().status()
    except CsvloadError as e:
        raise _click_error(e) from e
    if as_json:
        click.echo(json.dumps(_jsonable(st), indent=2))
        return
    state = f"running (pid {st.pid})" if st.running else "not running"
    if not st.initialized:
        state += ", not initialised yet"
    click.echo(f"local PostgreSQL: {state}", err=True)
    click.echo(f"home:     {st.home}", err=True)
    click.echo(f"data:     {st.data_dir}", err=True)
    click.echo(f"log:      {st.log_file}", err=True)
    click.echo(f"user:     {st.user}", err=True)
    binaries = f"{st.binaries} (PostgreSQL {st.version})" if st.binaries else "none usable"
    click.echo(f"binaries: {binaries}", err=True)
    click.echo(f"url:      {st.url}", err=True)


@db.command()
def url() -> None:
    """Print the server's DSN, e.g. for: psql "$(csvload db url)"."""
    server = _server()
    click.echo(server.url())
    try:
        running = server.status().running
    except CsvloadError as e:
        raise _click_error(e) from e
    if not running:
        click.echo("note: the local server is not running (csvload db start)", err=True)


def _jsonable(st: ServerStatus) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(st).items()}
