"""The click pieces the commands share: where the DSN comes from, the one-line error exit,
and OPTIONS, the one definition of each option of `import` (and of `verify`, which shares
the input options): its flags, type and check, default, help, csvload.toml key, where its
value goes in an import and whether the run history keeps it.  The commands' decorators,
the feed's keys and checks (config.py), the feed merge and the run record are all derived
from it.  Every command module imports them from here, so no command module imports
another."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import click

from csvload.cli import paramtypes as t
from csvload.errors import CsvloadError
from csvload.load.loader import DEFAULT_BATCH_SIZE
from csvload.load.missing import MODES
from csvload.read.presets import PRESETS
from csvload.server.database import check_dsn
from csvload.table import control
from csvload.table.schema import PRODUCTS

DOTENV = ".env"


def setting(name: str) -> tuple[str, str] | None:
    """A setting from the environment, else from ./.env (the environment wins), with where
    it came from: the variable's name, or ".env line N: NAME".  Raises ConfigError for a
    .env csvload cannot read (not a file, too big, not UTF-8, a line python-dotenv cannot
    parse)."""
    value = os.environ.get(name)
    if value:
        return value, name
    # A directory named .env is a virtualenv (python -m venv .env), not a dotenv file.
    if os.path.exists(DOTENV) and not os.path.isdir(DOTENV):
        # Imported here: config pulls in tomllib, which a run without .env never needs.
        from csvload.cli.config import dotenv_setting

        found = dotenv_setting(Path(DOTENV), DOTENV, name)
        if found:
            return found[0], f"{DOTENV} line {found[1]}: {name}"
    return None


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else DATABASE_URL (environment, then .env), else libpq's PG* variables, else
    the managed local server.  A DSN libpq cannot parse is a DsnError that names where it
    came from and never quotes it."""
    if dsn:
        check_dsn(dsn, "--dsn")
        return dsn
    url = setting("DATABASE_URL")
    if url:
        check_dsn(*url)
        return url[0]
    if any(os.environ.get(v) for v in ("PGHOST", "PGDATABASE", "PGSERVICE")):
        return ""  # libpq reads PG* itself
    return _local_server_dsn()


def _local_server_dsn() -> str:
    from csvload.server.embedded import LocalServer, default_home

    server = LocalServer(default_home(os.environ, os.geteuid() == 0))
    dsn = server.ensure()
    click.echo(f"csvload: using the local database {server.url()}", err=True)
    return dsn


def _plain(value: object) -> object:
    """A value as the run history's JSON keeps it: tuples as lists, paths as text."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class Option:
    """One option, defined once.  Adding an import option is one entry in _OPTIONS plus
    the code that uses it (its field in ImportOptions, say): the command's decorator,
    the csvload.toml key and its check, the feed merge and the run record follow."""

    flags: tuple[str, ...]
    name: str  # the command's parameter
    help: str | None = None
    type: click.ParamType | None = None  # with from_file() when a feed may set it
    default: object = None
    toml: str | None = None  # the csvload.toml key; None: a feed may not set it
    # Where the value goes in an ImportJob: "options.binding.touch"; "dsn" for the job's own.
    field: str | None = None
    record: str | None = None  # its key in the run history; None: not kept there
    recorded: Callable[[object], object] = _plain  # how the run history keeps it
    metavar: str | None = None
    multiple: bool = False
    is_flag: bool = False
    envvar: str | None = None

    def decorator(self, help: str | None) -> Callable:
        return click.option(
            *self.flags,
            self.name,
            help=help,
            type=self.type,
            default=False if self.is_flag else self.default,
            show_default=self.default is not None and not self.is_flag,
            metavar=self.metavar,
            multiple=self.multiple,
            is_flag=self.is_flag,
            envvar=self.envvar,
        )

    def value_in(self, job: object) -> object:
        """The option's value as it ended up in an ImportJob (or its like)."""
        return attrgetter(self.field)(job)


