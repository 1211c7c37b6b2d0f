"""Feeds in a config file: `csvload import --feed NAME PATH` takes the import options of one
feed from `csvload.toml` in the working directory, or from `--config PATH`.

    [feeds.shop]
    table = "products"
    key = ["sku"]
    preset = "shopify"
    max_errors = 10
    map = { "Product Name" = "name" }
    default = { active = true }
    webhook = ["https://hooks.example.com/csvload"]

Each `[feeds.NAME]` table holds import options under their long names with underscores
(`max_errors` for `--max-errors`); OPTIONS lists them.  load_feed() checks the feed and
returns its values normalised to the shapes the command line's options produce (see
OPTIONS), and merge() lays them under the command line's: an option given on the command
line wins over the file, and the file wins over the command line's defaults.

Rules, and the choices behind them:

- Secrets never come from the file.  A key named like a secret (`webhook_secret`, `secret`,
  `dsn`, `database_url`, `password`, ...) anywhere in the file, in any feed, is an error
  that names the environment variable to use instead, and so is a webhook URL with a user
  or password in it.  A file like this gets committed; the environment does not.
- Only the feed asked for is checked key by key (the others may be for another csvload);
  the file as a whole must be valid TOML with nothing but `[feeds.NAME]` tables in it.
- Names are taken as the command line takes them: column names and the table name with
  surrounding blanks stripped, CSV headers in `map` exactly as written.
- `touch = false` is --no-touch: it is returned as the option `no_touch`, True.
- Relative paths (`changes`, `rejects`) are relative to the config file's directory, so a
  feed means the same from wherever it is run.
- The file is read whole, so it must be a regular file of at most 1 MiB (not /dev/zero, not
  a FIFO), in UTF-8 with or without a BOM; nesting too deep for tomllib and dotted keys of
  more than 100 parts are refused before they cost a stack overflow or hours.  The .env
  file read for DATABASE_URL (dotenv_setting) goes through the same reader.
- Every error is a ConfigError (exit status 2) with a one-line message naming the file,
  the line and the key.  tomllib reports no positions for what it parsed, so the line of a
  key is found by scanning the text for the `[feeds.NAME]` header and the `key =` line
  under it (dotted keys, `[feeds.NAME.default]` sub-tables and quoted keys included).
  That scan does not parse values; it skips multi-line strings by counting triple quotes,
  which is good enough for a config file, and when it finds nothing the message falls
  back to the nearest enclosing table's line, or to the file alone.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from csvload.errors import ConfigError, InputError, WebhookConfigError
from csvload.read.presets import PRESETS
from csvload.read.source import normalise_encoding
from csvload.webhook import check_url, redact_url

CONFIG_FILE = "csvload.toml"

MISSING_CHOICES = ("keep", "deactivate", "delete")

# What a secret-looking key should be given as instead.  Matched on the key's name,
# lowercased, with - read as _ (see _secret_hint).
_WEBHOOK_SECRET_ENV = "CSVLOAD_WEBHOOK_SECRET"
_DATABASE_ENV = "DATABASE_URL"


@dataclass(frozen=True)
class Feed:
    """One `[feeds.NAME]` table, checked and normalised."""

    name: str
    path: Path  # the config file it was read from
    # Option name (OPTIONS) -> normalised value, for the keys the file sets and only those.
    settings: dict[str, object]


def load_feed(path: Path | None, name: str, cwd: Path) -> Feed:
    """The feed `name` from the config file `path` (relative to `cwd`), or, when `path` is
    None, from csvload.toml in `cwd`.  Raises ConfigError."""
    if path is None:
        file, shown = cwd / CONFIG_FILE, CONFIG_FILE
    else:
        file, shown = cwd / path, str(path)
    hint = " (--feed reads it from the working directory; or give --config PATH)"
    text = read_text(file, shown, "TOML", hint if path is None else "")
    deep = _DEEP_KEY.search(text)
    if deep:
        line = text.count("\n", 0, deep.start()) + 1
        raise ConfigError(
            f"{shown} line {line}: a dotted key of more than {MAX_KEY_PARTS} parts, too deep "
            "to read"
        )
    checker = _Checker(shown, text, name, file.parent)
    try:
        document = tomllib.loads(text)
        checker.check_secrets(document, ())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(_syntax_message(shown, str(e), text)) from e
    except RecursionError as e:
        # tomllib parses nested arrays and inline tables recursively, and check_secrets
        # walks the tables it returns: `a = [[[[...` 100000 deep overflows the stack.
        raise ConfigError(f"{shown}: arrays or tables nested too deeply to read") from e
    table = checker.find_feed(document)
    settings: dict[str, object] = {}
    for key, value in table.items():
        check = OPTIONS.get(key)
        if check is None:
            raise checker.error(f"unknown key {key!r}{_suggest(key, OPTIONS)}", key)
        normal = check(checker, key, value)
        if key == "touch" and normal is False:
            settings["no_touch"] = True
        else:
            settings[key] = normal
    return Feed(name=name, path=file, settings=settings)


def merge(
    feed_settings: Mapping[str, object],
    cli_values: Mapping[str, object],
    cli_explicit: Collection[str],
    params: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """The options for one run: `cli_values` with each option the feed sets taken from the
    feed, unless the user gave that option explicitly.

    `cli_values` and `cli_explicit` are keyed by the command's parameter names (click's
    ctx.params, and the names whose ctx.get_parameter_source() is COMMANDLINE or
    ENVIRONMENT); `params` maps an option name to its parameter name where they differ
    (e.g. {"map": "mapping", "webhook": "webhooks", "rejects": "rejects_path"}).  An
    explicit option replaces the feed's value whole: `--map` on the command line drops
    the feed's `map`, rather than adding to it, so what runs is what the command says.
    `touch` and `no_touch` are one setting: either on the command line overrides the
    feed's `touch`, whichever form it has.
    """
    params = params or {}
    merged = dict(cli_values)
    for option, value in feed_settings.items():
        same = _SAME_SETTING.get(option, (option,))
        if not any(params.get(o, o) in cli_explicit for o in same):
            merged[params.get(option, option)] = value
    return merged


_SAME_SETTING = {"touch": ("touch", "no_touch"), "no_touch": ("touch", "no_touch")}


# -- reading ---------------------------------------------------------------------------------


# The most a config file (csvload.toml, .env) may hold.  Either is read whole, so a path
# like /dev/zero or a FIFO, or a file grown by mistake, would otherwise fill memory or
# hang: `--config /dev/zero` reached 3.5 GB in 10 s.
MAX_FILE_BYTES = 1 << 20


def read_text(file: Path, shown: str, kind: str, hint: str = "") -> str:
    """The text of a small UTF-8 file of settings, a leading BOM dropped.  Anything but a
    regular file of at most MAX_FILE_BYTES is a ConfigError; `kind` ("TOML", ".env") names
    the file's kind in messages, and `hint` follows "no such file"."""
    what = "config file" if kind == "TOML" else f"{kind} file"
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise ConfigError(f"{shown}: no such file{hint}") from e
    except PermissionError as e:
        raise ConfigError(f"{shown}: permission denied") from e
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read: {e.strerror}") from e
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{shown}: is a directory, not a {what}")
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"{shown}: not a regular file (a {what} is a plain file, not a device or a pipe)"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read: {e.strerror}") from e
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{shown}: more than {MAX_FILE_BYTES >> 20} MiB, too big for a {what}")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{shown} line {line}: bytes that are not valid UTF-8 (a {kind} file is UTF-8)"
        ) from e


