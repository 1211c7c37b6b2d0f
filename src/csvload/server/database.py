"""Connecting to PostgreSQL, naming the target without secrets, and turning the database
errors a user can act on into one-line CsvloadErrors."""

from __future__ import annotations

import re
import socket
from urllib.parse import quote, unquote

import psycopg
from psycopg import conninfo, errors

from csvload.errors import DatabaseError, DsnError, NoTableError

_URL_PREFIXES = ("postgresql://", "postgres://")  # libpq compares them case-sensitively
URL_HINT = (
    "percent-encode special characters in the URL's password, e.g. % as %25, @ as %40, "
    "/ as %2F"
)
KEYWORD_HINT = "quote a value that has spaces in it, e.g. 'two words'"


def check_dsn(dsn: str, source: str) -> None:
    """Raise DsnError, naming `source` (--dsn, DATABASE_URL, .env line N), when libpq
    cannot parse `dsn`.

    The message never quotes the DSN or libpq's complaint about it: libpq's parse errors
    quote the text they stumbled on, which may be any part of the password
    ('invalid percent-encoded token: "Sale50%off!"', 'missing "=" after "Sesame99"'),
    or the whole URI.  A URL libpq parses is still refused when a character meant for
    the password ended its user part early: a second @ (host 'ss@h' from
    'app:p@ss@h'), or a port that is not a number (port 'p', host 'app' from
    'app:p/ss@h').  Connecting with it would show the rest of the password as a host,
    port or database name.
    """
    url = dsn.lstrip().startswith(_URL_PREFIXES)
    malformed = False
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        malformed = True
    else:
        if url:
            ports = str(params.get("port") or "").split(",")
            malformed = dsn.partition("?")[0].count("@") > 1 or not all(
                p.strip().isdigit() or not p.strip() for p in ports
            )
    if malformed:
        what = "PostgreSQL URL" if url else "key=value DSN"
        # from None: libpq's message, which may quote the password, stays out of any
        # traceback too.
        hint = URL_HINT if url else KEYWORD_HINT
        raise DsnError(f"{source}: not a valid {what} ({hint})") from None


def connect(
    dsn: str, *, connect_timeout: float = 10, autocommit: bool = False
) -> psycopg.Connection:
    check_dsn(dsn, "the DSN")
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=max(1, round(connect_timeout)),
            application_name="csvload",
            client_encoding="utf8",
        )
    except psycopg.Error as e:
        raise DatabaseError(
            f"cannot connect to {display_name(dsn)}: {_first_line(str(e), dsn)}"
            " (check the DSN, or that the server is running)"
        ) from e
    return conn


# What a unix-socket connection may queue ahead of the server during COPY; the kernel caps
# the request at net.core.wmem_max (208 KiB on a stock kernel, which still doubles the
# default).
COPY_SEND_BUFFER = 4 << 20


def widen_send_buffer(conn: psycopg.Connection) -> None:
    """Let a unix-socket connection queue COPY data well ahead of the server.

    A unix socket's default send buffer (208 KiB) is smaller than one of the reader's
    blocks, so every write waited for the server to drain it, and the server then idled
    while Python cut the next block.  Staging the 500k-row benchmark file took 0.46-0.56 s
    that way, 0.42 s with the buffer a stock kernel allows and 0.34 s with 4 MiB, the same
    as over TCP.  TCP sockets are left alone: the kernel grows their buffers itself, and a
    fixed size would switch that off.
    """
    sock = socket.socket(fileno=conn.pgconn.socket)
    try:
        if sock.family == socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, COPY_SEND_BUFFER)
    finally:
        sock.detach()


