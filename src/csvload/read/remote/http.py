"""Fetching an http:// or https:// source with the standard library's http.client (why
not httpx or urllib3: docs/design.md, "Dependencies").

- The body streams raw, each piece as it comes off the socket into the reader's buffer.
  Gzip, whether the file is gzip or the server sent Content-Encoding: gzip, stays
  compressed for the reader to detect by its magic bytes, so the progress counts the bytes
  off the wire against Content-Length; a body shorter than its Content-Length is a broken
  transfer.
- Timeouts: the socket's timeout is the connect timeout while connecting, then the read
  timeout: the longest the server may stay silent, before the answer or mid-body.
- Redirects are followed here, up to max_redirects, a loop named as one.  Credentials (the
  URL's user and password as basic auth, the --header values) go only to the URL's own
  scheme, host and port.
- Retries with backoff cover connection errors, 429 (honouring Retry-After) and 5xx, and
  only before the first byte of the body: once the body flows the import has begun, and a
  broken transfer fails it (stream.py).
- --if-changed sends If-None-Match / If-Modified-Since from the last successful import;
  304 raises UnchangedFeed.
"""

from __future__ import annotations

import base64
import http.client
import random
import socket
import ssl
import time
from urllib.parse import quote, unquote, urljoin, urlsplit

from csvload.errors import InputError
from csvload.read.remote.options import Fetched, RemoteOptions, UnchangedFeed
from csvload.read.remote.stream import WireStream
from csvload.read.remote.urls import redact
from csvload.webhook import USER_AGENT, retry_after_seconds

_GZIP = ("gzip", "x-gzip")
_REDIRECTS = (301, 302, 303, 307, 308)
_HINTS = {
    401: "check the --header option, or the user and password in the URL",
    403: "the server refused these credentials: check the --header option, or the user and"
    " password in the URL",
    404: "the feed is not at that address",
    410: "the feed is not at that address any more",
}
# What a transfer breaking off raises: socket errors and timeouts (OSError), and http.client's
# IncompleteRead of a chunked body cut short.
_BROKEN = (OSError, http.client.HTTPException)


def open_http(url: str, options: RemoteOptions) -> tuple[WireStream, int | None, Fetched]:
    fetched = Fetched(redact(url))
    context = _tls(options) if url.lower().startswith("https:") else None
    connection, response = _get(url, fetched.shown, options, context)
    try:
        fetched.etag = response.getheader("etag")
        fetched.last_modified = response.getheader("last-modified")
        if response.status == 304:
            fetched.not_modified = True
            raise UnchangedFeed(fetched, "HTTP 304 Not Modified")
        encoding = (response.getheader("content-encoding") or "identity").strip().lower()
        if encoding not in ("", "identity", *_GZIP):
            raise InputError(
                f"{fetched.shown}: the server sent Content-Encoding {encoding}, which csvload"
                " cannot read (it asks for gzip or none)"
            )
        length = (response.getheader("content-length") or "").strip()
        fetched.size = int(length) if length.isdigit() else None
    except BaseException:
        connection.close()
        raise

    def reason(e: BaseException) -> str:
        if isinstance(e, TimeoutError):
            return f"no data for {options.read_timeout:g} s; raise --fetch-read-timeout"
        return _reason(e)

    # readinto1: what one read of the socket gives, so the reader (and the progress) gets
    # each piece as it arrives, and a stall is met with the bytes so far already counted.
    stream = WireStream(
        response.readinto1, fetched, options, _BROKEN, reason, connection.close, fetched.size
    )
    return stream, fetched.size, fetched


def _tls(options: RemoteOptions) -> ssl.SSLContext:
    """The system's trust store (which honours SSL_CERT_FILE and SSL_CERT_DIR), or only the
    CA bundle --ca-file names."""
    try:
        return ssl.create_default_context(cafile=options.ca_file)
    except FileNotFoundError as e:
        raise InputError(f"--ca-file {options.ca_file}: no such file") from e
    except (OSError, ssl.SSLError) as e:
        raise InputError(
            f"--ca-file {options.ca_file}: not a PEM bundle of CA certificates ({_reason(e)})"
        ) from e