# tomllib takes time quadratic in the parts of a dotted key (and so does _key_lines):
# 8000 parts took 0.7 s, and the 500000 of a 1 MiB `a.a.a... = 1` would take hours.  A
# feed's keys have at most four (feeds.NAME.default.COLUMN).  Bare and quoted parts; the
# pattern may also match a long dotted text inside a string, which no feed has either.
MAX_KEY_PARTS = 100
# Possessive, and starting where a bare part can start, so that the search stays linear
# on a long run of letters that is not a key.
_KEY_PART = r"""(?:[A-Za-z0-9_-]++|"[^"\n]*+"|'[^'\n]*+')[ \t]*+\.[ \t]*+"""
_DEEP_KEY = re.compile(f"(?<![A-Za-z0-9_-])(?:{_KEY_PART}){{{MAX_KEY_PARTS}}}")


def dotenv_setting(file: Path, shown: str, name: str) -> tuple[str, int] | None:
    """The value of `name` in the .env file `file`, and its line; None when the file does
    not set it (or sets it empty).  Every line python-dotenv cannot parse is a
    ConfigError naming its line, whichever variable it is about: python-dotenv itself
    skips such a line with a logged warning, and an unclosed quote in DATABASE_URL's line
    would then have silently meant the managed local database."""
    import io

    from dotenv import dotenv_values  # only when there is a .env to read
    from dotenv.parser import parse_stream

    text = read_text(file, shown, ".env")
    line = None
    for binding in parse_stream(io.StringIO(text)):
        # A binding's text starts with the blank lines before it, and its line number with
        # theirs.
        original = binding.original.string
        at = binding.original.line + original[: len(original) - len(original.lstrip())].count(
            "\n"
        )
        if binding.error:
            raise ConfigError(
                f"{shown} line {at}: not a NAME=value line python-dotenv can read "
                "(check for an unclosed quote)"
            )
        if binding.key == name:
            line = at  # the last one wins, as in python-dotenv
    value = dotenv_values(stream=io.StringIO(text)).get(name) if line else None
    return (value, line) if value and line else None


