"""https:// and http:// sources against a real server on 127.0.0.1 (helpers/feed_server.py):
gzip both ways, ETag and Last-Modified with 304 (--if-changed), redirects and a loop, 401,
404, 429 with Retry-After, 500 then success, a slow server, a body cut off part-way, TLS."""

from __future__ import annotations

import gzip
import json
import time
from collections import deque

from helpers.cli import error_line, imported, quiet_cli
from helpers.db import query, table_checksum

CSV = b"sku,name\nA-1,one\nA-2,two\nA-3,three\n"
CHANGED = b"sku,name\nA-1,uno\nA-2,two\nA-3,three\nA-4,four\n"


def names(dsn: str) -> dict[str, str]:
    return dict(query(dsn, "SELECT sku, name FROM products"))


def test_a_url_imports_like_a_file_and_the_run_names_it(products, feed_server):
    url = feed_server.serve("/feed.csv", body=CSV)
    summary = imported(products, url)
    assert (summary["status"], summary["inserted"], summary["source"]) == ("succeeded", 3, url)
    assert summary["file"] == url
    assert names(products) == {"A-1": "one", "A-2": "two", "A-3": "three"}
    row = query(products, "SELECT file, source, size, sha256 FROM csvload_runs")[0]
    assert row[:3] == (url, url, len(CSV))
    assert row[3] is not None and len(row[3]) == 64  # hashed while streaming


def test_gzip_by_magic_bytes_and_by_content_encoding(products, feed_server):
    as_file = feed_server.serve("/feed.csv.gz", body=gzip.compress(CSV), chunked=True)
    assert imported(products, as_file)["inserted"] == 3
    encoded = feed_server.serve("/encoded.csv", body=CHANGED, encode_gzip=True)
    summary = imported(products, encoded)
    assert (summary["inserted"], summary["updated"]) == (1, 1)
    assert feed_server.seen[-1].headers["accept-encoding"] == "gzip"
    assert names(products)["A-4"] == "four"


def test_etag_304_ends_unchanged_with_nothing_imported(products, feed_server, receiver):
    url = feed_server.serve("/feed.csv", body=CSV, etag='"v1"')
    first = imported(products, url, "--if-changed")
    assert first["status"] == "succeeded"
    before = table_checksum(products)
    result = quiet_cli(products, "import", url, "--if-changed", "--json",
                       "--webhook", receiver.url)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["rows_read"], summary["source"]) == (
        "unchanged_feed", 0, url,
    )  # fmt: skip
    assert feed_server.seen[-1].headers["if-none-match"] == '"v1"'
    assert table_checksum(products) == before
    runs = query(products, "SELECT status, sha256 FROM csvload_runs ORDER BY started_at")
    assert [status for status, _ in runs] == ["succeeded", "unchanged_feed"]
    assert runs[0][1] == runs[1][1] is not None  # the body not sent is the one imported
    event = receiver.requests[0].json()
    assert (event["event"], event["status"], event["source"]) == (
        "import.unchanged", "unchanged_feed", url,
    )  # fmt: skip
    assert event["file"] == {"name": url, "size": None, "sha256": runs[0][1]}
    # The feed changes: imported again.
    feed_server.serve("/feed.csv", body=CHANGED, etag='"v2"')
    assert imported(products, url, "--if-changed")["inserted"] == 1


def test_last_modified_304(products, feed_server):
    stamp = "Wed, 02 Dec 2026 01:00:00 GMT"
    url = feed_server.serve("/feed.csv", body=CSV, last_modified=stamp)
    imported(products, url, "--if-changed")
    result = quiet_cli(products, "import", url, "--if-changed")
    assert result.exit_code == 0
    assert feed_server.seen[-1].headers["if-modified-since"] == stamp
    assert query(products, "SELECT status FROM csvload_runs ORDER BY started_at DESC LIMIT 1") == [
        ("unchanged_feed",)
    ]
    # Without --if-changed nothing conditional is sent, and the file is imported again.
    imported(products, url)
    assert "if-modified-since" not in feed_server.seen[-1].headers


