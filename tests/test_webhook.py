"""Webhook delivery against a real threaded http.server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from email.utils import formatdate

import pytest
from helpers.webhook import Reply, closed_port

from csvload import __version__
from csvload.errors import WebhookConfigError
from csvload.webhook import (
    COMPLETED,
    FAILED,
    Delivery,
    WebhookOptions,
    build_event,
    check_url,
    deliver,
    file_info,
    redact_url,
    send_test,
    sign,
    verify_signature,
)

SECRET = "whsec-s3cr3t-value"

SUMMARY = {
    "status": "completed_with_rejects",
    "file": "products.csv",
    "table": "shop.catalog_product",
    "key": ["supplier", "sku"],
    "rows_read": 1000,
    "inserted": 600,
    "updated": 250,
    "unchanged": 100,
    "duplicates": 30,
    "rejected": 20,
    "seconds": 1.234,
    "rows_per_second": 810.4,
    "statements": 5,
    "rejects_file": "products.rejects.csv",
    "run_id": "run-42",
}
DATABASE = {"name": "shop", "host": "db.internal", "user": "loader", "password": "hunter2"}


@pytest.fixture
def closed_port_url():
    return f"http://127.0.0.1:{closed_port()}/hook"


def completed_event(**overrides) -> dict:
    kwargs = {"file": None, "database": DATABASE, "run_id": None, "error": None} | overrides
    return build_event(COMPLETED, SUMMARY, **kwargs)


def fast(url: str, **overrides) -> WebhookOptions:
    kwargs = {"urls": (url,), "timeout": 2.0, "backoff": 0.05} | overrides
    return WebhookOptions(**kwargs)


# --- the event -------------------------------------------------------------------------------


def test_payload_schema_counts_and_headers(receiver, tmp_path):
    csv = tmp_path / "products.csv"
    csv.write_bytes(b"sku,name\nA1,Widget\n")
    event = completed_event(file=file_info(csv))

    [result] = deliver(fast(receiver.url), event)

    assert result.status == "delivered"
    assert result.attempts == 1
    assert result.last_status_code == 200
    [req] = receiver.requests
    body = req.json()
    assert body == event
    assert set(body) == {
        "event",
        "id",
        "created_at",
        "run_id",
        "status",
        "file",
        "rows_read",
        "inserted",
        "updated",
        "unchanged",
        "duplicates",
        "rejected",
        "skipped",
        "suppressed",
        "deactivated",
        "reactivated",
        "deleted",
        "existing",
        "not_found",
        "table",
        "key",
        "seconds",
        "database",
        "rejects_file",
        "source",
        "error",
    }
    assert body["event"] == "import.completed"
    assert body["id"].startswith("evt_") and len(body["id"]) == 36
    assert body["created_at"].endswith("Z")
    assert body["run_id"] == "run-42"
    assert body["status"] == "completed_with_rejects"
    assert body["file"] == {
        "name": "products.csv",
        "size": 19,
        "sha256": hashlib.sha256(b"sku,name\nA1,Widget\n").hexdigest(),
    }
    assert [
        body[k] for k in ("rows_read", "inserted", "updated", "unchanged", "duplicates", "rejected")
    ] == [1000, 600, 250, 100, 30, 20]
    assert (body["table"], body["key"]) == ("shop.catalog_product", ["supplier", "sku"])
    assert [body[k] for k in ("skipped", "deactivated", "reactivated", "deleted")] == [0] * 4
    assert body["seconds"] == 1.234
    assert body["database"] == {"name": "shop", "host": "db.internal"}
    assert body["rejects_file"] == "products.rejects.csv"
    assert body["error"] is None
    assert b"hunter2" not in req.body and b"loader" not in req.body

    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == f"csvload/{__version__}"
    assert req.headers["x-csvload-event"] == "import.completed"
    assert req.headers["x-csvload-delivery"] == event["id"]
    # No secret, nothing to sign with.
    assert "x-csvload-signature" not in req.headers
    assert "x-csvload-timestamp" not in req.headers


def test_event_ids_are_unique():
    assert completed_event()["id"] != completed_event()["id"]


def test_stdin_file_is_null_and_explicit_run_id_wins():
    event = completed_event(file=None, run_id="run-7")
    assert event["file"] == {"name": "products.csv", "size": None, "sha256": None}
    assert event["run_id"] == "run-7"


def test_failed_event_has_one_line_error_without_credentials():
    error = (
        "connection to postgresql://loader:hunter2@db.internal/shop failed:\n"
        "  FATAL: password authentication failed (password=hunter2)"
    )
    event = build_event(
        FAILED, {"file": "p.csv"}, file=None, database=DATABASE, run_id=None, error=error
    )
    assert event["event"] == "import.failed"
    assert event["status"] == "failed"
    assert "\n" not in event["error"]
    assert "hunter2" not in event["error"]
    assert event["error"].startswith("connection to postgresql://***@db.internal/shop failed:")
    # It stopped before counting: counts are unknown, not zero.
    assert event["inserted"] is None and event["rows_read"] is None


def test_failed_event_takes_the_error_from_the_summary_when_not_given():
    summary = SUMMARY | {"status": "failed", "error": "products.csv line 3: bad\nthing"}
    event = build_event(FAILED, summary, file=None, database=DATABASE, run_id=None, error=None)
    assert (event["status"], event["error"]) == ("failed", "products.csv line 3: bad thing")
    assert completed_event()["error"] is None


def test_completed_event_requires_the_counts():
    with pytest.raises(ValueError, match="lacks updated"):
        build_event(
            COMPLETED,
            {k: v for k, v in SUMMARY.items() if k != "updated"},
            file=None,
            database=DATABASE,
            run_id=None,
            error=None,
        )


def test_file_info_hashes_files_bigger_than_one_chunk(tmp_path):
    data = bytes(range(256)) * (10 * 1024 + 7)  # ~2.5 MiB, not a multiple of the chunk
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    assert file_info(path) == {
        "name": "big.csv",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


# --- signing ---------------------------------------------------------------------------------


def test_signature_verifies_and_rejects_tampering_and_replays(receiver):
    [result] = deliver(fast(receiver.url, secret=SECRET), completed_event())
    assert result.status == "delivered"
    [req] = receiver.requests
    ts = req.headers["x-csvload-timestamp"]
    sig = req.headers["x-csvload-signature"]

    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert abs(int(ts) - time.time()) < 60
    assert verify_signature(SECRET, ts, req.body, sig)
    assert verify_signature(SECRET, ts, req.body, sig, now=int(ts) + 299)

    assert not verify_signature(SECRET, ts, req.body.replace(b"1000", b"1001"), sig)
    assert not verify_signature("other-secret", ts, req.body, sig)
    assert not verify_signature(SECRET, str(int(ts) + 1), req.body, sig)
    assert not verify_signature(SECRET, ts, req.body, sig, now=int(ts) + 301)
    assert not verify_signature(SECRET, ts, req.body, sig, now=int(ts) - 301)
    assert not verify_signature(SECRET, "yesterday", req.body, sig)
    assert not verify_signature(SECRET, ts, req.body, "sha256=" + "0" * 64)


def test_signature_is_hmac_of_timestamp_dot_body():
    # Pinned by hand so a receiver written from docs/webhooks.md interoperates.
    import hmac

    body = b'{"event":"test"}'
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, body) == f"sha256={expected}"


def test_secret_never_sent_or_reported(receiver):
    receiver.script(Reply(500), Reply(400, body=f"bad signature for {SECRET}".encode()))
    [result] = deliver(fast(receiver.url, secret=SECRET), completed_event())

    assert result.status == "failed"
    assert result.attempts == 2
    assert len(receiver.requests) == 2
    for req in receiver.requests:
        assert SECRET not in req.body.decode()
        for name, value in req.headers.items():
            assert SECRET not in value, name
    # The receiver echoed the secret back; the error must not repeat it.
    assert result.error == "HTTP 400 Bad Request: bad signature for ***"
    assert SECRET not in json.dumps(result.as_dict())


# --- retries ---------------------------------------------------------------------------------


def test_500_500_200_is_delivered_on_attempt_3_with_one_delivery_id(receiver):
    receiver.script(Reply(500), Reply(500), Reply(200))
    event = completed_event()

    [result] = deliver(fast(receiver.url, secret=SECRET), event)

    assert result.status == "delivered"
    assert result.attempts == 3
    assert result.last_status_code == 200
    assert result.error is None
    assert len(receiver.requests) == 3
    assert {r.headers["x-csvload-delivery"] for r in receiver.requests} == {event["id"]}
    assert len({r.body for r in receiver.requests}) == 1
    for r in receiver.requests:
        assert verify_signature(
            SECRET, r.headers["x-csvload-timestamp"], r.body, r.headers["x-csvload-signature"]
        )


def test_gives_up_after_the_attempts(receiver):
    receiver.script(Reply(503), Reply(503), Reply(503), Reply(200))

    [result] = deliver(fast(receiver.url), completed_event())

    assert result.status == "failed"
    assert result.attempts == 3
    assert result.last_status_code == 503
    assert result.error == "HTTP 503 Service Unavailable: ok"
    assert len(receiver.requests) == 3


def test_timeout_is_retried_then_fails(receiver):
    receiver.script(Reply(200, delay=5), Reply(200, delay=5))

    [result] = deliver(fast(receiver.url, timeout=0.3, attempts=2), completed_event())

    assert result.status == "failed"
    assert result.attempts == 2
    assert result.last_status_code is None
    assert result.error == "timed out after 0.3 s"
    assert len(receiver.requests) == 2


def test_4xx_is_not_retried(receiver):
    receiver.script(Reply(400, body=b"unknown event\n"), Reply(200))

    [result] = deliver(fast(receiver.url), completed_event())

    assert result.status == "failed"
    assert result.attempts == 1
    assert result.last_status_code == 400
    assert result.error == "HTTP 400 Bad Request: unknown event"
    assert len(receiver.requests) == 1


def test_redirect_is_not_followed(receiver):
    elsewhere = receiver.url.replace("/hook", "/moved?token=zzz")
    receiver.script(Reply(302, headers={"Location": elsewhere}))

    [result] = deliver(fast(receiver.url), completed_event())

    assert result.status == "failed"
    assert result.attempts == 1
    assert result.last_status_code == 302
    assert "redirect to " + redact_url(elsewhere) + " not followed" in result.error
    assert "zzz" not in result.error
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_429_retry_after_seconds_is_honoured(receiver):
    receiver.script(Reply(429, headers={"Retry-After": "1"}), Reply(200))

    [result] = deliver(fast(receiver.url, backoff=0.01), completed_event())

    assert result.status == "delivered"
    assert result.attempts == 2
    first, second = receiver.requests
    assert second.at - first.at >= 0.95


def test_retry_after_http_date_is_honoured(receiver):
    # An HTTP-date has one-second resolution: two seconds ahead waits between 1 and 2 s.
    when = formatdate(time.time() + 2, usegmt=True)
    receiver.script(Reply(503, headers={"Retry-After": when}), Reply(200))

    [result] = deliver(fast(receiver.url, backoff=0.01), completed_event())

    assert result.status == "delivered"
    first, second = receiver.requests
    assert second.at - first.at >= 0.95


def test_huge_retry_after_is_capped(receiver):
    receiver.script(Reply(429, headers={"Retry-After": "3600"}), Reply(200))

    [result] = deliver(fast(receiver.url, retry_after_cap=0.2), completed_event())

    # Uncapped, the hour-long wait would pass the deadline and the delivery would fail.
    assert result.status == "delivered"
    assert result.attempts == 2
    first, second = receiver.requests
    assert second.at - first.at >= 0.2


def test_wait_beyond_the_deadline_gives_up_at_once(receiver):
    receiver.script(Reply(503, headers={"Retry-After": "20"}))

    [result] = deliver(fast(receiver.url, deadline=3.0), completed_event())

    assert result.status == "failed"
    assert result.attempts == 1
    assert result.error == (
        "HTTP 503 Service Unavailable: ok "
        "(gave up: next attempt in 20.0 s would pass the 3 s deadline)"
    )
    assert len(receiver.requests) == 1


def test_deadline_shortens_the_last_attempt(receiver):
    receiver.script(*[Reply(200, delay=5)] * 5)

    [result] = deliver(
        fast(receiver.url, timeout=1.5, attempts=5, backoff=0.01, deadline=1.8),
        completed_event(),
    )

    assert result.status == "failed"
    # One full 1.5 s attempt, then only the 0.3 s left, never a third: about 1.8 s in all,
    # where a second full-length attempt would take 3 s.
    assert result.attempts == 2
    assert len(receiver.requests) == 2
    assert 1.7 <= result.seconds < 2.5


def test_connection_refused_is_retried_and_fails_cleanly(closed_port_url):
    [result] = deliver(fast(closed_port_url, backoff=0.01), completed_event())

    assert result == Delivery(
        url=closed_port_url,
        status="failed",
        attempts=3,
        last_status_code=None,
        error="connection refused",
        seconds=result.seconds,
    )


def test_unresolvable_host_fails_cleanly():
    # .invalid is reserved (RFC 2606): it never resolves, and needs no network to fail.
    [result] = deliver(fast("http://csvload.invalid/hook", attempts=1), completed_event())
    assert (result.status, result.attempts, result.last_status_code) == ("failed", 1, None)
    assert result.error.startswith("cannot resolve csvload.invalid (")


def test_each_url_gets_its_own_delivery_in_order(receiver, closed_port_url):
    options = WebhookOptions(urls=(closed_port_url, receiver.url), attempts=2, backoff=0.01)

    results = deliver(options, completed_event())

    assert [(r.url, r.status) for r in results] == [
        (closed_port_url, "failed"),
        (receiver.url, "delivered"),
    ]
    assert len(receiver.requests) == 1


def test_send_test_makes_one_signed_attempt(receiver):
    delivery, latency_ms = send_test(receiver.url, SECRET, 2.0)

    assert delivery.status == "delivered"
    assert latency_ms > 0
    [req] = receiver.requests
    assert req.json()["event"] == "test"
    assert req.headers["x-csvload-event"] == "test"
    assert verify_signature(
        SECRET, req.headers["x-csvload-timestamp"], req.body, req.headers["x-csvload-signature"]
    )

    receiver.script(Reply(500))
    delivery, _ = send_test(receiver.url, None, 2.0)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 500)
    assert len(receiver.requests) == 2


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/x?token=abc", "https://host/x?token=***"),
        ("https://host:8443/x?a=1&b=&c=3#frag", "https://host:8443/x?a=***&b=***&c=***"),
        ("http://token@host/x", "http://host/x"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://host/plain", "http://host/plain"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_url_credentials_become_basic_auth_and_are_redacted(receiver):
    url = receiver.url.replace("http://", "http://hook%40user:p%3Ass@") + "?token=abc"

    [result] = deliver(fast(url), completed_event())

    assert result.status == "delivered"
    [req] = receiver.requests
    assert req.path == "/hook?token=abc"
    expected = base64.b64encode(b"hook@user:p:ss").decode()
    assert req.headers["authorization"] == f"Basic {expected}"
    assert result.url == receiver.url + "?token=***"
    shown = json.dumps(result.as_dict())
    assert "p%3Ass" not in shown and "abc" not in shown and "hook%40user" not in shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/x", "webhook URL ftp://host/x: scheme must be http or https, not 'ftp'"),
        ("host/x", "webhook URL host/x: scheme must be http or https, not 'empty'"),
        ("http:///x", "webhook URL http:///x: no host (use http://host/path)"),
        (
            "http://u:secretpw@host:99999/x",
            "webhook URL http://host:99999/x: Port out of range 0-65535 (check the URL)",
        ),
    ],
)
def test_check_url_rejects_unusable_urls(url, message):
    with pytest.raises(WebhookConfigError) as info:
        check_url(url)
    assert str(info.value) == message


def test_deliver_reports_an_unusable_url_instead_of_raising():
    [result] = deliver(WebhookOptions(urls=("ftp://u:pw@host/x",)), completed_event())
    assert (result.url, result.status, result.attempts) == ("ftp://host/x", "failed", 0)
    assert "pw" not in result.error
