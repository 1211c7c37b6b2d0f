"""A 500k-row body over HTTP streams with flat memory: the csvload process's peak RSS stays
at or below 60 MB, as a local file's does (no temporary copy, nothing buffered whole)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers.cli import assert_balanced, csvload_cmd
from helpers.db import query

RSS_LIMIT_KB = 60 * 1024


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    from csvload.generate import generate_file

    path = tmp_path_factory.mktemp("big-body") / "products-500k.csv"
    generate_file(str(path), 500_000, seed=1, duplicates=0.02)
    return path


@pytest.mark.slow
def test_500k_rows_over_http_in_flat_memory(products, feed_server, big_file):
    url = feed_server.serve("/products-500k.csv", file=big_file)
    wrapper = (
        "import os, sys\n"
        "pid = os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable] + sys.argv[1:])\n"
        "_, status, usage = os.wait4(pid, 0)\n"
        "print(usage.ru_maxrss, file=sys.stderr)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    command = csvload_cmd("import", url, "--dsn", products, "--json", "--quiet")
    argv = [sys.executable, "-c", wrapper, *command[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert_balanced(summary)
    assert summary["rows_read"] == 500_000
    assert query(products, "SELECT count(*) FROM products")[0][0] == summary["inserted"]
    rss_kb = int(done.stderr.strip().splitlines()[-1])
    print(f"peak RSS of a 500k-row import over HTTP: {rss_kb / 1024:.1f} MB")
    assert rss_kb <= RSS_LIMIT_KB, f"{rss_kb / 1024:.1f} MB"
