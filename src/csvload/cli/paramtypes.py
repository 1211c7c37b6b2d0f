"""The types of csvload's options: each one checks and normalises a value from the command
line (click's convert()) and the same option's value from csvload.toml (from_file()), so
a rule is written once and both ways in are held to it.

A value from the file arrives typed (an integer, a boolean, a table) rather than as text,
and its errors are worded as TOML writes values (`"auto"` rather than `'auto'`): from_file()
raises FileValueError with the message after `FILE line N: feed 'NAME': `, and the key path
whose line the config reader names."""

from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path
from urllib.parse import urlsplit

import click

from csvload import webhook
from csvload.errors import CsvloadError
from csvload.load.guards import parse_change, parse_share
from csvload.load.missing import parse_limit
from csvload.read.remote.urls import has_credentials, is_remote, redact
from csvload.read.source import normalise_encoding
from csvload.table.binding import NOW
from csvload.table.catalog import parse_key
from csvload.table.control import EMPTY


class FileValueError(click.BadParameter):
    """A csvload.toml value its option's type refuses."""

    def __init__(self, message: str, *keys: str):
        super().__init__(message)
        self.keys = keys  # the key path in the feed whose line the error names


def show(value: object) -> str:
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


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(parts: tuple[str, ...]) -> str:
    """A key path as TOML would write it: bare parts as they are, others quoted."""
    return ".".join(
        p if _BARE_KEY.fullmatch(p) else json.dumps(p, ensure_ascii=False) for p in parts
    )


def _wrong(what: str, value: object, *keys: str) -> FileValueError:
    return FileValueError(f"{dotted(keys)} must be {what}, not {show(value)}", *keys)


def _name(value: object, what: str, *keys: str) -> str:
    """A name in the file (a table, a column): a string that is not blank, stripped as the
    command line's names are."""
    if not isinstance(value, str) or not value.strip():
        raise _wrong(what, value, *keys)
    return value.strip()


class FileType(click.ParamType):
    """A click type that also reads its option from csvload.toml."""

    def from_file(self, key: str, value: object, base: Path) -> object:
        """`value` of the feed key `key`, checked and in the shape convert() returns; a
        relative path is relative to `base`, the config file's directory."""
        raise NotImplementedError

    def checked(self, check, value, param, ctx):
        """check(value), with the library's CsvloadError worded as click's error."""
        try:
            return check(value)
        except CsvloadError as e:
            self.fail(str(e), param, ctx)


class Name(FileType):
    """A table or column name: any text on the command line (the target says whether it
    exists), a non-blank string in the file."""

    name = "text"

    def __init__(self, what: str):
        self.what = what

    def convert(self, value, param, ctx):
        return value

    def from_file(self, key, value, base):
        return _name(value, self.what, key)


class Flag(click.types.BoolParamType):
    """--decimal-comma and the like; `true` or `false` in the file."""

    def from_file(self, key, value, base):
        if not isinstance(value, bool):
            raise _wrong("true or false", value, key)
        return value


class Count(click.IntRange):
    """A whole number of at least `minimum`; the file's must be a TOML integer."""

    def __init__(self, minimum: int):
        super().__init__(min=minimum)

    def from_file(self, key, value, base):
        # bool is an int in Python, but `max_errors = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < self.min:
            raise _wrong(f"an integer >= {self.min}", value, key)
        return value


class Choice(click.Choice):
    """One of a few words; the file's in any case, as TOML has no other way to be lenient."""

    def from_file(self, key, value, base):
        if isinstance(value, str) and value.strip().lower() in self.choices:
            return value.strip().lower()
        raise _wrong(f"one of {', '.join(self.choices)}", value, key)


class Delimiter(FileType):
    name = "text"

    @staticmethod
    def rule(auto: str) -> str:
        return f"one character other than a quote or a line break, or {auto}"

    @staticmethod
    def accepts(value: object) -> bool:
        return isinstance(value, str) and (
            value == "auto" or (len(value.encode()) == 1 and value not in '"\r\n')
        )

    def convert(self, value, param, ctx):
        if not self.accepts(value):
            self.fail(f"must be {self.rule(repr('auto'))}", param, ctx)
        return value

    def from_file(self, key, value, base):
        if not self.accepts(value):
            raise _wrong(self.rule(show("auto")), value, key)
        return value