_AT = re.compile(r"^(?P<reason>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")


def _syntax_message(shown: str, message: str, text: str) -> str:
    """tomllib's "Reason (at line N, column M)" as "FILE line N, column M: not valid TOML:
    Reason"; "(at end of document)" becomes the last line."""
    m = _AT.match(message)
    if m:
        where = f"{shown} line {m['line']}, column {m['column']}"
        return f"{where}: not valid TOML: {m['reason']}"
    end = " (at end of document)"
    if message.endswith(end):
        last = len(text.splitlines()) or 1
        reason = message.removesuffix(end)
        return f"{shown} line {last}: not valid TOML: {reason} (at the end of the file)"
    return f"{shown}: not valid TOML: {message}"


# -- where a key is ----------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted_key(text: str) -> tuple[tuple[str, ...], str] | None:
    """The dotted key at the start of `text` (bare or quoted parts) and the text after it."""
    parts: list[str] = []
    i = 0
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            return None
        if text[i] == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if end >= len(text):
                return None
            try:
                parts.append(json.loads(text[i : end + 1]))
            except ValueError:
                parts.append(text[i + 1 : end])
            i = end + 1
        elif text[i] == "'":
            end = text.find("'", i + 1)
            if end < 0:
                return None
            parts.append(text[i + 1 : end])
            i = end + 1
        else:
            m = _BARE_KEY.match(text, i)
            if not m:
                return None
            parts.append(m.group())
            i = m.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return tuple(parts), text[i:]


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Full key path -> the 1-based line that defines it, for every table header and
    `key =` line in the text: a scan, not a parse (see the module docstring)."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    open_string: str | None = None  # the triple quote of a multi-line string being skipped
    for number, line in enumerate(text.splitlines(), 1):
        if open_string is not None:
            if line.count(open_string) % 2:
                open_string = None
            continue
        stripped = line.strip()
        if stripped.startswith("["):
            double = stripped.startswith("[[")
            parsed = _dotted_key(stripped[2 if double else 1 :])
            if parsed and parsed[1].startswith("]]" if double else "]"):
                table = parsed[0]
                _define(lines, table, number)
            continue
        parsed = _dotted_key(stripped)
        if not parsed or not parsed[1].startswith("="):
            continue
        _define(lines, table + parsed[0], number)
        value = parsed[1][1:]
        for quote in ('"""', "'''"):
            if value.count(quote) % 2:
                open_string = quote
                break
    return lines


def _define(lines: dict[tuple[str, ...], int], path: tuple[str, ...], number: int) -> None:
    # A path and the tables it implies ([feeds.shop.default] implies feeds and feeds.shop)
    # are defined where they first appear.
    for n in range(1, len(path) + 1):
        lines.setdefault(path[:n], number)


def _dotted(parts: tuple[str, ...]) -> str:
    """A key path as TOML would write it: bare parts as they are, others quoted."""
    return ".".join(
        p if _BARE_KEY.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in parts
    )


# -- checking ----------------------------------------------------------------------------------


