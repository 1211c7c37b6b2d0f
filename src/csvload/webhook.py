"""Signed completion events: one JSON POST per configured URL after an import ends.

Standard library only. A delivery never raises for network or HTTP failures; it returns one
`Delivery` per URL and the CLI decides the exit status. Nothing here may leak the signing
secret or credentials carried in a URL: `Delivery.url` and `Delivery.error` are redacted, and
the payload carries only the database name and host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.client import HTTPException
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from csvload import __version__
from csvload.errors import InputError, WebhookConfigError

COMPLETED = "import.completed"
FAILED = "import.failed"
# --if-changed found the feed as the last import did: nothing was imported (status
# unchanged_feed, every count 0).
UNCHANGED = "import.unchanged"
UNDONE = "import.undone"  # csvload undo took a committed import back
TEST = "test"

COUNT_KEYS = ("rows_read", "inserted", "updated", "unchanged", "duplicates", "rejected")
# Counts only full feeds, presets and --mode produce: 0 when a summary lacks them.
FEED_COUNT_KEYS = (
    "skipped", "suppressed", "deactivated", "reactivated", "deleted", "existing", "not_found",
)  # fmt: skip

USER_AGENT = f"csvload/{__version__}"

# A receiver's error page is useful in the one-line error, a whole HTML page is not.
_ERROR_BODY_CHARS = 200
_HASH_CHUNK = 1 << 20
_DRAIN_BYTES = 64 * 1024
# No point in waking up for an attempt that would get less time than this to run.
_MIN_ATTEMPT_SECONDS = 0.05


@dataclass(frozen=True)
class WebhookOptions:
    """Where and how to deliver; built by the CLI from --webhook* options."""

    urls: tuple[str, ...] = ()  # none: nothing is delivered
    secret: str | None = None
    timeout: float = 10.0  # per attempt
    attempts: int = 3  # in all, including the first
    backoff: float = 0.5  # first delay; doubles; full jitter
    backoff_cap: float = 10.0  # largest backoff delay before jitter
    retry_after_cap: float = 30.0  # a receiver's Retry-After is honoured up to this
    deadline: float = 60.0  # total seconds per URL, sleeps included


@dataclass(frozen=True)
class Delivery:
    """The outcome of delivering one event to one URL."""

    url: str  # redacted: no userinfo, no query values
    status: str  # "delivered" | "failed"
    attempts: int
    last_status_code: int | None
    error: str | None  # one line, redacted
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "delivered"

    def as_dict(self) -> dict:
        return {
            "url": self.url,
            "status": self.status,
            "attempts": self.attempts,
            "last_status_code": self.last_status_code,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


# --- the event ------------------------------------------------------------------------------


def file_info(path: str | Path) -> dict:
    """{name, size, sha256} of a file, hashed in 1 MiB chunks so big files stay out of memory."""
    p = Path(path)
    digest = hashlib.sha256()
    size = 0
    try:
        with p.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise InputError(f"{p}: cannot read for the webhook checksum ({e.strerror})") from e
    return {"name": p.name, "size": size, "sha256": digest.hexdigest()}


def build_event(
    event: str,
    summary: Mapping,
    *,
    file: Mapping | None,
    database: Mapping,
    run_id: str | None,
    error: str | None,
) -> dict:
    """The JSON-ready event body for one import.

    `summary` is the import's JSON summary (ImportResult.as_dict()). A completed import
    must carry every count; a failed one may have stopped before counting, so missing
    counts become null, and its error defaults to the summary's. `file` is `file_info()` of
    the input, or None for stdin. Only `name` and `host` are taken from `database`, so a
    connection mapping that also holds a password cannot leak it.
    """
    if event == COMPLETED:
        missing = [k for k in COUNT_KEYS if k not in summary]
        if missing:
            raise ValueError(f"summary for {COMPLETED} lacks {', '.join(missing)}")
    if file is None:
        file = {"name": summary.get("file"), "size": None, "sha256": None}
    if run_id is None:
        run_id = summary.get("run_id")
    if error is None and event == FAILED:
        error = summary.get("error")
    status = summary.get("status")
    if status is None:
        status = "failed" if event == FAILED else event.rpartition(".")[2]
    body = {
        "event": event,
        "id": new_event_id(),
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run_id": None if run_id is None else str(run_id),
        "status": status,
        "file": {
            "name": file.get("name"),
            "size": file.get("size"),
            "sha256": file.get("sha256"),
        },
    }
    body["table"] = summary.get("table")
    body["key"] = summary.get("key")
    body.update({k: summary.get(k) for k in COUNT_KEYS})
    body.update({k: summary.get(k, 0) for k in FEED_COUNT_KEYS})
    body["seconds"] = summary.get("seconds")
    body["database"] = {"name": database.get("name"), "host": database.get("host")}
    body["rejects_file"] = summary.get("rejects_file")
    body["source"] = summary.get("source")  # a URL source, redacted; None for a path
    body["error"] = None if error is None else _scrub_text(_one_line(error))
    return body


# An undo's counts (csvload.undo.UndoResult).
UNDO_COUNT_KEYS = (
    "records", "deleted", "restored", "reactivated", "reinserted", "already_gone", "conflicts",
)  # fmt: skip


def build_undone_event(summary: Mapping, *, database: Mapping) -> dict:
    """The import.undone event of a committed undo: `summary` is UndoResult.as_dict();
    run_id is the undo's own run, undo_of the import it took back."""
    return {
        "event": UNDONE,
        "id": new_event_id(),
        "created_at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "run_id": summary.get("run_id"),
        "undo_of": summary.get("undo_of"),
        "status": summary.get("status"),
        "file": {"name": summary.get("file")},
        "table": summary.get("table"),
        "key": summary.get("key"),
        **{k: summary.get(k, 0) for k in UNDO_COUNT_KEYS},
        "conflicts_file": summary.get("conflicts_file"),
        "seconds": summary.get("seconds"),
        "database": {"name": database.get("name"), "host": database.get("host")},
    }


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def encode_event(event: Mapping) -> bytes:
    """The exact bytes that are POSTed and signed."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- signing ---------------------------------------------------------------------------------


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, b"<timestamp>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, "sha256")
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = 300,
) -> bool:
    """True if `signature` signs `body` at `timestamp`, and `timestamp` is within `tolerance`
    seconds of `now` (either side), which stops a captured request being replayed later."""
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    if now is None:
        now = time.time()
    if abs(now - ts) > tolerance:
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")
    return hmac.compare_digest(sign(secret, ts, body), signature.strip())


def _headers(event: Mapping, body: bytes, secret: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Csvload-Event": str(event["event"]),
        "X-Csvload-Delivery": str(event["id"]),
    }
    if secret:
        # Re-signed on every attempt: a retry after a long Retry-After must still pass the
        # receiver's timestamp window.
        ts = int(time.time())
        headers["X-Csvload-Timestamp"] = str(ts)
        headers["X-Csvload-Signature"] = sign(secret, ts, body)
    return headers


# --- URLs ------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL without user:password@ and with every query value replaced by '***'."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***") for k, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def check_url(url: str) -> str:
    """`url` itself if it can be POSTed to; raises WebhookConfigError otherwise.

    The CLI calls this while parsing options, so a typo fails before the import runs.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError as e:
        raise WebhookConfigError(f"webhook URL {shown}: {e} (check the URL)") from e
    if parts.scheme not in ("http", "https"):
        raise WebhookConfigError(
            f"webhook URL {shown}: scheme must be http or https, not {parts.scheme or 'empty'!r}"
        )
    if not parts.hostname:
        raise WebhookConfigError(f"webhook URL {shown}: no host (use http://host/path)")
    return url


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without userinfo, and the Basic Authorization header it implied."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=hostport)), f"Basic {token}"


