"""Fetching an http:// or https:// source with httpx (why httpx: docs/design.md,
"Dependencies").

- The body streams raw (iter_raw): gzip, whether the file is gzip or the server sent
  Content-Encoding: gzip, stays compressed for the reader to detect by its magic bytes, so
  the progress counts the bytes off the wire against Content-Length.
- Redirects are followed here, up to max_redirects, a loop named as one; the --header
  values go only to the URL's own origin (httpx drops Authorization across origins).
- Retries with backoff cover connection errors, 429 (honouring Retry-After) and 5xx, and
  only before the first byte of the body: once the body flows the import has begun, and a
  broken transfer fails it (stream.py).
- --if-changed sends If-None-Match / If-Modified-Since from the last successful import;
  304 raises UnchangedFeed.
"""

from __future__ import annotations

import random
import ssl
import time

import httpx

from csvload.errors import InputError
from csvload.read.remote.options import Fetched, RemoteOptions, UnchangedFeed
from csvload.read.remote.stream import WireStream
from csvload.read.remote.urls import redact
from csvload.webhook import USER_AGENT, retry_after_seconds

CHUNK = 1 << 16
_GZIP = ("gzip", "x-gzip")
_HINTS = {
    401: "check the --header option, or the user and password in the URL",
    403: "the server refused these credentials: check the --header option, or the user and"
    " password in the URL",
    404: "the feed is not at that address",
    410: "the feed is not at that address any more",
}


def open_http(url: str, options: RemoteOptions) -> tuple[WireStream, int | None, Fetched]:
    fetched = Fetched(redact(url))
    timeout = httpx.Timeout(options.read_timeout, connect=options.connect_timeout)
    client = httpx.Client(
        verify=_tls(options, fetched.shown), timeout=timeout, follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"},
    )  # fmt: skip
    try:
        response = _get(client, url, fetched.shown, options)
        headers = response.headers
        fetched.etag, fetched.last_modified = headers.get("etag"), headers.get("last-modified")
        if response.status_code == 304:
            response.close()
            fetched.not_modified = True
            raise UnchangedFeed(fetched, "HTTP 304 Not Modified")
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity", *_GZIP):
            response.close()
            raise InputError(
                f"{fetched.shown}: the server sent Content-Encoding {encoding}, which csvload"
                " cannot read (it asks for gzip or none)"
            )
        length = headers.get("content-length", "")
        fetched.size = int(length) if length.isdigit() else None
    except BaseException:
        client.close()
        raise

    def release() -> None:
        response.close()
        client.close()

    stream = WireStream(
        response.iter_raw(), fetched, options, (httpx.TransportError,),
        lambda e: _reason(e, options), release,
    )  # fmt: skip
    return stream, fetched.size, fetched


def _tls(options: RemoteOptions, shown: str) -> ssl.SSLContext:
    """The system's trust store (which honours SSL_CERT_FILE and SSL_CERT_DIR), or only the
    CA bundle --ca-file names."""
    try:
        return ssl.create_default_context(cafile=options.ca_file)
    except FileNotFoundError as e:
        raise InputError(f"--ca-file {options.ca_file}: no such file") from e
    except (OSError, ssl.SSLError) as e:
        raise InputError(
            f"--ca-file {options.ca_file}: not a PEM bundle of CA certificates ({e})"
        ) from e


def _get(client: httpx.Client, url: str, shown: str, options: RemoteOptions) -> httpx.Response:
    """The final response (2xx or 304), its body not read yet; retried before the body."""
    headers = list(options.headers)
    previous = options.previous if options.if_changed else None
    if previous is not None and previous.etag:
        headers.append(("If-None-Match", previous.etag))
    if previous is not None and previous.last_modified:
        headers.append(("If-Modified-Since", previous.last_modified))
    attempts = options.retries + 1
    for attempt in range(1, attempts + 1):
        delay = min(options.backoff_cap, options.backoff * 2 ** (attempt - 1))
        delay *= random.uniform(0.75, 1.0)
        try:
            response = _follow(client, url, shown, headers, options)
        except httpx.TimeoutException as e:
            if isinstance(e, httpx.ConnectTimeout):
                failure = f"no connection within {options.connect_timeout:g} s"
            else:
                # Not retried: a server that sends nothing for that long will likely do so
                # again, and each try would cost the whole timeout.
                raise InputError(
                    f"{shown}: no answer within {options.read_timeout:g} s (raise"
                    " --fetch-read-timeout)"
                ) from e
        except httpx.TransportError as e:
            if _tls_failure(e):
                raise InputError(
                    f"{shown}: the server's TLS certificate is not trusted ({_first_line(e)})"
                    " (give its CA with --ca-file, or set SSL_CERT_FILE)"
                ) from e
            failure = _first_line(e) or type(e).__name__
        else:
            code = response.status_code
            if code == 304 or 200 <= code < 300:
                return response
            response.close()
            if code != 429 and code < 500:
                raise InputError(_status_line(shown, response))
            failure = _status_line(shown, response, attempt)
            asked = retry_after_seconds(response.headers.get("retry-after"))
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
            continue
        if attempt == attempts:
            host = httpx.URL(url).host
            raise InputError(
                f"{shown}: cannot connect to {host} ({failure}) after {attempt} attempt(s)"
                " (check the address and the network, or raise --fetch-retries)"
            )
        time.sleep(delay)
    raise AssertionError("unreachable")


def _follow(
    client: httpx.Client, url: str, shown: str, headers: list, options: RemoteOptions
) -> httpx.Response:
    """GET url, following redirects up to options.max_redirects."""
    try:
        request = client.build_request("GET", url, headers=headers)
    except httpx.InvalidURL as e:
        raise InputError(f"{shown}: not a valid URL ({e})") from e
    origin = request.url.copy_with(path="/", query=None, fragment=None, username=None,
                                   password=None)  # fmt: skip
    seen = {str(request.url)}
    for _ in range(options.max_redirects + 1):
        response = client.send(request, stream=True)
        following = response.next_request
        if following is None:
            return response
        response.close()
        target = following.url.copy_with(path="/", query=None, fragment=None)
        if target != origin:
            for name, _ in options.headers:
                following.headers.pop(name, None)
        if str(following.url) in seen:
            raise InputError(
                f"{shown}: a redirect loop (HTTP {response.status_code} back to"
                f" {redact(str(following.url))}; the feed's address is wrong)"
            )
        seen.add(str(following.url))
        request = following
    raise InputError(
        f"{shown}: more than {options.max_redirects} redirects (the feed's address is wrong,"
        " or the server is misconfigured)"
    )


def _status_line(shown: str, response: httpx.Response, attempts: int = 1) -> str:
    code = response.status_code
    line = f"{shown}: HTTP {code} {response.reason_phrase}".rstrip()
    if attempts > 1:
        line += f" after {attempts} attempts"
    hint = _HINTS.get(code)
    return f"{line} ({hint})" if hint else line


def _tls_failure(e: BaseException) -> bool:
    return "CERTIFICATE_VERIFY_FAILED" in str(e) or isinstance(
        e.__context__ or e.__cause__, ssl.SSLCertVerificationError
    )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _reason(e: BaseException, options: RemoteOptions) -> str:
    if isinstance(e, httpx.ReadTimeout):
        return f"no data for {options.read_timeout:g} s; raise --fetch-read-timeout"
    return _first_line(e) or type(e).__name__
