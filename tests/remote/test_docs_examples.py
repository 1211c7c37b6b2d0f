"""docs/remote.md's nightly cron line, run as cron would run it: a shell, the token and the
DSN from an env file, the feed's URL pointed at a real server on 127.0.0.1."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from helpers.db import query

DOC = Path(__file__).resolve().parents[2] / "docs" / "remote.md"
DOC_URL = "https://feeds.acme.example/catalogue.csv.gz"
CSV = b"sku,name\nC-1,one\nC-2,two\n"


def cron_command() -> str:
    line = next(x for x in DOC.read_text().splitlines() if x.startswith("15 2 * * *"))
    return line.split("  shop  ", 1)[1]


def test_the_nightly_cron_line(products, feed_server, tmp_path):
    import gzip

    url = feed_server.serve("/catalogue.csv.gz", body=gzip.compress(CSV), etag='"n1"',
                            require={"Authorization": "Bearer t0ken"})  # fmt: skip
    (tmp_path / "acme.env").write_text(
        f"export ACME_TOKEN='Bearer t0ken'\nexport DATABASE_URL={shlex.quote(products)}\n"
    )
    command = cron_command().replace(DOC_URL, url)
    # cron's PATH has no venv: csvload is this Python's module, as the installed script.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "csvload").write_text(f'#!/bin/sh\nexec {sys.executable} -m csvload "$@"\n')
    (bindir / "csvload").chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    env |= {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}
    for _ in range(2):
        done = subprocess.run(["/bin/sh", "-c", command.replace("/srv/catalogue", str(tmp_path))],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # --quiet
    statuses = query(products, "SELECT status, source FROM csvload_runs ORDER BY started_at")
    assert statuses == [("succeeded", url), ("unchanged_feed", url)]
    assert query(products, "SELECT count(*) FROM products") == [(2,)]