class Encoding(FileType):
    name = "encoding"

    def convert(self, value, param, ctx):
        self.checked(normalise_encoding, value, param, ctx)
        return value

    def from_file(self, key, value, base):
        if not isinstance(value, str) or not value.strip():
            raise _wrong("an encoding name", value, key)
        try:
            normalise_encoding(value, show(value))
        except CsvloadError as e:
            raise FileValueError(str(e), key) from e
        return value


class Key(FileType):
    """--key supplier,sku; in the file that string or a list of names."""

    name = "COLUMN[,COLUMN...]"

    def convert(self, value, param, ctx):
        return value if isinstance(value, tuple) else self.checked(parse_key, value, param, ctx)

    def from_file(self, key, value, base):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise _wrong("a list of column names", value, key)
        columns = tuple(_name(item, "a column name", key) for item in items)
        if len(set(columns)) != len(columns):
            raise FileValueError(f"{key} names a column twice", key)
        return columns


class Columns(FileType):
    """--update, --keep, --fill: COLUMN[,COLUMN...]; in the file that string or a list of
    names."""

    name = "COLUMN[,COLUMN...]"

    def __init__(self, option: str):
        self.option = option

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        columns = tuple(part.strip() for part in value.split(","))
        if any(not part for part in columns):
            self.fail(f"{value!r}: give column names separated by commas", param, ctx)
        if len(set(columns)) != len(columns):
            self.fail(f"{value!r} names a column twice", param, ctx)
        return columns

    def from_file(self, key, value, base):
        return Key.from_file(self, key, value, base)  # the same shape as key = [...]


class EmptyRule(FileType):
    """--empty keep|clear for every column, or COLUMN=keep|clear (repeatable); in the file
    "keep", a table of column = "keep", or a list of both forms."""

    name = "keep|clear|COLUMN=keep|clear"

    @staticmethod
    def parse(text: str) -> tuple[str, str] | None:
        """("", how) for every column, (column, how) for one; None: not this shape."""
        column, sep, how = text.rpartition("=")
        how = how.strip().lower()
        if how not in EMPTY or (sep and not column.strip()):
            return None
        return (column.strip(), how)

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        rule = self.parse(value)
        if rule is None:
            self.fail(f"{value!r} is not keep, clear or COLUMN=keep|clear", param, ctx)
        return rule

    def from_file(self, key, value, base):
        items = value if isinstance(value, list) else [value]
        rules: list[tuple[str, str]] = []
        for item in items:
            if isinstance(item, dict):
                for column, how in item.items():
                    rule = self.parse(f"{column}={how}") if isinstance(how, str) else None
                    if rule is None:
                        raise _wrong('"keep" or "clear"', how, key, column)
                    rules.append(rule)
                continue
            rule = self.parse(item) if isinstance(item, str) else None
            if rule is None:
                raise _wrong(
                    '"keep", "clear", a table of column = "keep", or a list of them', item, key
                )
            rules.append(rule)
        return tuple(rules)


class Limit(FileType):
    """--max-missing (--min-rows, --max-updated) N or P%: a TOML integer, or a string that
    is a percentage."""

    name = "N|P%"

    def __init__(self, option: str = "--max-missing"):
        self.option = option

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        return self.checked(lambda v: parse_limit(v, self.option), value, param, ctx)

    def from_file(self, key, value, base):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                return parse_limit(value, self.option)
            except CsvloadError:
                pass
        raise _wrong('an integer >= 0 or a percentage like "10%"', value, key)


