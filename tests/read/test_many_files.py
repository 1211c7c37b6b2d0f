"""Many files in one import (issue 24): one transaction, the order given, the last file's
last row winning, globs, rejects and errors naming their file, headers that differ, a file
that does not bind, a full feed split over files, progress, the summary and the run
history."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path

from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.db import execute, fetch_products, query, table_checksum
from helpers.files import PRESET_SAMPLES, write_file, write_workbook

from csvload import job, webhook
from csvload.load.loader import ImportOptions
from csvload.read.source import SourceOptions

HEADER = "sku,name,description\n"


def names(dsn) -> dict[str, str]:
    return dict(query(dsn, "SELECT sku, name FROM products"))


# -- order: the last file's last row wins ------------------------------------------------------


def test_the_last_files_last_row_wins(products, tmp_path):
    a = write_file(tmp_path, HEADER + "A-1,from a,d\nA-2,from a,d\nA-1,again in a,d\n", "a.csv")
    b = str(tmp_path / "b.csv.gz")
    Path(b).write_bytes(gzip.compress(f"{HEADER}A-2,from b,d\nA-3,from b,d\n".encode()))
    c = write_file(tmp_path, HEADER + "A-3,from c,d\nA-3,last in c,d\n", "c.csv")
    summary = imported(products, a, b, c)
    assert (summary["rows_read"], summary["inserted"], summary["duplicates"]) == (7, 3, 4)
    assert names(products) == {"A-1": "again in a", "A-2": "from b", "A-3": "last in c"}
    # The order given, not the names' order, decides.
    imported(products, c, b, a)
    assert names(products) == {"A-1": "again in a", "A-2": "from a", "A-3": "from b"}


def test_a_glob_expands_in_sorted_order(products, tmp_path):
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    for part, name in (("part-002", "second"), ("part-001", "first"), ("part-003", "third")):
        write_file(feeds, f"{HEADER}A-1,{name},d\n{part},x,d\n", f"{part}.csv")
    # A rejects file an earlier import left beside the parts is not an input.
    write_file(feeds, "line,reason,record\n", "part-001.csv.rejects.csv")
    summary = imported(products, str(feeds / "part-*.csv"))
    assert [Path(f["file"]).name for f in summary["files"]] == [
        "part-001.csv", "part-002.csv", "part-003.csv",
    ]  # fmt: skip
    assert names(products)["A-1"] == "third"


def test_a_glob_that_matches_nothing_is_a_usage_error(products, tmp_path):
    a = write_file(tmp_path, HEADER + "A-1,n,d\n", "a.csv")
    pattern = str(tmp_path / "part-*.csv")
    result = quiet_cli(products, "import", a, pattern)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: {pattern}: no file matches"
    assert fetch_products(products) == []


def test_stdin_is_read_once(products, tmp_path):
    a = write_file(tmp_path, HEADER + "A-1,n,d\n", "a.csv")
    result = quiet_cli(products, "import", "-", a, "-", input=HEADER + "B-1,n,d\n")
    assert result.exit_code == 2
    assert "Error: - (standard input) can be given only once" in result.stderr
    summary = json.loads(
        quiet_cli(products, "import", a, "-", "--json", input=HEADER + "A-1,stdin,d\n").stdout
    )
    assert summary["inserted"] == 1
    assert [f["file"] for f in summary["files"]] == [a, "<stdin>"]
    assert names(products) == {"A-1": "stdin"}


# -- rejects and errors name their file ----------------------------------------------------------


def test_rejects_name_their_file_and_line(products, tmp_path):
    a = write_file(tmp_path, "sku,name,active\nA-1,n,t\n,no sku,t\nA-2,n,t\n", "a.csv")
    # active 'maybe' is the server's to find, after the reader: its reject comes last.
    b = write_file(tmp_path, "sku,name,active\nB-1,n,maybe\nB-2,n,t\n", "b.csv")
    c = write_workbook(
        tmp_path, {"Sheet1": [["sku", "name", "active"], ["C-1", "n", True], ["", "x", True]]}
    )
    rejects = tmp_path / "rejects.csv"
    summary = imported(
        products, a, b, c, "--rejects", str(rejects), "--max-errors", "5", exit_codes=(3,)
    )
    assert summary["rejected"] == 3
    assert rejects.read_bytes().decode() == (
        "file,line,reason,record\r\n"
        f'{a},3,empty sku,",no sku,t"\r\n'
        f'{c} sheet Sheet1,3,empty sku,",x,true"\r\n'
        f"{b},2,\"active is 'maybe', not a boolean (use true/false, t/f, 1/0 or yes/no)\","
        '"B-1,n,maybe"\r\n'
    )


def test_an_error_names_the_file_and_its_line(products, tmp_path):
    execute(products, "CREATE UNIQUE INDEX products_name_key ON products (name)")
    a = write_file(tmp_path, HEADER + "A-1,lamp,d\nA-2,desk,d\n", "a.csv")
    b = write_file(tmp_path, HEADER + "B-1,chair,d\nB-2,lamp,d\n", "b.csv")
    result = quiet_cli(products, "import", a, b)
    assert result.exit_code == 1
    assert error_line(result).startswith(f"Error: {b} line 3: name 'lamp' is already used")
    assert fetch_products(products) == []


# -- headers ---------------------------------------------------------------------------------


def test_headers_may_differ_as_long_as_each_binds(products, tmp_path):
    a = write_file(tmp_path, 'sku;name;description\nA-1;"from; a";da\n', "a.csv")
    # Another order, another spelling, a column the table does not have, another delimiter.
    b = write_file(tmp_path, 'Description,EXTRA,SKU,Name\ndb,x,B-1,"from, b"\n', "b.csv")
    c = write_file(tmp_path, "Title;Code;description\nfrom c;C-1;dc\n", "c.csv")
    d = write_workbook(tmp_path, {"Sheet1": [
        ["description", "sku", "Title", "extra"], ['d"d', "D-1", "from; d", 1.5],
        ["dd", "D-2", "from d", None],
    ]})  # fmt: skip
    summary = imported(
        products, a, b, c, d, "--delimiter", "auto", "--map", "Title=name", "--map", "Code=sku"
    )
    assert summary["inserted"] == 5
    assert summary["ignored_columns"] == ["EXTRA", "extra"]  # of every file, once each
    assert query(products, "SELECT sku, name, description FROM products ORDER BY sku") == [
        ("A-1", "from; a", "da"), ("B-1", "from, b", "db"), ("C-1", "from c", "dc"),
        ("D-1", "from; d", 'd"d'), ("D-2", "from d", "dd"),
    ]  # fmt: skip


def test_a_file_that_does_not_bind_fails_before_anything_is_written(products, tmp_path):
    imported(products, write_file(tmp_path, HEADER + "OLD-1,old,d\n", "old.csv"))
    before = table_checksum(products)
    a = write_file(tmp_path, HEADER + "A-1,n,d\n", "a.csv")
    no_key = write_file(tmp_path, "name,description\nn,d\n", "no-key.csv")
    result = quiet_cli(products, "import", a, no_key)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {no_key} line 1: no sku column in the header (found 'name', 'description';"
        " use --map 'Your Column=sku')"
    )
    fewer = write_file(tmp_path, "sku,name\nB-1,n\n", "fewer.csv")
    result = quiet_cli(products, "import", a, fewer)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {fewer} line 1: no description column, which {a} has; the files of one"
        " import must give the same columns (import this one on its own)"
    )
    assert table_checksum(products) == before


# -- a full feed split over files ------------------------------------------------------------


def test_a_full_feed_treats_all_the_files_as_one_snapshot(products, tmp_path):
    rows = [f"S-{i},n{i},d" for i in range(1, 41)]
    imported(products, write_file(tmp_path, HEADER + "\n".join(rows) + "\n", "all.csv"))
    # The next night the feed comes in two parts, and S-40 is in neither.
    a = write_file(tmp_path, HEADER + "\n".join(rows[:20]) + "\n", "part-1.csv")
    b = write_file(tmp_path, HEADER + "\n".join(rows[20:39]) + "\n", "part-2.csv")
    summary = imported(products, a, b, "--missing", "deactivate")
    assert (summary["unchanged"], summary["deactivated"]) == (39, 1)
    assert query(products, "SELECT sku FROM products WHERE NOT active") == [("S-40",)]


# -- progress, the summary and the run history -------------------------------------------------


def test_progress_counts_the_bytes_of_all_the_files(products, tmp_path):
    a = write_file(tmp_path, HEADER + "".join(f"A-{i},n,d\n" for i in range(500)), "a.csv")
    b = str(tmp_path / "b.csv.gz")
    Path(b).write_bytes(gzip.compress(b"".join(b"B-%d,n,d\n" % i for i in range(500))
                                      .join([HEADER.encode(), b""])))  # fmt: skip
    seen = []

    @contextlib.contextmanager
    def progress(name):
        seen.append(name)
        yield seen.append

    request = job.ImportRequest(
        SourceOptions(a), ImportOptions(batch_size=100), products, 10,
        webhook.WebhookOptions(()), paths=(a, b),
    )  # fmt: skip
    outcome = job.run(request, job.Hooks(progress=progress))
    assert outcome.error is None and outcome.result.inserted == 1000
    total = Path(a).stat().st_size + Path(b).stat().st_size
    reading = [p for p in seen[1:] if p.phase == "reading"]
    assert {p.bytes_total for p in reading} == {total}
    assert reading[-1].bytes_done == total
    assert max(p.bytes_done for p in reading if p.rows <= 500) <= Path(a).stat().st_size
    assert seen[0] == f"{a} and {b}"


def test_the_summary_and_the_run_history_list_every_file(products, tmp_path):
    a = write_file(tmp_path, HEADER + "A-1,n,d\nA-2,n,d\n", "a.csv")
    b = write_file(tmp_path, HEADER + "B-1,n,d\n", "b.csv")
    summary = imported(products, a, b)
    assert summary["file"] == f"{a} and {b}"
    assert summary["files"] == [
        {"file": a, "size": Path(a).stat().st_size, "rows_read": 2},
        {"file": b, "size": Path(b).stat().st_size, "rows_read": 1},
    ]
    [(file, size, sha256, files)] = query(
        products, "SELECT file, size, sha256, files FROM csvload_runs"
    )
    assert (file, size, sha256) == (f"{a} and {b}", Path(a).stat().st_size + Path(b).stat().st_size,
                                    None)  # fmt: skip
    import hashlib

    assert files == [
        {"file": p, "size": Path(p).stat().st_size,
         "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()}
        for p in (a, b)
    ]  # fmt: skip
    runs = json.loads(cli(products, "runs", "--json").stdout)
    assert runs[0]["file"] == f"{a} and {b}" and len(runs[0]["files"]) == 2


def test_a_preset_reads_each_file_by_its_own_header(products):
    # Two Shopify exports: one with a Status column, one older one with Published instead.
    template = PRESET_SAMPLES / "shopify_product_template.csv"
    published = PRESET_SAMPLES / "shopify_product_template_published.csv"
    summary = imported(products, str(template), str(published), "--preset", "shopify")
    assert (summary["rows_read"], summary["inserted"], summary["skipped"]) == (21, 18, 3)
    assert [f["rows_read"] for f in summary["files"]] == [17, 4]
    assert query(products, "SELECT name, active FROM products WHERE sku = 'example-shirt-m'") == [
        ("Example T-Shirt", True)
    ]
