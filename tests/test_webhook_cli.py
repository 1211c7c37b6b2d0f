"""The completion webhook as the import command sends it, to a real server on 127.0.0.1."""

from __future__ import annotations

import json

from helpers.cli import cli
from helpers.db import table_checksum
from helpers.webhook import Reply

from csvload.webhook import verify_signature

SECRET = "s3cret-for-tests"


def signed_by(secret: str, request) -> bool:
    headers = request.headers
    return verify_signature(
        secret, headers["x-csvload-timestamp"], request.body, headers["x-csvload-signature"]
    )


def import_with_hook(dsn, path, url, *extra, env=None):
    return cli(dsn, "import", str(path), "--json", "--quiet", "--webhook", url, *extra, env=env)


def test_one_verified_event_whose_counts_equal_the_summary(products, tmp_path,
                                                           receiver):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,1\nb,2\nA,3\n")
    result = import_with_hook(products, path, receiver.url, env={"CSVLOAD_WEBHOOK_SECRET": SECRET})
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert signed_by(SECRET, request)
    event = request.json()
    assert event["event"] == "import.completed"
    for key in ("rows_read", "inserted", "updated", "unchanged", "duplicates", "rejected"):
        assert event[key] == summary[key]
    assert event["file"]["name"] == "p.csv" and event["file"]["size"] == path.stat().st_size
    assert summary["webhooks"][0]["status"] == "delivered"
    assert SECRET not in result.stdout + result.stderr
    assert SECRET.encode() not in request.body


def test_undeliverable_webhook_exits_4_and_keeps_the_import(products, tmp_path,
                                                            receiver):
    receiver.script(Reply(503), Reply(503), Reply(503))
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,1\n")
    result = import_with_hook(products, path, receiver.url)
    assert result.exit_code == 4
    assert "webhook" in result.stderr and "the import itself was committed" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded"
    assert summary["webhooks"][0]["attempts"] == 3
    assert summary["webhooks"][0]["last_status_code"] == 503
    assert table_checksum(products) != "empty"


def test_failed_import_sends_import_failed(products, tmp_path, receiver):
    before = table_checksum(products)
    path = tmp_path / "p.csv"
    path.write_text("sku,name\n,empty sku\n")
    result = import_with_hook(products, path, receiver.url)
    assert result.exit_code == 1
    event = receiver.requests[0].json()
    assert event["event"] == "import.failed"
    assert "more than --max-errors 0" in event["error"]
    assert event["rejected"] == 1
    assert table_checksum(products) == before


def test_dry_run_sends_nothing_unless_asked(products, tmp_path, receiver):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\na,1\n")
    assert import_with_hook(products, path, receiver.url, "--dry-run").exit_code == 0
    assert receiver.requests == []
    assert (
        import_with_hook(
            products, path, receiver.url, "--dry-run", "--webhook-on-dry-run"
        ).exit_code
        == 0
    )
    assert [r.json()["status"] for r in receiver.requests] == ["dry_run"]


def test_webhook_test_command(receiver):
    result = cli(None, "webhook", "test", receiver.url, "--secret", SECRET, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["last_status_code"] == 200
    assert "delivered" in result.stderr and "ms" in result.stderr
    request = receiver.requests[0]
    assert signed_by(SECRET, request)
