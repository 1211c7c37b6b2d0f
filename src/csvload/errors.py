"""Every error csvload raises on purpose, and the exit codes the CLI maps them to.

Each message is one line that names what went wrong (the file and line where there is
one) and ends with a hint in parentheses where one helps.
"""

from enum import IntEnum


class ExitStatus(IntEnum):
    """The process exit codes; the README lists them."""

    OK = 0
    FAILED = 1
    USAGE = 2
    REJECTED_ROWS = 3
    WEBHOOK_FAILED = 4
    INTERRUPTED = 130
    TERMINATED = 143


class CsvloadError(Exception):
    """Base class: an expected failure with a one-line message for the user."""

    exit_status = ExitStatus.FAILED


class InputError(CsvloadError):
    """The input file cannot be opened, decoded or understood as a product CSV."""


class MissingColumnError(InputError):
    """A required column (sku or name) is absent from the header."""


class MappingError(CsvloadError):
    """--map, --key, --default or --touch names a column the target cannot take."""

    exit_status = ExitStatus.USAGE


class TargetError(CsvloadError):
    """The target table cannot take this import: no such table, no unique key, or a column
    that new rows need and nothing fills."""


class MissingGuardError(CsvloadError):
    """A full feed would deactivate or delete more rows than --max-missing allows."""


class GuardError(CsvloadError):
    """The file has fewer rows than --min-rows asks for, or the import would update more
    rows than --max-updated allows; nothing was changed."""


class ConstraintError(CsvloadError):
    """The file would break one of the table's unique indexes; nothing was written."""


class TooManyRejectsError(CsvloadError):
    """More rows were rejected than --max-errors allows; nothing was written."""


class OutputPathError(CsvloadError):
    """An output path (--rejects, --changes) is the input, another output, or not a regular
    file or a new path; caught before anything is read."""

    exit_status = ExitStatus.USAGE

    def __init__(self, option: str, reason: str):
        super().__init__(f"{option}: {reason}")
        self.option, self.reason = option, reason


class OutputWriteError(CsvloadError):
    """A file csvload writes (rejects, changes, generate's output) cannot be created or
    written whole; it is not put in place, and an import is rolled back."""


class DatabaseError(CsvloadError):
    """The database refused or lost the work; the transaction was rolled back."""


class DsnError(CsvloadError):
    """The DSN cannot be parsed: --dsn, DATABASE_URL or .env gives one libpq cannot read."""

    exit_status = ExitStatus.USAGE


class NoTableError(DatabaseError):
    """The products table does not exist yet."""


class ServerError(CsvloadError):
    """The managed local PostgreSQL server cannot be set up or started."""


class WebhookConfigError(CsvloadError):
    """A webhook URL or option is unusable; caught while parsing options, before any import."""

    exit_status = ExitStatus.USAGE


class Interrupted(CsvloadError):
    """The import was stopped by a signal and rolled back."""

    exit_status = ExitStatus.INTERRUPTED


class RunNotFoundError(CsvloadError):
    """No recorded run matches the run id given."""


class ConfigError(CsvloadError):
    """The config file is missing, unreadable or not TOML, or the feed asked for is unusable."""

    exit_status = ExitStatus.USAGE


class PresetError(CsvloadError):
    """A --preset cannot load into this target table: it lacks the preset's key column."""

    exit_status = ExitStatus.USAGE


class CitusError(CsvloadError):
    """The database is not Citus, or a table is not distributed the way the command needs."""


class DropFolderError(CsvloadError):
    """The drop folder cannot be watched (another watcher holds it, or it is not writable),
    or a file in it cannot be moved to done/ or failed/."""
