"""The run history of remote sources: a csvload_runs made by an older csvload (no source
columns, a status CHECK without unchanged_feed) is upgraded in place, its rows kept; `runs`
and `status` show the redacted source and the unchanged_feed status."""

from __future__ import annotations

import json

from helpers.cli import cli, quiet_cli
from helpers.db import execute, query

from csvload.history.runs import create_runs_table

CSV = b"sku,name\nH-1,one\n"
OLD_CHECK = (
    "ALTER TABLE csvload_runs DROP COLUMN source, DROP COLUMN etag, DROP COLUMN last_modified,"
    " DROP COLUMN remote_mtime, DROP CONSTRAINT csvload_runs_status_check,"
    " ADD CONSTRAINT csvload_runs_status_check"
    " CHECK (status IN ('running', 'succeeded', 'failed', 'dry_run', 'interrupted'))"
)


def test_an_older_runs_table_is_upgraded_and_keeps_its_rows(products, conn, feed_server):
    create_runs_table(conn)
    conn.commit()
    execute(products, OLD_CHECK)
    execute(products, "INSERT INTO csvload_runs (run_id, file, status, lock_key)"
                      " VALUES (gen_random_uuid(), 'old.csv', 'succeeded', 1)")  # fmt: skip
    url = feed_server.serve("/feed.csv", body=CSV, etag='"x"')
    assert quiet_cli(products, "import", url, "--if-changed").exit_code == 0
    result = quiet_cli(products, "import", url, "--if-changed", "--json")
    assert json.loads(result.stdout)["status"] == "unchanged_feed"
    rows = query(products, "SELECT status, source FROM csvload_runs ORDER BY started_at")
    assert rows == [("succeeded", None), ("succeeded", url), ("unchanged_feed", url)]


def test_runs_and_status_show_the_redacted_source(products, feed_server):
    url = feed_server.serve("/feed.csv", body=CSV, etag='"x"')
    secret = url.replace("http://", "http://me:pw@") + "?key=k1"
    shown = url.replace("http://", "http://***@") + "?key=***"
    quiet_cli(products, "import", secret, "--if-changed")
    quiet_cli(products, "import", secret, "--if-changed")
    status = cli(products, "status", "--json")
    assert status.exit_code == 0  # unchanged_feed ended well
    info = json.loads(status.stdout)
    assert (info["status"], info["source"], info["file"]) == ("unchanged_feed", shown, shown)
    table = cli(products, "runs")
    assert table.stdout.count(shown) == 2
    assert "unchanged_feed" in table.stdout