def _secrets_in(url: str, secret: str | None) -> list[str]:
    """Every string that must not appear in an error: the secret, userinfo, query values."""
    found = [secret] if secret else []
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    if parts.username:
        found.append(parts.username)
    if parts.password:
        found.append(parts.password)
    found.extend(v for _, v in parse_qsl(parts.query) if v)
    found.append(url)
    # Longest first, so a value inside another is not half-replaced.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def _scrub_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    # Import errors can quote a connection string; keep its credentials out of the payload.
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _PASSWORD_KV.sub(r"\1***", text)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --- delivery --------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: re-POSTing a signed body to wherever a 3xx points is not
    something the user configured. The 3xx then surfaces as an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass(frozen=True)
class _Attempt:
    delivered: bool
    retryable: bool
    status_code: int | None
    error: str | None
    retry_after: float | None = None


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Attempt:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            # Drain a little so the receiver does not see a reset; ignore the rest.
            response.read(_DRAIN_BYTES)
            code = response.status
    except urllib.error.HTTPError as e:
        try:
            return _http_failure(e)
        finally:
            e.close()
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            error = f"TLS certificate rejected: {reason.verify_message}"
            return _Attempt(False, False, None, error)
        return _Attempt(False, True, None, _network_error(reason, request.host, timeout))
    except (OSError, HTTPException) as e:
        # Raised while reading the response body, after urllib stopped wrapping errors.
        return _Attempt(False, True, None, _network_error(e, request.host, timeout))
    if 200 <= code < 300:
        return _Attempt(True, False, code, None)
    return _Attempt(False, False, code, f"HTTP {code} (expected 2xx)")


def _http_failure(e: urllib.error.HTTPError) -> _Attempt:
    code = e.code
    detail = f"HTTP {code} {e.reason}".rstrip()
    if 300 <= code < 400:
        location = e.headers.get("Location")
        where = f" to {redact_url(location)}" if location else ""
        return _Attempt(
            False, False, code, f"{detail}: redirect{where} not followed (update the webhook URL)"
        )
    try:
        text = e.read(_ERROR_BODY_CHARS * 4).decode("utf-8", "replace")
    except (OSError, HTTPException):
        text = ""
    text = _one_line(text)[:_ERROR_BODY_CHARS]
    if text:
        detail = f"{detail}: {text}"
    retryable = code == 429 or code >= 500
    retry_after = retry_after_seconds(e.headers.get("Retry-After")) if retryable else None
    return _Attempt(False, retryable, code, detail, retry_after)