def display_name(dsn: str) -> str:
    """'dbname on host:port' — never the password."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database"
    host = str(params.get("host") or "local socket")
    port = params.get("port")
    db = params.get("dbname") or params.get("user") or "default database"
    return redact(f"{db} on {host}{':' + str(port) if port else ''}", dsn)


def target(conn: psycopg.Connection) -> dict[str, str]:
    """The database name and host of a live connection, for summaries and webhooks."""
    info = conn.info
    return {"name": info.dbname, "host": info.host or "localhost"}


# The password as written in a DSN, before libpq decodes it: a URL's user part
# (libpq ends it at the first @ or /), ?password= in a URL's query, and password= in a
# key=value DSN, quoted or bare.
_URL_USERINFO = re.compile(r"^\s*postgres(?:ql)?://([^@/]*)@")
_QUERY_PASSWORD = re.compile(r"[?&]password=([^&]*)")
_KEYWORD_PASSWORD = re.compile(r"(?<![\w.])password\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)")


def _passwords(dsn: str) -> set[str]:
    """Every form in which the DSN's password may appear in a message: as libpq decoded
    it, as written in the DSN (percent-encoded, quoted, escaped), and percent-encoded."""
    forms: set[str] = set()
    try:
        decoded = conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        decoded = None
    if decoded:
        forms |= {decoded, quote(decoded, safe=""), quote(decoded)}
    m = _URL_USERINFO.match(dsn)
    if m and ":" in m[1]:
        forms.add(m[1].partition(":")[2])
    for raw in (*_QUERY_PASSWORD.findall(dsn), *_KEYWORD_PASSWORD.findall(dsn)):
        forms |= {raw, raw.strip("'"), unquote(raw)}
    return {f for f in forms if f}


def redact(text: str, dsn: str | None) -> str:
    """`text` with every form of the DSN's password replaced by ***."""
    if not dsn:
        return text
    for form in sorted(_passwords(dsn), key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def _first_line(message: str, dsn: str | None = None) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return redact(line, dsn)


# How a Citus coordinator reports a worker it cannot reach (Citus 14.0.1): 08006 when it
# cannot connect, 58030 when a COPY to a shard fails, XX000 when the worker's connection
# broke mid-transaction (with CONTEXT "while executing command on <worker>").  The
# client's own connection is fine; the transaction is aborted.
# admin_shutdown, crash_shutdown, cannot_connect_now
_SHUTDOWN = ("57P01", "57P02", "57P03")
_WORKER_DOWN = (
    "connection to the remote node",
    "failed to COPY to shard",
    "server closed the connection unexpectedly",
    "failure on connection marked as essential",
    "could not establish any connections to the node",
    "connection not open",
)


def _worker_down(e: psycopg.Error) -> bool:
    context = (e.diag.context if e.diag else None) or ""
    if e.sqlstate in _SHUTDOWN and context.startswith("while executing command on"):
        # A worker shutting down while it works for this transaction (a distributed
        # stage's COPY or merge): Citus passes on the worker's own FATAL, SQLSTATE and
        # all; the client's connection to the coordinator is fine.
        return True
    if e.sqlstate not in ("08006", "58030", "XX000"):
        return False
    primary = (e.diag.message_primary if e.diag else None) or ""
    if not primary.startswith(_WORKER_DOWN):
        return False
    # "server closed the connection" is also libpq's own word for the client's connection.
    return e.sqlstate != "XX000" or "while executing command on" in context


def translate(e: psycopg.Error, where: str) -> DatabaseError:
    """A one-line error for a database failure the user can act on."""
    primary = e.diag.message_primary if e.diag and e.diag.message_primary else str(e)
    primary = _first_line(primary)
    if isinstance(e, errors.UndefinedTable):
        return NoTableError(f"{where}: {primary} (run 'csvload init' first)")
    if isinstance(e, errors.InsufficientPrivilege):
        return DatabaseError(f"{where}: permission denied: {primary} (GRANT the user access)")
    if isinstance(e, errors.DiskFull):
        return DatabaseError(f"{where}: the database server is out of disk space: {primary}")
    if isinstance(e, errors.QueryCanceled):
        return DatabaseError(f"{where}: {primary} (raise --statement-timeout)")
    if isinstance(e, errors.LockNotAvailable):
        return DatabaseError(
            f"{where}: {primary} (another session holds the table; raise --lock-timeout)"
        )
    if _worker_down(e):
        return DatabaseError(
            f"{where}: a worker node is down or unreachable: {primary}; nothing was written"
        )
    # The connection itself is gone: libpq lost the socket (no SQLSTATE), a connection
    # exception (class 08), or the server shutting down.  Other OperationalErrors (an
    # object in the wrong state, out of memory) are the server's word on this statement.
    lost = e.sqlstate is None or e.sqlstate.startswith("08")
    if (
        lost
        and isinstance(e, psycopg.OperationalError)
        or isinstance(e, (errors.AdminShutdown, errors.CrashShutdown))
    ):
        return DatabaseError(f"{where}: database connection lost: {primary}; nothing was written")
    return DatabaseError(f"{where}: {primary}")
