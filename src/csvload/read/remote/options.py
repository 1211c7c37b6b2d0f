"""How to fetch a remote source (RemoteOptions), what the last successful import of it saw
(Previous, for --if-changed), what this fetch found (Fetched), and UnchangedFeed, raised
when --if-changed finds the source as it was."""

from __future__ import annotations

from dataclasses import dataclass, field

from csvload.errors import CsvloadError, ExitStatus


@dataclass(frozen=True)
class Previous:
    """What the last successful import of this source into this table recorded."""

    etag: str | None = None
    last_modified: str | None = None
    size: int | None = None
    mtime: int | None = None  # sftp: the remote file's modification time, in seconds
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteOptions:
    """How to fetch a URL.  Header values and the password arrive resolved (the CLI reads
    env:NAME and CSVLOAD_SFTP_PASSWORD); they are never recorded or shown."""

    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    if_changed: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 3  # after the first attempt, before the first byte of the body only
    ca_file: str | None = None  # trust this CA bundle instead of the system's
    identity: str | None = None  # sftp: a private key file
    known_hosts: str | None = None  # sftp: default the user's ~/.ssh/known_hosts
    password: str | None = field(default=None, repr=False)  # sftp
    previous: Previous | None = None  # set by the job when if_changed
    backoff: float = 0.5  # the first retry's delay; doubles each time
    backoff_cap: float = 30.0
    retry_after_cap: float = 120.0  # a longer Retry-After fails at once
    max_redirects: int = 10


@dataclass
class Fetched:
    """What one fetch found.  sha256 is set when the stream has been read to its end."""

    shown: str  # the URL, redacted
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    mtime: int | None = None
    sha256: str | None = None
    not_modified: bool = False  # the server answered 304

    def columns(self) -> dict[str, object]:
        """The run history's columns for this fetch (csvload_runs)."""
        return {
            "source": self.shown, "etag": self.etag, "last_modified": self.last_modified,
            "remote_mtime": self.mtime,
        }  # fmt: skip


class UnchangedFeed(CsvloadError):
    """--if-changed: the source is as the last successful import found it (304, the same
    digest, or the same size and mtime); nothing is imported."""

    exit_status = ExitStatus.OK

    def __init__(self, fetched: Fetched, why: str):
        super().__init__(f"{fetched.shown}: unchanged since the last import ({why})")
        self.fetched, self.why = fetched, why