def _network_error(reason: object, host: str, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"timed out after {round(timeout, 2):g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve {urlsplit('//' + host).hostname} ({reason.strerror})"
    if isinstance(reason, OSError) and reason.strerror:
        return _one_line(reason.strerror)
    return _one_line(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, either delta-seconds or an HTTP-date
    (also read by read/remote/http.py)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _backoff(options: WebhookOptions, failures: int) -> float:
    # Full jitter (uniform over [0, base * 2^n]) spreads out many csvload processes that all
    # hit the same receiver when it comes back.
    ceiling = min(options.backoff_cap, options.backoff * 2 ** (failures - 1))
    return random.uniform(0, ceiling)


def _deliver_one(
    url: str, body: bytes, event: Mapping, options: WebhookOptions, stop: threading.Event
) -> Delivery:
    started = time.monotonic()
    shown = redact_url(url)
    secrets = _secrets_in(url, options.secret)

    def result(status: str, attempts: int, code: int | None, error: str | None) -> Delivery:
        if error is not None:
            error = _scrub_text(_one_line(error), secrets)
        return Delivery(shown, status, attempts, code, error, time.monotonic() - started)

    try:
        check_url(url)
    except WebhookConfigError as e:
        return result("failed", 0, None, str(e))
    target, authorization = _split_credentials(url)

    attempts = 0
    last: _Attempt | None = None
    while attempts < max(1, options.attempts):
        remaining = options.deadline - (time.monotonic() - started)
        if remaining < _MIN_ATTEMPT_SECONDS:
            break
        headers = _headers(event, body, options.secret)
        if authorization:
            headers["Authorization"] = authorization
        timeout = min(options.timeout, remaining)
        attempts += 1
        last = _post(target, body, headers, timeout)
        if last.delivered:
            return result("delivered", attempts, last.status_code, None)
        if not last.retryable or attempts >= options.attempts:
            break
        if last.retry_after is not None:
            delay = min(last.retry_after, options.retry_after_cap)
        else:
            delay = _backoff(options, attempts)
        remaining = options.deadline - (time.monotonic() - started)
        if delay + _MIN_ATTEMPT_SECONDS > remaining:
            return result(
                "failed",
                attempts,
                last.status_code,
                f"{last.error} (gave up: next attempt in {delay:.1f} s would pass the "
                f"{options.deadline:g} s deadline)",
            )
        if stop.wait(delay):
            return result("failed", attempts, last.status_code, f"{last.error} (interrupted)")

    if last is None:
        return result("failed", 0, None, f"no attempt made within {options.deadline:g} s deadline")
    return result("failed", attempts, last.status_code, last.error)


def deliver(options: WebhookOptions, event: dict) -> list[Delivery]:
    """POST `event` to every URL in `options`, concurrently; one Delivery per URL, in order.

    Never raises for network or HTTP failures. Each URL gets up to `options.attempts`
    attempts within `options.deadline` seconds, so the whole call takes about one deadline
    however many URLs there are.
    """
    if not options.urls:
        return []
    body = encode_event(event)
    stop = threading.Event()
    if len(options.urls) == 1:
        return [_deliver_one(options.urls[0], body, event, options, stop)]
    with ThreadPoolExecutor(max_workers=min(len(options.urls), 8)) as pool:
        futures = [pool.submit(_deliver_one, u, body, event, options, stop) for u in options.urls]
        try:
            return [f.result() for f in futures]
        except BaseException:
            # Ctrl-C: cut the backoff sleeps short so the pool can shut down promptly.
            stop.set()
            raise


def not_sent(options: WebhookOptions, reason: str) -> list[Delivery]:
    """One failed Delivery per URL, none attempted: `reason` says why."""
    return [Delivery(redact_url(u), "failed", 0, None, reason, 0.0) for u in options.urls]


def build_test_event() -> dict:
    """The body `csvload webhook test` sends: a `test` event with zero counts."""
    summary = dict.fromkeys(COUNT_KEYS, 0) | {"status": TEST, "seconds": 0.0}
    return build_event(
        TEST,
        summary,
        file=None,
        database={"name": None, "host": None},
        run_id=None,
        error=None,
    )


def send_test(url: str, secret: str | None, timeout: float) -> tuple[Delivery, float]:
    """One attempt, no retries, of a `test` event; the Delivery and the latency in ms."""
    options = WebhookOptions(
        urls=(url,), secret=secret, timeout=timeout, attempts=1, deadline=timeout + 1
    )
    delivery = deliver(options, build_test_event())[0]
    return delivery, delivery.seconds * 1000
