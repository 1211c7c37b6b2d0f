"""Benchmark: what the undo record (issue 22) costs an import, on PostgreSQL 15 and 18.

    .venv/bin/python tests/bench/undo_bench.py

The issue: "The record may add at most 10%" to three imports into csvload's products,
each timed with the record (the default) and with --no-undo, alternating run by run:

- fresh: bench.py's 500k file into the empty table (the fill keeps its keys packed);
- daily: a daily feed with 1% of the rows changed, into the filled table;
- reimport: bench.py's re-import file (half the names changed), into the filled table.

The filled table is refilled (untimed, with --no-undo) before every timed import.  Medians
of BENCH_RUNS runs (default 3) per cell; the ratio is undo / no-undo of the medians, and
the per-run column the median of each pair's own ratio (the two of a pair follow each
other, so a noisy stretch hits both).  Results go to tests/bench/undo_results.md and
undo_results.json.  BENCH_SIZES (default 500000), BENCH_SERVERS (default 15,18).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
from pathlib import Path

import bench
import feed_bench
import psycopg
from bench import BenchError, log

HERE = bench.HERE
DAILY = 0.01  # the share of rows a daily feed changes
PHASES = ("fresh", "daily", "reimport")
METHODS = {"undo": (), "no-undo": ("--no-undo",)}
GOAL = 1.10


def daily_file(rows: int) -> Path:
    from csvload.generate import generate_file

    path = bench.DATA / f"products-{rows}-s{bench.SEED}-d{bench.DUPLICATES}-daily.csv"
    if not path.exists():
        partial = path.with_suffix(".partial")
        generate_file(partial, rows, seed=bench.SEED, duplicates=bench.DUPLICATES,
                      rename_fraction=DAILY)  # fmt: skip
        partial.rename(path)
        log(f"generated {path.name}")
    return path


def prepare(conn: psycopg.Connection, dsn: str, fresh: Path, phase: str) -> None:
    """An empty products (fresh), or one filled without a record; empty undo tables,
    made here so that no timed import pays for creating them."""
    from csvload.load.undo_log import STAMPS, UNDO, UNDO_RUNS, create_undo_tables

    conn.execute("DROP TABLE IF EXISTS products CASCADE")
    create_undo_tables(conn)
    conn.execute(f"TRUNCATE {UNDO}, {UNDO_RUNS}, {STAMPS}")
    bench.run_measured([str(bench.CSVLOAD), "init", "--dsn", dsn], "csvload init")
    if phase != "fresh":
        bench.run_measured(
            [str(bench.CSVLOAD), "import", str(fresh), "--dsn", dsn, "--quiet", "--no-undo"],
            "fill",
        )
    bench.settle(conn)


def one_server(label: str, dsn: str, rows: int, runs: int) -> list[dict]:
    fresh, reimport = bench.data_files(rows)
    files = {"fresh": fresh, "daily": daily_file(rows), "reimport": reimport}
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for phase in PHASES:
            for run in range(runs):
                names = list(METHODS) if run % 2 == 0 else list(METHODS)[::-1]
                for method in names:
                    prepare(conn, dsn, fresh, phase)
                    outcome = bench.Csvload(METHODS[method]).run(files[phase], dsn)
                    counts = outcome.counts
                    recorded = conn.execute(
                        "SELECT count(*) FROM csvload_undo_runs WHERE run_id = %s",
                        (counts["run_id"],),
                    ).fetchone()[0]
                    if recorded != (method == "undo"):
                        raise BenchError(f"{label} {phase} {method}: recorded {recorded}")
                    size = conn.execute(
                        "SELECT coalesce(sum(pg_column_size(u.*)), 0) FROM csvload_undo u"
                    ).fetchone()[0]
                    m = {
                        "server": label, "rows": rows, "phase": phase, "method": method,
                        "run": run + 1, "seconds": outcome.finished.seconds,
                        "inserted": counts["inserted"], "updated": counts["updated"],
                        "record_bytes": int(size),
                    }  # fmt: skip
                    out.append(m)
                    log(f"[{label} {phase} {method} run {run + 1}] {m['seconds']:.2f}s,"
                        f" {m['updated']} updated, record {size / 1e6:.1f} MB")  # fmt: skip
    return out


def summarize(measurements: list[dict]) -> list[dict]:
    rows = []
    keys = dict.fromkeys((m["server"], m["rows"], m["phase"]) for m in measurements)
    for server, size, phase in keys:
        mine = [m for m in measurements
                if (m["server"], m["rows"], m["phase"]) == (server, size, phase)]  # fmt: skip
        times = {k: [m["seconds"] for m in mine if m["method"] == k] for k in METHODS}
        med = {k: statistics.median(v) for k, v in times.items()}
        pairs = [u / n for u, n in zip(times["undo"], times["no-undo"], strict=True)]
        rows.append({
            "server": server, "rows": size, "phase": phase,
            "undo_runs": times["undo"], "no_undo_runs": times["no-undo"],
            "undo_s": med["undo"], "no_undo_s": med["no-undo"],
            "ratio": med["undo"] / med["no-undo"], "per_run_ratio": statistics.median(pairs),
            "record_mb": max(m["record_bytes"] for m in mine if m["method"] == "undo") / 1e6,
            "updated": mine[0]["updated"], "inserted": mine[0]["inserted"],
        })  # fmt: skip
    return rows


def render(result: dict) -> str:
    lines = [
        "# The undo record's cost: an import with it against the same with --no-undo",
        "",
        f"{result['date']}, {result['runs']} runs per method (medians), alternating;"
        " csvload's products; the table refilled before every timed import.",
        "",
        "| server | rows | import | no-undo s (runs) | undo s (runs) | undo / no-undo |"
        " per-run | record MB | inserted | updated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        runs_n = ", ".join(f"{s:.2f}" for s in r["no_undo_runs"])
        runs_u = ", ".join(f"{s:.2f}" for s in r["undo_runs"])
        lines.append(
            f"| {r['server']} | {r['rows']:,} | {r['phase']} | {r['no_undo_s']:.2f} ({runs_n})"
            f" | {r['undo_s']:.2f} ({runs_u}) | {r['ratio']:.2f}x | {r['per_run_ratio']:.2f}x"
            f" | {r['record_mb']:.1f} | {r['inserted']:,} | {r['updated']:,} |"
        )
    lines += ["", f"Goal: at most {GOAL:.2f}x (the issue's 10%)."]
    for r in result["summary"]:
        met = "met" if r["ratio"] <= GOAL else "NOT met"
        lines.append(f"- {r['server']}, {r['phase']}: {r['ratio']:.2f}x: {met}")
    return "\n".join(lines) + "\n"


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "500000").split(",") if s]
    servers = os.environ.get("BENCH_SERVERS", "15,18").split(",")
    measurements: list[dict] = []
    starts = {"15": feed_bench.pg15_server, "18": feed_bench.pg18_server}
    for major in servers:
        with starts[major]() as dsn:
            if dsn is None:
                log(f"PostgreSQL {major}: not installed, skipped")
                continue
            for size in sizes:
                measurements += one_server(f"PostgreSQL {major}", dsn, size, runs)
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs,
        "summary": summarize(measurements),
        "measurements": measurements,
    }
    (HERE / "undo_results.json").write_text(json.dumps(result, indent=1) + "\n")
    (HERE / "undo_results.md").write_text(render(result))
    log(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
