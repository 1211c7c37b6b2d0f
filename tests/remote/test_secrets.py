"""No credential of a URL source appears in any output, run record, file or webhook payload:
the URL's user and password, its secret-looking query parameters, a --header value read from
the environment, the sftp password.  Checked as tests/cli/test_security.py checks the DSN
password: every byte csvload produced, searched for each secret."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections import deque

import psycopg
from helpers.cli import csvload_cmd

SECRETS = ("UrlPw111", "QueryTok222", "AmzSig333", "HeaderKey444", "SftpPw555")
CSV = b"sku,name\nK-1,one\nK-2,two\n"


def run(cwd, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(csvload_cmd(*args), capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)  # fmt: skip


def test_no_credential_of_a_url_appears_anywhere(products, feed_server, receiver, tmp_path):
    basic = "Basic " + base64.b64encode(b"feeder:UrlPw111").decode()
    need = {"Authorization": basic, "X-Api-Key": "HeaderKey444"}
    query = "?token=QueryTok222&X-Amz-Signature=AmzSig333&page=1"
    feed_server.serve("/feed.csv", body=CSV + b"K-3,a,too many\n", etag='"1"', require=need)
    feed_server.serve("/flaky.csv", body=CSV, require=need, failures=deque([503]),
                      drop_after=10)  # fmt: skip
    base = f"http://feeder:UrlPw111@127.0.0.1:{feed_server.port}"
    env = os.environ | {"FEED_KEY": "HeaderKey444", "CSVLOAD_SFTP_PASSWORD": "SftpPw555"}
    common = ("--dsn", products, "--header", "X-Api-Key: env:FEED_KEY", "--webhook",
              receiver.url, "--fetch-retries", "1")  # fmt: skip
    outputs = [
        # imported (with a rejected row, so a rejects file), then unchanged (304)
        run(tmp_path, "import", base + "/feed.csv" + query, *common, "--if-changed",
            "--max-errors", "5", "--json", env=env),
        run(tmp_path, "import", base + "/feed.csv" + query, *common, "--if-changed", "--json",
            env=env),
        # 404; 401 (no header); 503 then a body cut off part-way
        run(tmp_path, "import", base + "/gone.csv" + query, *common, "--json", env=env),
        run(tmp_path, "import", base + "/feed.csv" + query, "--dsn", products, "--json",
            env=env),
        run(tmp_path, "import", base + "/flaky.csv" + query, *common, "--json", env=env),
        run(tmp_path, "verify", base + "/feed.csv" + query, "--dsn", products, "--header",
            "X-Api-Key: env:FEED_KEY", "--json", env=env),
        run(tmp_path, "runs", "--dsn", products, "--json", env=env),
        run(tmp_path, "status", "--dsn", products, "--json", env=env),
        run(tmp_path, "runs", "--dsn", products, env=env),
    ]  # fmt: skip
    statuses = [json.loads(o.stdout)["status"] for o in outputs[:5]]
    assert statuses == ["succeeded", "unchanged_feed", "failed", "failed", "failed"]
    assert (tmp_path / "feed.csv.rejects.csv").exists()
    seen = [o.stdout + o.stderr for o in outputs]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    with psycopg.connect(products) as c:
        seen += [r[0] for r in c.execute("SELECT r::text FROM csvload_runs r")]
    seen += [r.body.decode() + json.dumps(r.headers) for r in receiver.requests]
    written = "\n".join(seen)
    assert len(receiver.requests) == 4  # the run without --webhook sent none
    # The URL itself is there, redacted.
    shown = f"http://***@127.0.0.1:{feed_server.port}/feed.csv?token=***&X-Amz-Signature=***&page=1"
    assert shown in written
    for secret in SECRETS:
        assert secret not in written, secret