_OPTIONS = (
    Option(
        ("--dsn",),
        "dsn",
        "PostgreSQL URL or key=value DSN. Default: $DATABASE_URL, .env, PG* variables, "
        "else the managed local server.",
        metavar="DSN",
        field="dsn",
    ),
    Option(
        ("--batch-size",),
        "batch_size",
        "About this many rows per write to the COPY stream.",
        t.Count(1),
        DEFAULT_BATCH_SIZE,
        toml="batch_size",
        field="options.batch_size",
        record="batch_size",
    ),
    Option(
        ("--json",), "as_json", "Print a JSON summary on stdout.", is_flag=True, field="as_json"
    ),
    Option(
        ("-q", "--quiet"),
        "quiet",
        "No progress and no summary on stderr.",
        is_flag=True,
        field="quiet",
    ),
    Option(
        ("--max-errors",),
        "max_errors",
        "Rejected rows allowed before the import fails.",
        t.Count(0),
        0,
        toml="max_errors",
        field="options.max_errors",
        record="max_errors",
    ),
    Option(
        ("--rejects",),
        "rejects_path",
        "Where to write rejected rows. Default: <input>.rejects.csv.",
        t.FilePath(),
        toml="rejects",
        field="options.rejects_path",
    ),
    Option(
        ("--dry-run",),
        "dry_run",
        "Run everything, then roll back.",
        is_flag=True,
        field="options.dry_run",
        record="dry_run",
    ),
    Option(
        ("--encoding",),
        "encoding",
        type=t.Encoding(),
        default="utf-8",
        toml="encoding",
        field="source.encoding",
        record="encoding",
    ),
    Option(
        ("--delimiter",),
        "delimiter",
        "Field delimiter, or 'auto' to sniff it.",
        t.Delimiter(),
        ",",
        toml="delimiter",
        field="source.delimiter",
        record="delimiter",
    ),
    Option(
        ("--table",),
        "table",
        "The table to load into.",
        t.Name("a table name"),
        PRODUCTS,
        toml="table",
        field="options.table",
        record="table",
        metavar="[SCHEMA.]TABLE",
    ),
    Option(
        ("--key",),
        "key",
        "The column(s) that identify a row, backed by a unique index: supplier,sku.",
        t.Key(),
        "sku",
        toml="key",
        field="options.key",
        record="key",
    ),
    Option(
        ("--map",),
        "mapping",
        "Map a header to a column: 'Product Name=name'. Repeatable.",
        t.Mapping(),
        toml="map",
        field="source.mapping",
        record="map",
        multiple=True,
    ),
    Option(
        ("--decimal-comma",),
        "decimal_comma",
        "Numbers are written like 1.234,56.",
        t.Flag(),
        toml="decimal_comma",
        field="options.binding.decimal_comma",
        record="decimal_comma",
        is_flag=True,
    ),
    Option(
        ("--preset",),
        "preset",
        "Read a shop's product export as it comes.",
        t.Choice(sorted(PRESETS)),
        toml="preset",
        field="options.preset",
        record="preset",
    ),
    Option(
        ("--scope",),
        "scope",
        "Only rows where COLUMN = VALUE, and VALUE written into COLUMN for every row of the "
        "file. Repeatable.",
        t.Assignment(),
        toml="scope",
        field="options.binding.scope",
        record="scope",
        multiple=True,
    ),
    Option(
        ("--connect-timeout",),
        "connect_timeout",
        type=t.seconds(1),
        default=10,
        field="connect_timeout",
    ),
    Option(
        ("--lock-timeout",),
        "lock_timeout",
        "Seconds to wait for another import's lock on the table (default: wait).",
        t.seconds(0),
        field="options.lock_timeout",
    ),
    Option(
        ("--statement-timeout",),
        "statement_timeout",
        "Seconds any one statement may run (default: no limit).",
        t.seconds(0),
        field="options.statement_timeout",
    ),
    Option(
        ("--once",),
        "once",
        "Import the complete files there now, then exit (for cron).",
        is_flag=True,
    ),
    Option(
        ("--interval",),
        "interval",
        "Seconds between looks at the folder (without --once).",
        t.seconds(0.1),
        10,
    ),
    Option(
        ("--settle",),
        "settle",
        "Seconds a file's size and time must stay the same before it counts as complete.",
        t.seconds(0),
        5,
    ),
    Option(
        ("--webhook",),
        "webhooks",
        "POST a completion event here. Repeatable.",
        t.WebhookUrl(),
        toml="webhook",
        field="webhooks.urls",
        record="webhooks",
        recorded=len,  # how many, never the URLs: a query string may hold a token
        multiple=True,
        envvar="CSVLOAD_WEBHOOK_URL",
    ),
    Option(
        ("--webhook-secret",),
        "webhook_secret",
        "Sign webhook events with HMAC-SHA256 (prefer $CSVLOAD_WEBHOOK_SECRET).",
        field="webhooks.secret",
        metavar="SECRET",
        envvar="CSVLOAD_WEBHOOK_SECRET",
    ),
    Option(
        ("--webhook-timeout",),
        "webhook_timeout",
        "Seconds per delivery attempt.",
        t.seconds(0.1),
        10,
        field="webhooks.timeout",
    ),
    Option(
        ("--webhook-retries",),
        "webhook_retries",
        "Retries after the first attempt.",
        t.Count(0),
        2,
    ),
    Option(
        ("--webhook-on-dry-run",),
        "webhook_on_dry_run",
        "Send the event for a dry run too.",
        is_flag=True,
    ),
    Option(
        ("--default",),
        "defaults",
        "A value for new rows where the file has none: created_at=now. Repeatable.",
        t.Assignment(now=True),
        toml="default",
        field="options.binding.defaults",
        record="defaults",
        multiple=True,
    ),
    Option(
        ("--touch",),
        "touch",
        "Set COLUMN to the transaction's time on inserted and changed rows (default: "
        "updated_at, when the table has it and the file does not).",
        t.Touch(),
        toml="touch",  # touch = false is --no-touch: see feed_setting()
        field="options.binding.touch",
        record="touch",
        metavar="COLUMN",
    ),
    Option(
        ("--no-touch",),
        "no_touch",
        "Touch no column.",
        is_flag=True,
        field="options.binding.no_touch",
        record="no_touch",
    ),
    Option(
        ("--missing",),
        "missing",
        "What to do with the rows in scope that the file does not list.",
        t.Choice(MODES),
        "keep",
        toml="missing",
        field="options.missing",
        record="missing",
    ),
    Option(
        ("--active-column",),
        "active_column",
        "The boolean column --missing deactivate sets to false.",
        t.Name("a column name"),
        "active",
        toml="active_column",
        field="options.active_column",
        record="active_column",
        metavar="COLUMN",
    ),
    Option(
        ("--max-missing",),
        "max_missing",
        "Fail instead of deactivating or deleting more rows than N, or P% of those in scope.",
        t.Limit(),
        "10%",
        toml="max_missing",
        field="options.max_missing",
        record="max_missing",
    ),
    Option(
        ("--mode",),
        "mode",
        "upsert: add new keys and change existing rows; insert: only add new keys; update:"
        " only change existing rows.",
        t.Choice(control.MODES),
        "upsert",
        toml="mode",
        field="options.binding.mode",
        record="mode",
    ),
    Option(
        ("--update",),
        "update",
        "On existing rows only these columns change; the file's others go into new rows"
        " only.",
        t.Columns("--update"),
        toml="update",
        field="options.binding.update",
        record="update",
    ),
    Option(
        ("--keep",),
        "keep",
        "Columns written into new rows only, never changed on existing rows.",
        t.Columns("--keep"),
        (),
        toml="keep",
        field="options.binding.keep",
        record="keep",
    ),
    Option(
        ("--fill",),
        "fill",
        "Columns written on an existing row only where it holds NULL or ''.",
        t.Columns("--fill"),
        (),
        toml="fill",
        field="options.binding.fill",
        record="fill",
    ),
    Option(
        ("--empty",),
        "empty",
        "What an empty field does to an existing row: keep (the stored value stays) or"
        " clear; COLUMN=keep for one column. Repeatable.",
        t.EmptyRule(),
        toml="empty",
        field="options.binding.empty",
        record="empty",
        metavar="keep|clear|COLUMN=keep|clear",
        multiple=True,
    ),
    Option(
        ("--min-rows",),
        "min_rows",
        "Fail when the file has fewer data rows than N, or than P% of the rows in scope.",
        t.Limit("--min-rows"),
        toml="min_rows",
        field="options.guards.min_rows",
        record="min_rows",
    ),
    Option(
        ("--max-updated",),
        "max_updated",
        "Fail instead of updating more existing rows than N, or P% of those in scope.",
        t.Limit("--max-updated"),
        toml="max_updated",
        field="options.guards.max_updated",
        record="max_updated",
    ),
    Option(
        ("--max-change",),
        "max_change",
        "Hold back (reject) a row whose numeric COLUMN would move by more than P% of its"
        " stored value: price=50%. Repeatable.",
        t.Change(),
        toml="max_change",
        field="options.guards.max_change",
        record="max_change",
        multiple=True,
    ),
    Option(
        ("--changes",),
        "changes_path",
        "Write one CSV row per key the import changed to this file.",
        t.FilePath(),
        toml="changes",
        field="options.changes_path",
        record="changes",
    ),
    Option(
        ("--header",),
        "headers",
        "An HTTP header for a URL source, 'Name: value'; a value env:NAME is read from the"
        " environment. Repeatable.",
        t.Header(),
        toml="header",
        field="source.remote.headers",
        multiple=True,
    ),
    Option(
        ("--if-changed",),
        "if_changed",
        "For a URL source: import only when it changed since the last successful import"
        " into the table; else end as unchanged_feed, exit 0.",
        t.Flag(),
        toml="if_changed",
        field="source.remote.if_changed",
        record="if_changed",
        is_flag=True,
    ),
    Option(
        ("--fetch-connect-timeout",),
        "fetch_connect_timeout",
        "Seconds to connect to a URL source's server.",
        t.seconds(0.1),
        10,
        field="source.remote.connect_timeout",
    ),
    Option(
        ("--fetch-read-timeout",),
        "fetch_read_timeout",
        "Seconds a URL source's server may stay silent.",
        t.seconds(0.1),
        60,
        field="source.remote.read_timeout",
    ),
    Option(
        ("--fetch-retries",),
        "fetch_retries",
        "Retries of a URL source before the first byte of its body (connection errors, 429,"
        " 5xx).",
        t.Count(0),
        3,
        toml="fetch_retries",
        field="source.remote.retries",
        record="fetch_retries",
    ),
    Option(
        ("--ca-file",),
        "ca_file",
        "Trust the CA certificates in this PEM file for an https:// source (default: the"
        " system's, or $SSL_CERT_FILE).",
        t.InputFile(),
        toml="ca_file",
        field="source.remote.ca_file",
    ),
    Option(
        ("--identity",),
        "identity",
        "The private key for an sftp:// source (default: the SSH agent and ~/.ssh/id_*).",
        t.InputFile(),
        toml="identity",
        field="source.remote.identity",
    ),
    Option(
        ("--known-hosts",),
        "known_hosts",
        "The known_hosts file an sftp:// server's key must be in (default:"
        " ~/.ssh/known_hosts).",
        t.InputFile(),
        toml="known_hosts",
        field="source.remote.known_hosts",
    ),
    # A feed's source: the PATH argument on the command line, so no command has this flag.
    Option(("--source",), "source", type=t.Source(), toml="source"),
    Option(
        ("--feed",),
        "feed",
        "Take the options of [feeds.NAME] in the config.",
        metavar="NAME",
    ),
    Option(
        ("--config",),
        "config_path",
        "The config file for --feed (default: ./csvload.toml).",
        click.Path(dir_okay=False),
    ),
)
OPTIONS = {o.name: o for o in _OPTIONS}

