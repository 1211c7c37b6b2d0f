"""Benchmark: a 500k-row, six-column workbook against the same data as CSV.

    .venv/bin/python tests/bench/workbook_bench.py

Issue 24: "a 500k-row, six-column workbook must load in at most 3x the time of the same
data as CSV, with client peak RSS at or below 400 MB."  The data (sku, name, description,
price, stock, ean: text, text, text, a number with two decimals, a whole number, a
13-digit EAN with leading zeros stored as text) is generated once into tests/bench/data,
as an .xlsx written by xlsxwriter in constant_memory mode and as the CSV of the same values
as the workbook shows them.  Each run creates an empty six-column table of its own and
imports one of the two into it with `csvload import --table bench_item --json --quiet` as
a subprocess (wall time, and the client's peak RSS from GNU time); the two alternate which
goes first.  After each import the table's content is compared with the other format's:
both must store exactly the same rows.

Environment: BENCH_RUNS (default 5), BENCH_ROWS (default 500000), DATABASE_URL (a server of
your own; else a throwaway one, as bench.py starts).  Results go to
tests/bench/workbook_results.md and workbook_results.json.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bench
import psycopg
from bench import BenchError, log

HERE = bench.HERE
GOAL_RATIO, GOAL_RSS_MIB = 3.0, 400
TABLE = """
CREATE TABLE bench_item (
    sku text NOT NULL UNIQUE,
    name text,
    description text,
    price numeric(10,2),
    stock integer,
    ean text
)
"""
HEADER = ["sku", "name", "description", "price", "stock", "ean"]
WORDS = [
    "lamp",
    "desk",
    "chair",
    "table",
    "shelf",
    "sofa",
    "rug",
    "mirror",
    "clock",
    "vase",
    "stool",
    "bench",
    "cabinet",
]


def data_files(rows: int) -> tuple[Path, Path]:
    """(the workbook, the CSV of the same values), generated into tests/bench/data once."""
    from csvload.read.workbook import number

    bench.DATA.mkdir(parents=True, exist_ok=True)
    book, text = bench.DATA / f"items-{rows}.xlsx", bench.DATA / f"items-{rows}.csv"
    if book.exists() and text.exists():
        return book, text
    import xlsxwriter

    started = time.perf_counter()
    rng = random.Random(24)
    partial_book, partial_text = (p.with_name(p.name + ".partial") for p in (book, text))
    workbook = xlsxwriter.Workbook(str(partial_book), {"constant_memory": True})
    sheet = workbook.add_worksheet("Items")
    sheet.write_row(0, 0, HEADER)
    with partial_text.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(1, rows + 1):
            name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS)} {rng.randrange(1000)}"
            description = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 12)))
            price = round(rng.uniform(0.5, 2000), 2)
            stock = rng.randrange(0, 500)
            ean = f"{rng.randrange(10**12):013d}"  # leading zeros: stored as text
            sku = f"IT-{i:07d}"
            sheet.write_string(i, 0, sku)
            sheet.write_string(i, 1, name)
            sheet.write_string(i, 2, description)
            sheet.write_number(i, 3, price)
            sheet.write_number(i, 4, stock)
            sheet.write_string(i, 5, ean)
            writer.writerow([sku, name, description, number(price), stock, ean])
    workbook.close()
    partial_book.rename(book)
    partial_text.rename(text)
    log(f"generated {book.name} and {text.name} in {time.perf_counter() - started:.0f}s")
    return book, text


@contextlib.contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with bench.local_server() as (dsn, _unix):
        yield dsn


def content(conn: psycopg.Connection) -> tuple[int, str]:
    return conn.execute(
        "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY sku)) FROM bench_item t"
    ).fetchone()


def one_run(conn: psycopg.Connection, dsn: str, path: Path, fmt: str) -> dict:
    conn.execute("DROP TABLE IF EXISTS bench_item")
    conn.execute(TABLE)
    bench.settle(conn)
    outcome = bench.Csvload(("--table", "bench_item")).run(path, dsn)
    counts = outcome.counts
    if counts["inserted"] != counts["rows_read"] or counts["rejected"]:
        raise BenchError(f"{fmt}: not every row was inserted: {counts}")
    return {
        "format": fmt,
        "seconds": outcome.finished.seconds,
        "rss_kib": outcome.finished.rss_kib,
        "cpu_seconds": outcome.finished.cpu_seconds,
        "rows": counts["rows_read"],
        "content": content(conn),
    }


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    rows = int(os.environ.get("BENCH_ROWS", "500000"))
    book, text = data_files(rows)
    measurements = []
    with server() as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.info.server_version
        for run in range(runs):
            order = [("xlsx", book), ("csv", text)]
            if run % 2:
                order.reverse()
            for fmt, path in order:
                m = one_run(conn, dsn, path, fmt) | {"run": run + 1}
                measurements.append(m)
                log(f"[{fmt} run {run + 1}] {m['seconds']:.2f}s, {m['rss_kib'] / 1024:.0f} MiB")
            if len({m["content"] for m in measurements}) != 1:
                raise BenchError("the workbook and the CSV did not store the same rows")
    seconds = {
        f: statistics.median(m["seconds"] for m in measurements if m["format"] == f)
        for f in ("csv", "xlsx")
    }
    rss = {
        f: max(m["rss_kib"] for m in measurements if m["format"] == f) / 1024
        for f in ("csv", "xlsx")
    }
    per_run = statistics.median(
        next(m["seconds"] for m in measurements if m["format"] == "xlsx" and m["run"] == r)
        / next(m["seconds"] for m in measurements if m["format"] == "csv" and m["run"] == r)
        for r in range(1, runs + 1)
    )
    result = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "server_version": version,
        "rows": rows,
        "runs": runs,
        "sizes": {"xlsx": book.stat().st_size, "csv": text.stat().st_size},
        "median_s": seconds,
        "peak_rss_mib": rss,
        "ratio": seconds["xlsx"] / seconds["csv"],
        "per_run_ratio": per_run,
        "measurements": [{k: v for k, v in m.items() if k != "content"} for m in measurements],
    }
    (HERE / "workbook_results.json").write_text(json.dumps(result, indent=2) + "\n")
    text_out = render(result)
    (HERE / "workbook_results.md").write_text(text_out)
    print(text_out)
    return 0


def render(r: dict) -> str:
    med, rss = r["median_s"], r["peak_rss_mib"]
    ratio_ok = "met" if r["ratio"] <= GOAL_RATIO else "NOT met"
    rss_ok = "met" if rss["xlsx"] <= GOAL_RSS_MIB else "NOT met"
    return "\n".join(
        [
            "# A workbook against the same data as CSV",
            "",
            f"{r['when']}, PostgreSQL {r['server_version'] // 10000}, {r['rows']:,} rows of six"
            f" columns, {r['runs']} runs per format (medians; the formats alternate which goes"
            " first). Each run imports into an empty table of its own with"
            " `csvload import --table bench_item --json --quiet`; both formats stored the same"
            " rows.",
            "",
            "| format | file size | time (median) | runs | peak client RSS |",
            "|---|---:|---:|---|---:|",
            *(
                f"| {f} | {r['sizes'][f] / 1e6:.1f} MB | {med[f]:.2f} s | "
                + ", ".join(f"{m['seconds']:.2f}" for m in r["measurements"] if m["format"] == f)
                + f" | {rss[f]:.0f} MiB |"
                for f in ("csv", "xlsx")
            ),
            "",
            f"- workbook / CSV: {r['ratio']:.2f}x of the medians (per run, median:"
            f" {r['per_run_ratio']:.2f}x); goal at most {GOAL_RATIO:.0f}x: {ratio_ok}",
            f"- workbook peak client RSS: {rss['xlsx']:.0f} MiB; goal at most {GOAL_RSS_MIB} MB:"
            f" {rss_ok}",
            "",
        ]
    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"workbook_bench: {e}")
        sys.exit(1)