def _show(value: object) -> str:
    """A TOML value as it would be written in the file, or its kind for arrays and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _suggest(word: str, choices: Collection[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (keys: {', '.join(sorted(choices))})"


def _secret_hint(name: str) -> str | None:
    """The environment variable a secret-looking key belongs in, or None."""
    key = name.strip().lower().replace("-", "_")
    if "secret" in key:
        return _WEBHOOK_SECRET_ENV
    if key in ("dsn", "database_url", "db_url", "passwd", "pwd") or "password" in key:
        return _DATABASE_ENV
    return None


_LISTED = 20  # the feeds an unknown feed's error lists, of a file that may hold thousands


class _Checker:
    """Checks one feed and words its errors: file, line, feed and key."""

    def __init__(self, shown: str, text: str, feed: str, base: Path):
        self.shown = shown
        self.text = text
        self.feed = feed
        self.base = base  # relative paths in the feed are relative to this directory
        self._lines: dict[tuple[str, ...], int] | None = None

    def line(self, path: tuple[str, ...]) -> int | None:
        """The line of `path`, or of the nearest enclosing table the scan found."""
        if self._lines is None:
            self._lines = _key_lines(self.text)
        for n in range(len(path), 0, -1):
            if path[:n] in self._lines:
                return self._lines[path[:n]]
        return None

    def at(self, path: tuple[str, ...], message: str) -> ConfigError:
        line = self.line(path)
        where = f"{self.shown} line {line}" if line else self.shown
        return ConfigError(f"{where}: {message}")

    def error(self, message: str, *keys: str) -> ConfigError:
        """An error about key path `keys` inside this feed."""
        return self.at(("feeds", self.feed, *keys), f"feed {self.feed!r}: {message}")

    def check_secrets(self, table: dict, path: tuple[str, ...]) -> None:
        for key, value in table.items():
            here = (*path, key)
            env = _secret_hint(key)
            # In `map` the keys are CSV headers and the values column names: no secrets.
            if env and not (len(path) == 3 and path[0] == "feeds" and path[2] == "map"):
                if path[:1] == ("feeds",) and len(path) >= 2:
                    what = f"feed {path[1]!r}: {_dotted(here[2:])}"
                else:
                    what = _dotted(here)
                raise self.at(
                    here,
                    f"{what} is a secret, and secrets are never read from the config file "
                    f"(set {env} in the environment instead)",
                )
            if isinstance(value, dict):
                self.check_secrets(value, here)

    def find_feed(self, document: dict) -> dict:
        for key in document:
            if key != "feeds":
                raise self.at(
                    (key,),
                    f"unknown table or key {key!r} (the file holds [feeds.NAME] tables)",
                )
        feeds = document.get("feeds", {})
        if not isinstance(feeds, dict):
            raise self.at(("feeds",), f"feeds must be [feeds.NAME] tables, not {_show(feeds)}")
        if self.feed not in feeds:
            if not feeds:
                known = "the file has no [feeds.NAME] tables"
            else:
                names = sorted(feeds)
                more = f", ... ({len(names)} in all)" if len(names) > _LISTED else ""
                known = f"feeds: {', '.join(names[:_LISTED])}{more}"
                close = difflib.get_close_matches(self.feed, list(feeds), n=1)
                if close:
                    known += f"; did you mean {close[0]!r}?"
            raise ConfigError(f"{self.shown}: no feed {self.feed!r} ({known})")
        table = feeds[self.feed]
        if not isinstance(table, dict):
            raise self.error(f"must be a table of options, not {_show(table)}")
        return table


# -- the options -------------------------------------------------------------------------------

_Check = Callable[[_Checker, str, object], object]


def _string(c: _Checker, key: str, value: object, what: str = "a string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise c.error(f"{key} must be {what}, not {_show(value)}", key)
    return value


def _column(c: _Checker, key: str, value: object, *keys: str) -> str:
    where = keys or (key,)
    if not isinstance(value, str) or not value.strip():
        raise c.error(f"{_dotted(where)} must be a column name, not {_show(value)}", *where)
    return value.strip()


def _integer(minimum: int) -> _Check:
    def check(c: _Checker, key: str, value: object) -> int:
        # bool is an int in Python, but `max_errors = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise c.error(f"{key} must be an integer >= {minimum}, not {_show(value)}", key)
        return value

    return check


def _choice(choices: Collection[str]) -> _Check:
    def check(c: _Checker, key: str, value: object) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise c.error(f"{key} must be one of {', '.join(choices)}, not {_show(value)}", key)

    return check


def _text(value: object) -> str | None:
    """A TOML scalar as a user would type it after --default COL=: None for arrays/tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return None


def _check_table(c: _Checker, key: str, value: object) -> tuple[tuple[str, str], ...]:
    """default and scope: {column = value} -> ((column, value as text), ...)."""
    if not isinstance(value, dict):
        raise c.error(f"{key} must be a table of column = value, not {_show(value)}", key)
    pairs: dict[str, str] = {}
    for column, item in value.items():
        name = _column(c, key, column, key, column)
        text = _text(item)
        if text is None:
            raise c.error(
                f"{_dotted((key, column))} must be a string, number, boolean or date, "
                f"not {_show(item)}",
                key,
                column,
            )
        if name in pairs:
            raise c.error(f"{key} names column {name!r} twice", key, column)
        pairs[name] = text
    return tuple(pairs.items())