class Change(FileType):
    """--max-change COLUMN=P%, repeatable; in the file a table of column = "P%"."""

    name = "COLUMN=P%"

    def convert(self, value, param, ctx):
        return value if isinstance(value, tuple) else self.checked(parse_change, value, param, ctx)

    def from_file(self, key, value, base):
        if not isinstance(value, dict):
            raise _wrong('a table of column = "P%"', value, key)
        shares: dict[str, str] = {}
        for column, given in value.items():
            name = _name(column, "a column name", key, column)
            try:
                share = parse_share(given, f"{key}.{column}") if isinstance(given, str) else None
            except CsvloadError:
                share = None
            if share is None:
                raise _wrong('a percentage like "50%"', given, key, column)
            if name in shares:
                raise FileValueError(f"{key} names column {name!r} twice", key, column)
            shares[name] = share
        return tuple(shares.items())


def _text(value: object) -> str | None:
    """A TOML scalar as a user would type it after --default COL=: None for arrays/tables."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | datetime.date | datetime.time):
        return show(value)
    if isinstance(value, int | float):
        return repr(value)
    return None


class Assignment(FileType):
    """--default and --scope COLUMN=VALUE, repeatable; in the file a table of column =
    value.  For --default, `now` (in any case) is the transaction's time."""

    name = "COLUMN=VALUE"

    def __init__(self, now: bool = False):
        self.now = now

    def _value(self, given: str) -> str:
        return NOW if self.now and given.strip().lower() == NOW else given

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        column, sep, given = value.partition("=")
        if not sep or not column.strip():
            self.fail(f"{value!r} is not COLUMN=VALUE", param, ctx)
        return (column.strip(), self._value(given))

    def from_file(self, key, value, base):
        if not isinstance(value, dict):
            raise _wrong("a table of column = value", value, key)
        pairs: dict[str, str] = {}
        for column, item in value.items():
            name = _name(column, "a column name", key, column)
            text = _text(item)
            if text is None:
                raise _wrong("a string, number, boolean or date", item, key, column)
            if name in pairs:
                raise FileValueError(f"{key} names column {name!r} twice", key, column)
            pairs[name] = self._value(text)
        return tuple(pairs.items())


class Mapping(FileType):
    """--map 'Header In File=column', repeatable; in the file a table of "Header" =
    "column".  Whether the column exists is the target's to say, later."""

    name = "HEADER=COLUMN"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        header, sep, target = value.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            self.fail(f"{value!r} is not HEADER=COLUMN", param, ctx)
        return (header, target.strip())

    def from_file(self, key, value, base):
        if not isinstance(value, dict):
            raise _wrong('a table of "Header" = "column"', value, key)
        pairs = []
        for header, column in value.items():
            if not header.strip():
                raise FileValueError(f"{key} has an empty header name", key)
            pairs.append((header, _name(column, "a column name", key, header)))
        return tuple(pairs)


class Touch(FileType):
    """--touch COLUMN; in the file a column, or false for --no-touch."""

    name = "text"

    def convert(self, value, param, ctx):
        return value

    def from_file(self, key, value, base):
        if value is False:
            return False
        if isinstance(value, str) and value.strip():
            return value.strip()
        raise _wrong("a column name, or false for none", value, key)


class FilePath(click.Path):
    """A file csvload writes; in the file relative to the config file's directory."""

    def __init__(self):
        super().__init__(dir_okay=False)

    def from_file(self, key, value, base):
        if not isinstance(value, str) or not value.strip():
            raise _wrong("a file path", value, key)
        if value.startswith("~"):
            raise FileValueError(
                f"{key}: ~ is not expanded in the config file (give an absolute path, or one "
                "relative to the config file)",
                key,
            )
        return str(base / value)


class InputFile(FilePath):
    """A file csvload reads (--ca-file, --identity, --known-hosts); in the file relative
    to the config file's directory."""

    def __init__(self):
        click.Path.__init__(self, exists=True, dir_okay=False)


# A header's name: an HTTP token (RFC 9110).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_PREFIX = "env:"


