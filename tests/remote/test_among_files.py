"""A URL among the paths of a many-file import (issues 23 and 24): read in its place in
the order given, never taken for a glob (its `?` and `*` are its own), its credentials kept
out of the run's list of files; --if-changed takes one URL alone."""

from __future__ import annotations

import json

from helpers.cli import error_line, imported, quiet_cli
from helpers.db import query
from helpers.files import write_file

HEADER = "sku,name,description\n"


def test_a_url_stands_among_the_files_in_its_place(products, feed_server, tmp_path):
    url = feed_server.serve(
        "/part-2.csv", body=(HEADER + "A-1,from the url,d\nA-2,url,d\n").encode()
    )
    secret = url.replace("http://", "http://me:pw@") + "?token=t0p&x=*"
    first = write_file(tmp_path, HEADER + "A-1,from a,d\nA-3,from a,d\n", "a.csv")
    last = write_file(tmp_path, HEADER + "A-2,from c,d\n", "c.csv")
    summary = imported(products, first, secret, last)
    assert (summary["rows_read"], summary["inserted"]) == (5, 3)
    assert dict(query(products, "SELECT sku, name FROM products")) == {
        "A-1": "from the url", "A-2": "from c", "A-3": "from a",
    }  # fmt: skip
    files = json.dumps(query(products, "SELECT files FROM csvload_runs")[0][0])
    assert "pw" not in files and "t0p" not in files
    assert "part-2.csv" in files


def test_if_changed_takes_one_url_alone(products, feed_server, tmp_path):
    url = feed_server.serve("/feed.csv", body=(HEADER + "A-1,n,d\n").encode(), etag='"1"')
    other = write_file(tmp_path, HEADER + "A-2,n,d\n", "b.csv")
    result = quiet_cli(products, "import", url, other, "--if-changed")
    assert result.exit_code == 2
    assert "--if-changed" in error_line(result)
    assert query(products, "SELECT count(*) FROM products") == [(0,)]