def test_same_digest_without_validators_is_unchanged_and_deactivates_nothing(products, feed_server):
    url = feed_server.serve("/full.csv", body=CSV)
    imported(products, url, "--if-changed", "--missing", "deactivate")
    quiet_cli(products, "import", "-", input="sku,name\nZ-9,extra\n")  # a row no feed lists
    result = quiet_cli(products, "import", url, "--if-changed", "--missing", "deactivate",
                       "--max-missing", "100%", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "unchanged_feed"
    # Skipping an unchanged full feed deactivates nothing: Z-9 stays active.
    assert query(products, "SELECT active FROM products WHERE sku = 'Z-9'") == [(True,)]


def test_redirects_are_followed_and_a_loop_is_one_line(products, feed_server):
    feed_server.serve("/real.csv", body=CSV)
    feed_server.serve("/old.csv", redirect="/moved.csv")
    url = feed_server.serve("/moved.csv", redirect=feed_server.url("/real.csv"))
    assert imported(products, feed_server.url("/old.csv"))["inserted"] == 3
    feed_server.serve("/a", redirect="/b")
    feed_server.serve("/b", redirect="/a")
    result = quiet_cli(products, "import", feed_server.url("/a"))
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {feed_server.url('/a')}: a redirect loop (HTTP 302 back to"
        f" {feed_server.url('/a')}; the feed's address is wrong)"
    )
    assert url  # served


def test_401_and_404_name_the_url_the_status_and_a_hint(products, feed_server):
    url = feed_server.serve("/private.csv", body=CSV, require={"X-Token": "right"})
    result = quiet_cli(products, "import", url)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {url}: HTTP 401 Unauthorized (check the --header option, or the user and"
        " password in the URL)"
    )
    result = quiet_cli(products, "import", feed_server.url("/nothing.csv"))
    assert error_line(result) == (
        f"Error: {feed_server.url('/nothing.csv')}: HTTP 404 Not Found (the feed is not at"
        " that address)"
    )
    assert query(products, "SELECT count(*) FROM products") == [(0,)]


def test_header_from_the_environment(products, feed_server):
    url = feed_server.serve("/private.csv", body=CSV, require={"X-Token": "right"})
    result = quiet_cli(products, "import", url, "--header", "X-Token: env:FEED_TOKEN",
                       env={"FEED_TOKEN": "right"})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    result = quiet_cli(products, "import", url, "--header", "X-Token: env:NOT_SET_ANYWHERE")
    assert result.exit_code == 2
    assert "the environment variable NOT_SET_ANYWHERE is not set" in result.stderr


def test_429_with_retry_after_then_success(products, feed_server):
    url = feed_server.serve("/busy.csv", body=CSV,
                            failures=deque([(429, {"Retry-After": "1"})]))  # fmt: skip
    started = time.monotonic()
    assert imported(products, url)["inserted"] == 3
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert len(feed_server.seen) == 2


def test_500_then_success_and_500_to_the_end(products, feed_server):
    url = feed_server.serve("/flaky.csv", body=CSV, failures=deque([500, 503]))
    assert imported(products, url)["inserted"] == 3
    assert len(feed_server.seen) == 3
    broken = feed_server.serve("/broken.csv", body=CSV, failures=deque([500] * 10))
    result = quiet_cli(products, "import", broken, "--fetch-retries", "1")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {broken}: HTTP 500 Internal Server Error after 2 attempts (try later, or raise"
        " --fetch-retries)"
    )


def test_slow_server_hits_the_read_timeout(products, feed_server):
    url = feed_server.serve("/slow.csv", body=CSV, delay=5)
    started = time.monotonic()
    result = quiet_cli(products, "import", url, "--fetch-read-timeout", "0.5")
    assert time.monotonic() - started < 4
    assert error_line(result) == (
        f"Error: {url}: no answer within 0.5 s (raise --fetch-read-timeout)"
    )
    stalled = feed_server.serve("/stalled.csv", body=CHANGED * 1000, stall_after=2000)
    result = quiet_cli(products, "import", stalled, "--fetch-read-timeout", "0.5")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {stalled}: the transfer broke off after 2,000 bytes of the body (no data for"
        " 0.5 s; raise --fetch-read-timeout); nothing was changed"
    )


def test_a_body_cut_off_part_way_fails_and_changes_nothing(products, feed_server):
    rows = "".join(f"B-{i},name {i}\n" for i in range(200_000))
    url = feed_server.serve("/cut.csv", body=b"sku,name\n" + rows.encode(), drop_after=2_000_000)
    imported(products, feed_server.serve("/first.csv", body=CSV))
    before = table_checksum(products)
    result = quiet_cli(products, "import", url, "--missing", "deactivate", "--max-missing",
                       "100%")  # fmt: skip
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(f"Error: {url}: the transfer broke off after ")
    assert line.endswith("; nothing was changed")
    assert "Traceback" not in result.stderr
    assert table_checksum(products) == before
    assert query(products, "SELECT status FROM csvload_runs ORDER BY started_at DESC LIMIT 1") == [
        ("failed",)
    ]


def test_https_with_the_ca_trusted_and_refused_without_it(products, tls_feed_server):
    url = tls_feed_server.serve("/feed.csv", body=CSV)
    summary = imported(products, url, "--ca-file", str(tls_feed_server.ca_file))
    assert summary["inserted"] == 3
    result = quiet_cli(products, "import", url)
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(f"Error: {url}: the server's TLS certificate is not trusted (")
    assert line.endswith("(give its CA with --ca-file, or set SSL_CERT_FILE)")
    result = quiet_cli(products, "import", url, env={"SSL_CERT_FILE": str(tls_feed_server.ca_file)})
    assert result.exit_code == 0, result.stderr


def test_verify_a_url(products, feed_server):
    url = feed_server.serve("/feed.csv", body=CSV)
    imported(products, url)
    result = quiet_cli(products, "verify", url, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["matching"] == 3


def test_progress_measures_the_bytes_off_the_wire_against_content_length(feed_server):
    from csvload.read.source import Source, SourceOptions

    rows = b"".join(b"P-%d,name %d\n" % (i, i) for i in range(20_000))
    compressed = gzip.compress(b"sku,name\n" + rows, mtime=0)  # as the server compresses
    for path, route in (
        ("/p.csv.gz", {"body": compressed}),
        ("/p.csv", {"body": b"sku,name\n" + rows, "encode_gzip": True}),
    ):
        url = feed_server.serve(path, **route)
        with Source(SourceOptions(url)) as source:
            chunks = list(source.chunks(1000))
        assert source.size == len(compressed) < len(rows) / 2
        assert chunks[-1].bytes_done == source.size
        assert sum(c.rows for c in chunks) == 20_000
    with Source(SourceOptions(feed_server.serve("/c.csv", body=rows, chunked=True))) as source:
        assert source.size is None  # no Content-Length: no total


def test_a_server_that_is_not_there_is_retried_then_one_line(products):
    from helpers.webhook import closed_port

    url = f"http://127.0.0.1:{closed_port()}/feed.csv"
    result = quiet_cli(products, "import", url, "--fetch-retries", "1")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {url}: cannot connect to 127.0.0.1:{url.split(':')[2].split('/')[0]}"
        " (Connection refused) after 2 attempt(s) (check the address and the network, or raise"
        " --fetch-retries)"
    )