# Options of one run rather than of a feed (--dsn, --dry-run, --json, --quiet, the
# timeouts) have no csvload.toml key: the file is shared, the run is not.
FEED_KEYS = {o.toml: o for o in _OPTIONS if o.toml}
# A feed key -> the command's parameter it sets.
FEED_PARAMS = {o.toml: o.name for o in _OPTIONS if o.toml}
RECORDED = tuple(o for o in _OPTIONS if o.record)

# How to read a CSV and which table it goes to: shared by import and verify.
INPUT = ("encoding", "delimiter", "table", "key", "mapping", "decimal_comma", "preset", "scope")
# How to fetch a URL source (read/remote/): shared by import and verify.
REMOTE = (
    "headers", "fetch_connect_timeout", "fetch_read_timeout", "fetch_retries", "ca_file",
    "identity", "known_hosts",
)  # fmt: skip


def click_options(names: Iterable[str], help: dict[str, str | None] | None = None) -> Callable:
    """The decorators of the options `names`, listed in --help in that order; `help`
    words an option differently for one command."""
    help = help or {}
    names = tuple(names)

    def decorate(f):
        for name in reversed(names):
            f = OPTIONS[name].decorator(help.get(name, OPTIONS[name].help))(f)
        return f

    return decorate


dsn_option = click_options(("dsn",))
connect_timeout_option = click_options(("connect_timeout",))


def fields(params: dict[str, object], names: Iterable[str]) -> dict[str, dict[str, object]]:
    """The values of `names` grouped by where they go: {"options.binding": {"touch":
    ...}, "source": {...}, "": {"dsn": ...}}."""
    grouped: dict[str, dict[str, object]] = {}
    for name in names:
        option = OPTIONS[name]
        if option.field:
            where, _, attribute = option.field.rpartition(".")
            grouped.setdefault(where, {})[attribute] = params[name]
    return grouped


def feed_setting(key: str, value: object, base: Path) -> dict[str, object]:
    """What the feed key `key` sets, checked by its option's type: {key: value}, or
    {"no_touch": True} for `touch = false`.  Raises paramtypes.FileValueError."""
    normal = FEED_KEYS[key].type.from_file(key, value, base)  # type: ignore[union-attr]
    if key == "touch" and normal is False:
        return {"no_touch": True}
    return {key: normal}


def fail(error: CsvloadError):
    """Print the one-line error and exit with its status."""
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_status)
