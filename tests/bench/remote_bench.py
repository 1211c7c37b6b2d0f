"""Benchmark: importing bench.py's 500k file over HTTP from 127.0.0.1 against importing the
same file from its local path, in one session.

    .venv/bin/python tests/bench/remote_bench.py

Issue 23: "importing the 500k file over HTTP from 127.0.0.1 costs at most 10% more than from
a local path".  A standard-library HTTP server on 127.0.0.1 serves the bench data folder
(Content-Length, no compression); each run times, by both methods in turn (the order
alternating run by run),

- fresh: `csvload import` into an empty products (csvload init's table);
- reimport: the re-import file (half the names changed) into a products filled with the
  fresh file.

The URL import also hashes the body as it streams (the run history's sha256, --if-changed);
a local file is hashed by the recorder on another thread.  Medians are reported, and
url / path from the medians.  Environment: BENCH_RUNS (default 3), BENCH_SIZES (default
500000), DATABASE_URL (default: bench.py's throwaway server).  Results go to
tests/bench/remote_results.md and remote_results.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import statistics
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bench
import psycopg
from bench import BenchError, log

HERE = bench.HERE
METHODS = ("path", "url")
GOAL = 1.10  # url / path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def database() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with bench.local_server() as (dsn, _unix):
        yield dsn


def reset(conn: psycopg.Connection, dsn: str, fill: Path | None) -> None:
    conn.execute("DROP TABLE IF EXISTS products CASCADE")
    bench.run_measured([str(bench.CSVLOAD), "init", "--dsn", dsn], "csvload init")
    if fill is not None:
        bench.run_measured([str(bench.CSVLOAD), "import", str(fill), "--dsn", dsn, "--quiet"],
                           "fill")  # fmt: skip
    bench.settle(conn)


def measure(dsn: str, base: str, rows: int, runs: int) -> list[dict]:
    fresh, reimport = bench.data_files(rows)
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for run in range(runs):
            order = METHODS if run % 2 == 0 else METHODS[::-1]
            for case, file, fill in (("fresh", fresh, None), ("reimport", reimport, fresh)):
                for method in order:
                    reset(conn, dsn, fill)
                    source = Path(file) if method == "path" else f"{base}/{file.name}"
                    outcome = bench.Csvload().run(source, dsn)
                    counts = outcome.counts
                    if counts["rows_read"] != rows or counts["status"] != "succeeded":
                        raise BenchError(f"{case} {method}: {counts}")
                    m = {
                        "case": case, "method": method, "rows": rows, "run": run + 1,
                        "seconds": outcome.finished.seconds,
                        "cpu_seconds": outcome.finished.cpu_seconds,
                        "rss_kib": outcome.finished.rss_kib,
                        "inserted": counts["inserted"], "updated": counts["updated"],
                    }  # fmt: skip
                    out.append(m)
                    log(f"[{case} {method} run {run + 1}] {m['seconds']:.2f} s,"
                        f" {m['rss_kib'] / 1024:.0f} MiB")  # fmt: skip
    return out


def summarize(measurements: list[dict]) -> list[dict]:
    rows = []
    for case in ("fresh", "reimport"):
        for size in sorted({m["rows"] for m in measurements}):
            mine = [m for m in measurements if m["case"] == case and m["rows"] == size]
            med = {k: statistics.median(m["seconds"] for m in mine if m["method"] == k)
                   for k in METHODS}  # fmt: skip
            cpu = {k: statistics.median(m["cpu_seconds"] for m in mine if m["method"] == k)
                   for k in METHODS}  # fmt: skip
            rss = {k: max(m["rss_kib"] for m in mine if m["method"] == k) / 1024
                   for k in METHODS}  # fmt: skip
            # Each run's own url / path: the two follow each other, so a noisy stretch of a
            # shared machine hits them alike.
            per_run = statistics.median(
                next(m["seconds"] for m in mine if m["method"] == "url" and m["run"] == r)
                / next(m["seconds"] for m in mine if m["method"] == "path" and m["run"] == r)
                for r in sorted({m["run"] for m in mine})
            )
            rows.append({
                "case": case, "rows": size, "median_s": med, "cpu_s": cpu,
                "peak_rss_mib": rss, "ratio": med["url"] / med["path"],
                "per_run_ratio": per_run, "cpu_ratio": cpu["url"] / cpu["path"],
            })  # fmt: skip
    return rows


def render(result: dict) -> str:
    lines = [
        "# A URL source against a local path: `csvload import http://127.0.0.1/...`",
        "",
        f"{result['when']}, {result['runs']} runs per method (medians), the order alternating"
        " run by run; a standard-library HTTP server on 127.0.0.1 serves bench.py's files.",
        "",
        "| case | rows | path s | url s | url / path | per-run url / path | path CPU s"
        " | url CPU s | CPU url / path | peak RSS MiB path | peak RSS MiB url |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        med, cpu, rss = s["median_s"], s["cpu_s"], s["peak_rss_mib"]
        lines.append(
            f"| {s['case']} | {s['rows']:,} | {med['path']:.2f} | {med['url']:.2f} |"
            f" {s['ratio']:.2f}x | {s['per_run_ratio']:.2f}x | {cpu['path']:.2f} |"
            f" {cpu['url']:.2f} | {s['cpu_ratio']:.2f}x | {rss['path']:.1f} | {rss['url']:.1f} |"
        )
    lines += [
        "",
        "CPU is the csvload process's own user + system time: what fetching over HTTP adds on"
        " the client (parsing HTTP, hashing the body as it streams); the rest"
        " of the wall time is PostgreSQL's.",
        "",
        f"Goal: url at most {GOAL:.2f}x path (judged on the ratio of the medians).",
    ]
    for s in result["summary"]:
        verdict = "met" if s["ratio"] <= GOAL else "NOT met"
        lines.append(f"- {s['case']}: {s['ratio']:.2f}x: {verdict}")
    return "\n".join(lines) + "\n"


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "500000").split(",") if s]
    for rows in sizes:
        bench.data_files(rows)
    measurements: list[dict] = []
    with database() as dsn, http_server(bench.DATA) as base:
        for rows in sizes:
            measurements += measure(dsn, base, rows, runs)
    result = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs,
        "measurements": measurements,
        "summary": summarize(measurements),
    }
    (HERE / "remote_results.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    (HERE / "remote_results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