def _get(
    url: str, shown: str, options: RemoteOptions, context: ssl.SSLContext | None
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """The final answer (2xx or 304), its body not read yet; retried before the body."""
    conditional = []
    previous = options.previous if options.if_changed else None
    if previous is not None and previous.etag:
        conditional.append(("If-None-Match", previous.etag))
    if previous is not None and previous.last_modified:
        conditional.append(("If-Modified-Since", previous.last_modified))
    attempts = options.retries + 1
    for attempt in range(1, attempts + 1):
        delay = min(options.backoff_cap, options.backoff * 2 ** (attempt - 1))
        delay *= random.uniform(0.75, 1.0)
        try:
            connection, response = _follow(url, shown, options, context, conditional)
        except _Unreachable as e:
            if attempt == attempts:
                raise InputError(
                    f"{shown}: cannot connect to {e.where} ({e.reason}) after {attempt}"
                    " attempt(s) (check the address and the network, or raise --fetch-retries)"
                ) from e.__cause__
            time.sleep(delay)
            continue
        code = response.status
        if code == 304 or 200 <= code < 300:
            return connection, response
        connection.close()
        if code != 429 and code < 500:
            raise InputError(_status_line(shown, response))
        failure = _status_line(shown, response, attempt)
        asked = retry_after_seconds(response.getheader("retry-after"))
        if asked is not None:
            if asked > options.retry_after_cap:
                raise InputError(
                    f"{failure} (the server asks to wait {asked:,.0f} s, longer than"
                    f" {options.retry_after_cap:g} s: try later)"
                )
            delay = asked
        if attempt == attempts:
            hint = "the server limits requests: try later" if code == 429 else "try later"
            raise InputError(f"{failure} ({hint}, or raise --fetch-retries)")
        time.sleep(delay)
    raise AssertionError("unreachable")


class _Unreachable(Exception):
    """A connection that could not be made, or was dropped before an answer: retried."""

    def __init__(self, where: str, reason: str):
        super().__init__(reason)
        self.where, self.reason = where, reason


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _follow(
    url: str,
    shown: str,
    options: RemoteOptions,
    context: ssl.SSLContext | None,
    conditional: list[tuple[str, str]],
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET url, following redirects up to options.max_redirects."""
    origin = _origin(url)
    credentials = list(options.headers)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        credentials.insert(
            0, ("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
        )
    seen = {url}
    current = url
    for _ in range(options.max_redirects + 1):
        own = _origin(current) == origin
        headers = [*(credentials if own else []), *conditional]
        connection, response = _request(current, shown, options, context, headers)
        location = response.getheader("location")
        if response.status not in _REDIRECTS or not location:
            return connection, response
        connection.close()
        following = urljoin(current, location)
        if following in seen:
            raise InputError(
                f"{shown}: a redirect loop (HTTP {response.status} back to {redact(following)};"
                " the feed's address is wrong)"
            )
        if urlsplit(following).scheme.lower() not in ("http", "https"):
            raise InputError(f"{shown}: redirected to {redact(following)}, which is not HTTP")
        if following.lower().startswith("https:") and context is None:
            context = _tls(options)
        seen.add(following)
        current = following
    raise InputError(
        f"{shown}: more than {options.max_redirects} redirects (the feed's address is wrong,"
        " or the server is misconfigured)"
    )


def _request(
    url: str,
    shown: str,
    options: RemoteOptions,
    context: ssl.SSLContext | None,
    headers: list[tuple[str, str]],
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """One GET: the connection and its response's status line and headers."""
    scheme, host, port = _origin(url)
    parts = urlsplit(url)
    if not host:
        raise InputError(f"{shown}: not a valid URL (no host)")
    where = f"{host}:{port}"
    if scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=options.connect_timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=options.connect_timeout)
    try:
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as e:
            raise InputError(
                f"{shown}: the server's TLS certificate is not trusted ({_reason(e)}) (give its"
                " CA with --ca-file, or set SSL_CERT_FILE)"
            ) from e
        except TimeoutError as e:
            raise _Unreachable(where, f"no connection within {options.connect_timeout:g} s") from e
        except OSError as e:
            raise _Unreachable(where, _reason(e)) from e
        connection.sock.settimeout(options.read_timeout)
        # Percent-encode what may not be sent as it is (a space), keep what is encoded.
        target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~-._")
        if parts.query:
            target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=~-._?")
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.putheader("User-Agent", USER_AGENT)
        connection.putheader("Accept-Encoding", "gzip")
        for name, value in headers:
            connection.putheader(name, value)
        try:
            connection.endheaders()
            return connection, connection.getresponse()
        except TimeoutError as e:
            # Not retried: a server that sends nothing for that long will likely do so again,
            # and each try would cost the whole timeout.
            raise InputError(
                f"{shown}: no answer within {options.read_timeout:g} s (raise --fetch-read-timeout)"
            ) from e
        except (OSError, http.client.HTTPException) as e:
            raise _Unreachable(where, _reason(e)) from e
    except BaseException:
        connection.close()
        raise


def _status_line(shown: str, response: http.client.HTTPResponse, attempts: int = 1) -> str:
    code = response.status
    line = f"{shown}: HTTP {code} {response.reason}".rstrip()
    if attempts > 1:
        line += f" after {attempts} attempts"
    hint = _HINTS.get(code)
    return f"{line} ({hint})" if hint else line


def _reason(e: BaseException) -> str:
    if isinstance(e, socket.gaierror):
        return f"no such host: {e.strerror}"
    if isinstance(e, OSError) and e.strerror and not isinstance(e, ssl.SSLError):
        return e.strerror
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