def _check_key(c: _Checker, key: str, value: object) -> tuple[str, ...]:
    # A string is read as --key reads it: COL[,COL,...].
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise c.error(f"key must be a list of column names, not {_show(value)}", key)
    columns = tuple(_column(c, key, item) for item in items)
    if len(set(columns)) != len(columns):
        raise c.error("key names a column twice", key)
    return columns


def _check_map(c: _Checker, key: str, value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise c.error(f'map must be a table of "Header" = "column", not {_show(value)}', key)
    pairs = []
    for header, column in value.items():
        if not header.strip():
            raise c.error("map has an empty header name", key)
        pairs.append((header, _column(c, key, column, key, header)))
    return tuple(pairs)


def _check_touch(c: _Checker, key: str, value: object) -> str | bool:
    if value is False:
        return False  # load_feed files it as no_touch = True
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise c.error(f"touch must be a column name, or false for none, not {_show(value)}", key)


def _check_encoding(c: _Checker, key: str, value: object) -> str:
    _string(c, key, value, "an encoding name")
    try:
        normalise_encoding(value, _show(value))  # type: ignore[arg-type]
    except InputError as e:
        raise c.error(str(e), key) from e
    return value  # type: ignore[return-value]


def _check_delimiter(c: _Checker, key: str, value: object) -> str:
    if isinstance(value, str) and (
        value == "auto" or (len(value.encode()) == 1 and value not in '"\r\n')
    ):
        return value
    raise c.error(
        'delimiter must be one character other than a quote or a line break, or "auto", '
        f"not {_show(value)}",
        key,
    )


_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def _check_max_missing(c: _Checker, key: str, value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _PERCENT.fullmatch(value)
        if m and float(m[1]) <= 100:
            return f"{m[1]}%"
    raise c.error(
        f'max_missing must be an integer >= 0 or a percentage like "10%", not {_show(value)}',
        key,
    )


def _check_webhook(c: _Checker, key: str, value: object) -> tuple[str, ...]:
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list):
        raise c.error(f"webhook must be a URL or a list of URLs, not {_show(value)}", key)
    for url in urls:
        if not isinstance(url, str):
            raise c.error(f"webhook must be a URL or a list of URLs, not {_show(url)}", key)
        try:
            parts = urlsplit(url)
            userinfo = parts.username is not None or "@" in parts.netloc
        except ValueError:
            userinfo = False  # check_url words that error
        if userinfo:
            raise c.error(
                f"webhook URL {redact_url(url)} has a user or password in it, and secrets are "
                "never read from the config file (set CSVLOAD_WEBHOOK_URL in the environment "
                "instead)",
                key,
            )
        try:
            check_url(url)
        except WebhookConfigError as e:
            raise c.error(str(e), key) from e
    return tuple(urls)


def _check_path(c: _Checker, key: str, value: object) -> str:
    _string(c, key, value, "a file path")
    if value.startswith("~"):  # type: ignore[union-attr]
        raise c.error(
            f"{key}: ~ is not expanded in the config file (give an absolute path, or one "
            "relative to the config file)",
            key,
        )
    return str(c.base / value)  # type: ignore[operator]


def _check_flag(c: _Checker, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise c.error(f"{key} must be true or false, not {_show(value)}", key)
    return value


def _check_table_name(c: _Checker, key: str, value: object) -> str:
    return _string(c, key, value, "a table name").strip()


# The keys a feed may set, with their checks.  The values they return are in the shapes
# the command line's options produce: repeatable options as tuples, `map`, `default` and
# `scope` as tuples of (name, value) pairs in file order, `touch` as a column (and
# `touch = false` as no_touch = True), `max_missing` as an int or a "N%" string, paths as
# strings.  Options of one run rather than of a feed (--dsn, --dry-run, --json, --quiet,
# the timeouts) are not feed settings: the file is shared, the run is not.
OPTIONS: dict[str, _Check] = {
    "table": _check_table_name,
    "key": _check_key,
    "map": _check_map,
    "default": _check_table,
    "touch": _check_touch,
    "active_column": lambda c, key, value: _column(c, key, value),
    "scope": _check_table,
    "preset": _choice(tuple(PRESETS)),
    "encoding": _check_encoding,
    "delimiter": _check_delimiter,
    "decimal_comma": _check_flag,
    "max_errors": _integer(0),
    "batch_size": _integer(1),
    "missing": _choice(MISSING_CHOICES),
    "max_missing": _check_max_missing,
    "changes": _check_path,
    "rejects": _check_path,
    "webhook": _check_webhook,
}
