"""Fetching an sftp://user@host[:port]/path source with paramiko (why paramiko:
docs/design.md, "Dependencies").

- Authentication is by key: the SSH agent, the user's own keys (~/.ssh/id_*), or
  --identity FILE; a password only from CSVLOAD_SFTP_PASSWORD, which the CLI reads.
- The host key must be in known_hosts (the user's, or --known-hosts FILE): an unknown or
  changed key is refused with one line that says how to trust it.  Nothing is ever added
  to known_hosts.
- The path is absolute (sftp://u@h/data/x.csv is /data/x.csv); /~/x.csv is x.csv in the
  user's home directory.
- The file streams in windows of WINDOW bytes, each fetched by concurrent requests
  (readv), so memory stays flat and the round trips overlap; connection errors are
  retried before the first byte, as for HTTP.
- --if-changed compares the remote file's size and mtime with the last successful
  import's, before a byte of the body is fetched.
"""

from __future__ import annotations

import errno
import random
import socket
import time
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import paramiko

from csvload.errors import InputError
from csvload.read.remote.options import Fetched, RemoteOptions, UnchangedFeed
from csvload.read.remote.stream import WireStream, chunk_filler
from csvload.read.remote.urls import redact

CHUNK = 32768  # the largest read request paramiko sends
WINDOW = 32 * CHUNK


class _UnknownHost(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Refuse(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key known_hosts does not hold; never add it."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHost(hostname)


def open_sftp(url: str, options: RemoteOptions) -> tuple[WireStream, int | None, Fetched]:
    fetched = Fetched(redact(url))
    shown = fetched.shown
    try:
        parts = urlsplit(url)
        host, port, user = parts.hostname, parts.port or 22, parts.username
    except ValueError as e:
        raise InputError(f"{shown}: not a valid sftp URL ({e})") from e
    if not host or not user:
        raise InputError(f"{shown}: give the user and the host: sftp://user@host[:port]/path")
    path = unquote(parts.path)
    path = path[3:] if path.startswith("/~/") else path
    if not path or path.endswith("/"):
        raise InputError(f"{shown}: give the path of a file: sftp://user@host[:port]/path")
    client = _connect(host, port, unquote(user), shown, options)
    try:
        sftp = client.open_sftp()
        size, mtime = _stat(sftp, path, shown)
        fetched.size, fetched.mtime = size, mtime
        previous = options.previous if options.if_changed else None
        if previous is not None and (previous.size, previous.mtime) == (size, mtime):
            raise UnchangedFeed(fetched, "the same size and modification time")
        try:
            remote = sftp.open(path, "rb")
        except OSError as e:
            raise _file_error(e, shown) from e
    except BaseException:
        client.close()
        raise

    def release() -> None:
        remote.close()
        client.close()

    stream = WireStream(
        chunk_filler(_windows(remote, size)),
        fetched,
        options,
        (OSError, paramiko.SSHException, EOFError),
        _reason,
        release,
    )
    return stream, size, fetched


def _connect(
    host: str, port: int, user: str, shown: str, options: RemoteOptions
) -> paramiko.SSHClient:
    attempts = options.retries + 1
    for attempt in range(1, attempts + 1):
        client = paramiko.SSHClient()
        try:
            if options.known_hosts:
                client.load_host_keys(options.known_hosts)
            else:
                client.load_system_host_keys()
        except OSError as e:
            client.close()
            raise InputError(
                f"--known-hosts {options.known_hosts}: cannot read it ({e.strerror or e})"
            ) from e
        client.set_missing_host_key_policy(_Refuse())
        try:
            client.connect(
                host, port, username=user, key_filename=options.identity,
                password=options.password, allow_agent=True,
                look_for_keys=options.identity is None, timeout=options.connect_timeout,
                banner_timeout=options.read_timeout, auth_timeout=options.read_timeout,
            )  # fmt: skip
            client.get_transport().set_keepalive(max(1, int(options.read_timeout)))
            return client
        except _UnknownHost as e:
            client.close()
            name = e.name
            scan = f"ssh-keyscan -p {port} {host}" if port != 22 else f"ssh-keyscan {host}"
            raise InputError(
                f"{shown}: the host key of {name} is not in known_hosts (check the key with the"
                f" server's owner, then trust it: {scan} >> ~/.ssh/known_hosts, or give"
                " --known-hosts FILE)"
            ) from None
        except paramiko.BadHostKeyException as e:
            client.close()
            name = f"[{host}]:{port}" if port != 22 else host
            raise InputError(
                f"{shown}: the host key of {name} has CHANGED since known_hosts recorded it,"
                " refused (if the server's owner confirms the new key: ssh-keygen -R"
                f" '{name}', then trust it again)"
            ) from e
        except paramiko.AuthenticationException as e:
            client.close()
            raise InputError(
                f"{shown}: authentication failed for user {user} (check --identity, the SSH"
                " agent, or CSVLOAD_SFTP_PASSWORD)"
            ) from e
        except FileNotFoundError as e:
            client.close()
            raise InputError(f"--identity {options.identity}: no such file") from e
        except (OSError, paramiko.SSHException, EOFError) as e:
            client.close()
            failure = _reason(e)
            if attempt == attempts:
                raise InputError(
                    f"{shown}: cannot connect to {host}:{port} ({failure}) after {attempt}"
                    " attempt(s) (the host is unreachable: check the address and the port)"
                ) from e
        delay = min(options.backoff_cap, options.backoff * 2 ** (attempt - 1))
        time.sleep(delay * random.uniform(0.75, 1.0))
    raise AssertionError("unreachable")


def _stat(sftp: paramiko.SFTPClient, path: str, shown: str) -> tuple[int, int]:
    try:
        attributes = sftp.stat(path)
    except OSError as e:
        raise _file_error(e, shown) from e
    return int(attributes.st_size or 0), int(attributes.st_mtime or 0)


def _file_error(e: OSError, shown: str) -> InputError:
    if e.errno == errno.ENOENT or isinstance(e, FileNotFoundError):
        return InputError(f"{shown}: no such file on the server (check the path)")
    if e.errno == errno.EACCES or isinstance(e, PermissionError):
        return InputError(f"{shown}: permission denied on the server")
    return InputError(f"{shown}: cannot read the file on the server ({_reason(e)})")


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _windows(remote: paramiko.SFTPFile, size: int) -> Iterator[bytes]:
    """The file's bytes, one window of concurrent requests at a time: paramiko's own
    prefetch of a whole file keeps every answer that arrives faster than it is read."""
    offset = 0
    while offset < size:
        end = min(size, offset + WINDOW)
        requests = [(at, min(CHUNK, end - at)) for at in range(offset, end, CHUNK)]
        for data in remote.readv(requests):
            if not data:
                return
            yield data
        offset = end
    # A file that grew since the stat: the rest, plainly.
    while data := remote.read(WINDOW):
        yield data
