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
(`max_errors` for `--max-errors`); OPTIONS lists them, and each option's own type
(options.py, paramtypes.py) checks its value and normalises it to the shape the command
line's option produces.  This module checks the file's shape: tables, key names, secrets.
load_feed() returns the feed's settings, and merge() lays them under the command line's:
an option given on the command line wins over the file, and the file wins over the
command line's defaults.

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

import difflib
import json
import os
import re
import stat
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from csvload.cli.options import FEED_KEYS, feed_setting
from csvload.cli.paramtypes import FileValueError, dotted, show
from csvload.errors import ConfigError

CONFIG_FILE = "csvload.toml"

# The keys a feed may set: import options under their long names with underscores.
OPTIONS = FEED_KEYS

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
        if key not in OPTIONS:
            raise checker.error(f"unknown key {key!r}{_suggest(key, OPTIONS)}", key)
        try:
            settings.update(feed_setting(key, value, checker.base))
        except FileValueError as e:
            raise checker.error(e.message, *e.keys) from e
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


# -- checking ----------------------------------------------------------------------------------


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
            # In `map` the keys are CSV headers and the values column names; in `header`
            # HTTP header names, whose values Header.from_file holds to env:NAME.
            named = len(path) == 3 and path[0] == "feeds" and path[2] in ("map", "header")
            if env and not named:
                if path[:1] == ("feeds",) and len(path) >= 2:
                    what = f"feed {path[1]!r}: {dotted(here[2:])}"
                else:
                    what = dotted(here)
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
            raise self.at(("feeds",), f"feeds must be [feeds.NAME] tables, not {show(feeds)}")
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
            raise self.error(f"must be a table of options, not {show(table)}")
        return table