class Header(FileType):
    """--header 'Name: value', repeatable; a value env:NAME is read from the environment
    (cli/sources.py).  In the file only a table of Name = "env:NAME": a secret written
    there is refused.  A value is never echoed in an error: it may be a token."""

    name = "'NAME: VALUE'"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, sep, text = value.partition(":")
        if not sep or not _HEADER_NAME.fullmatch(name.strip()):
            self.fail("give 'Name: value' (a header name, a colon, then the value)", param, ctx)
        text = text.strip()
        if text.startswith(ENV_PREFIX) and not _ENV_NAME.fullmatch(text[len(ENV_PREFIX) :]):
            self.fail(f"{name.strip()}: env: takes the name of an environment variable", param, ctx)
        return (name.strip(), text)

    def from_file(self, key, value, base):
        if not isinstance(value, dict):
            raise FileValueError(f'{key} must be a table of "Header-Name" = "env:VARIABLE"', key)
        headers = []
        for name, item in value.items():
            if not _HEADER_NAME.fullmatch(name.strip()):
                raise FileValueError(f"{key}: {show(name)} is not a header name", key, name)
            given = item if isinstance(item, str) else ""
            if not (given.startswith(ENV_PREFIX) and _ENV_NAME.fullmatch(given[4:])):
                raise FileValueError(
                    f'{dotted((key, name))} must be "env:VARIABLE": secrets are never read from'
                    " the config file (set the value in the environment and name it here)",
                    key,
                    name,
                )
            headers.append((name.strip(), given))
        return tuple(headers)


class Source(FileType):
    """A feed's `source`: a URL (https://, http://, sftp://) without credentials in it, or
    a path relative to the config file.  On the command line it is the PATH argument."""

    name = "URL"

    def convert(self, value, param, ctx):
        return value

    def from_file(self, key, value, base):
        if not isinstance(value, str) or not value.strip():
            raise _wrong("a URL or a file path", value, key)
        value = value.strip()
        if not is_remote(value):
            return str(base / value)
        if has_credentials(value):
            raise FileValueError(
                f"source {redact(value)} has credentials in it, and secrets are never read from"
                ' the config file (give the URL as PATH from the environment: "$FEED_URL"; or'
                ' header = { Authorization = "env:VARIABLE" })',
                key,
            )
        return value


class WebhookUrl(FileType):
    """--webhook URL, repeatable; in the file a URL or a list of them, never with a user or
    password in it (the file gets committed; CSVLOAD_WEBHOOK_URL does not)."""

    name = "URL"

    def convert(self, value, param, ctx):
        return self.checked(webhook.check_url, value, param, ctx)

    def from_file(self, key, value, base):
        urls = [value] if isinstance(value, str) else value
        if not isinstance(urls, list):
            raise _wrong("a URL or a list of URLs", value, key)
        for url in urls:
            if not isinstance(url, str):
                raise _wrong("a URL or a list of URLs", url, key)
            try:
                parts = urlsplit(url)
                userinfo = parts.username is not None or "@" in parts.netloc
            except ValueError:
                userinfo = False  # check_url words that error
            if userinfo:
                raise FileValueError(
                    f"webhook URL {webhook.redact_url(url)} has a user or password in it, and "
                    "secrets are never read from the config file (set CSVLOAD_WEBHOOK_URL in "
                    "the environment instead)",
                    key,
                )
            try:
                webhook.check_url(url)
            except CsvloadError as e:
                raise FileValueError(str(e), key) from e
        return tuple(urls)


class FiniteFloat(click.FloatRange):
    """A FloatRange that refuses inf and nan.  float() reads "inf" and "nan", and a range
    lets them through (nan compares false with every bound, inf passes a range with no
    maximum); they then failed deep inside as an OverflowError or a ValueError."""

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


# PostgreSQL takes lock_timeout and statement_timeout in milliseconds up to 2^31 - 1: 24
# days.  Every timeout has that ceiling, so none fails later on its size.
MAX_SECONDS = 2_147_483


def seconds(minimum: float) -> FiniteFloat:
    """The type of every option that is a number of seconds."""
    return FiniteFloat(min=minimum, max=MAX_SECONDS)
