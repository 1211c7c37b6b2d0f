"""Benchmark: csvload on a local Citus cluster (a coordinator and two workers on this
machine), against a hand-written floor on the same cluster and against csvload into a
plain local table on the same coordinator.

    .venv/bin/python tests/bench/citus_bench.py

Environment:
    BENCH_RUNS      runs per method and phase at each size; medians reported (default 3).
    BENCH_SIZES     comma-separated row counts (default 500000); empty ("") for a run of
                    the scale rows alone, which writes citus_scale_results.md/json.
    BENCH_SCALE     comma-separated row counts for the csvload-only scale runs, one run
                    each (default none; e.g. 2000000,10000000).
    BENCH_SHARDS    shards of the distributed products (default 32, Citus's default).
    CSVLOAD_CITUS_TARBALL  the Citus overlay (default ../shared/citus/...; see
                    tests/helpers/citus_cluster.py); the bench exits when it is missing.

Methods, each run into an empty table ("fresh") and then with the re-import variant of the
same file ("reimport"), in a rotating order:
- csvload-distributed: `csvload import` into `csvload init --distributed` products.
- floor-distributed: psql, one transaction: \\copy into a temp stage on the coordinator,
  then one INSERT ... SELECT DISTINCT ON ... ON CONFLICT (sku) DO UPDATE ... WHERE IS
  DISTINCT FROM, the timestamp passed as a value (Citus refuses now() there).
- csvload-local: `csvload import` into `csvload init` products, a plain table on the
  coordinator (the same server, without Citus planning it): the "one plain server" figure.

Where the time goes: the CPU time each node's processes used during each import (from
/proc: the live backends plus what the postmaster reaped), the client's own CPU, and the
coordinator's per-statement durations (log_min_duration_statement = 0, parsed from its
log).  All three nodes share this machine's cores, so a node's CPU time is its share of
the work, and wall time minus the sum is waiting (locks, network round trips, fsync-free
commit).  Results go to tests/bench/citus_results.md and citus_results.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402
from helpers.citus_cluster import CitusCluster, unavailable_reason  # noqa: E402

FLOOR_SCRIPT = bench.FLOOR_STAGE + """\
INSERT INTO products AS p (sku, name, description)
SELECT DISTINCT ON (lower(sku)) sku, name, description
FROM stage
ORDER BY lower(sku), ord DESC
ON CONFLICT (sku) DO UPDATE
SET sku = excluded.sku, name = excluded.name, description = excluded.description,
    updated_at = '{now}'
WHERE (p.sku::text, p.name, p.description)
      IS DISTINCT FROM (excluded.sku::text, excluded.name, excluded.description);
COMMIT;
"""

LOCAL_SCHEMA = "plain"
_CLK = os.sysconf("SC_CLK_TCK")
_DURATION = re.compile(r"duration: ([0-9.]+) ms\s+(?:statement|execute [^:]*): (.*)")


def node_cpu(data_dir: Path) -> float:
    """CPU seconds used so far by one node: its postmaster with the children it reaped,
    plus every live child (backends, Citus's maintenance daemon)."""
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        if int(entry) == pid:
            total += utime + stime + cutime + cstime
        elif ppid == pid:
            total += utime + stime
    return total / _CLK


def cpu_snapshot(cluster: CitusCluster) -> list[float]:
    return [node_cpu(n.data_dir) for n in cluster.nodes]


def statement_times(log_file: Path, start: int) -> dict[str, float]:
    """Seconds per kind of statement the coordinator logged after byte offset start."""
    with open(log_file, "rb") as f:
        f.seek(start)
        text = f.read().decode("utf-8", "replace")
    times: dict[str, float] = {}
    for m in _DURATION.finditer(text):
        ms, statement = float(m.group(1)), m.group(2).lstrip()
        head = statement.split(None, 1)[0].upper() if statement else "?"
        if statement.startswith("WITH d AS MATERIALIZED"):
            kind = "upsert (INSERT ... ON CONFLICT)"
        elif statement.startswith("WITH w AS (INSERT"):
            kind = "pushed-down upsert"
        elif head == "WITH" and " INSERT " in statement[:3000]:
            kind = "merge (WITH ... INSERT)"
        elif head in ("MERGE", "INSERT", "COPY", "ANALYZE", "LOCK", "UPDATE"):
            kind = head
        else:
            kind = "other"
        times[kind] = times.get(kind, 0.0) + ms / 1000
    return {k: round(v, 3) for k, v in sorted(times.items(), key=lambda kv: -kv[1])}


def measure(cluster, label, method, path, dsn) -> dict:
    log_file = cluster.coordinator.log_file
    offset = log_file.stat().st_size
    before = cpu_snapshot(cluster)
    outcome = method.run(path, dsn)
    # The client's backend (and the worker connections it held) end just after the
    # client does; the postmaster counts their CPU once it has reaped them.
    time.sleep(0.5)
    after = cpu_snapshot(cluster)
    cpu = [round(b - a, 2) for a, b in zip(before, after, strict=True)]
    return {
        "label": label,
        "seconds": round(outcome.finished.seconds, 3),
        "client_cpu": round(outcome.finished.cpu_seconds, 2),
        "client_rss_mib": round(outcome.finished.rss_kib / 1024, 1),
        "coordinator_cpu": cpu[0],
        "workers_cpu": cpu[1:],
        "counts": {k: outcome.counts.get(k) for k in ("inserted", "updated", "unchanged")},
        "statements": statement_times(log_file, offset),
    }


def reset(cluster: CitusCluster, dsn: str, local_dsn: str, kind: str, shards: int) -> None:
    with cluster.connect(autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS public.products, plain.products CASCADE")
        c.execute("DROP TABLE IF EXISTS public.csvload_runs, plain.csvload_runs CASCADE")
    if kind == "local":
        bench.run_measured([str(bench.CSVLOAD), "init", "--dsn", local_dsn], "csvload init")
    else:
        bench.run_measured(
            [str(bench.CSVLOAD), "init", "--distributed", "--shards", str(shards), "--dsn", dsn],
            "csvload init --distributed",
        )
    with cluster.connect(autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
        c.execute("CHECKPOINT")


def check(cluster, dsn: str, expected: dict, label: str) -> None:
    with psycopg.connect(dsn) as conn:
        bench.verify(conn, bench.Expectation(expected, (), 0, 0), label)


def one_pair(cluster, workdir, rows, method_name, dsn, local_dsn, shards, checks=True):
    fresh, reimport = bench.data_files(rows)
    kind = "local" if method_name == "csvload-local" else "distributed"
    method = (
        bench.Floor(workdir, FLOOR_SCRIPT)
        if method_name == "floor-distributed"
        else bench.Csvload()
    )
    target = local_dsn if kind == "local" else dsn
    reset(cluster, dsn, local_dsn, kind, shards)
    out = []
    content: dict[str, bytes] = {}
    for phase, path in (("fresh", fresh), ("reimport", reimport)):
        m = measure(cluster, f"{method_name} {phase} {rows}", method, path, target)
        m.update(method=method_name, phase=phase, rows=rows)
        out.append(m)
        bench.log(f"  {method_name:20} {phase:8} {rows:>9,}: {m['seconds']:.2f} s"
                  f" (coordinator {m['coordinator_cpu']} s CPU, workers {m['workers_cpu']},"
                  f" client {m['client_cpu']})")
        if checks:
            bench.expected_content(path, content)
            check(cluster, target, content, m["label"])
    return out


def summarize(measurements: list[dict]) -> list[dict]:
    cells: dict[tuple, list[dict]] = {}
    for m in measurements:
        cells.setdefault((m["rows"], m["phase"], m["method"]), []).append(m)
    rows = []
    for (n, phase, method), ms in sorted(cells.items()):
        med = statistics.median(m["seconds"] for m in ms)
        rows.append({
            "rows": n, "phase": phase, "method": method, "runs": len(ms),
            "median_s": round(med, 3),
            "coordinator_cpu": round(statistics.median(m["coordinator_cpu"] for m in ms), 2),
            "workers_cpu": round(statistics.median(sum(m["workers_cpu"]) for m in ms), 2),
            "client_cpu": round(statistics.median(m["client_cpu"] for m in ms), 2),
            "client_rss_mib": max(m["client_rss_mib"] for m in ms),
            "statements": ms[len(ms) // 2]["statements"],
        })
    return rows


def ratios(summary: list[dict]) -> list[str]:
    by = {(r["rows"], r["phase"], r["method"]): r["median_s"] for r in summary}
    lines = []
    for (n, phase, method), s in sorted(by.items()):
        if method != "csvload-distributed":
            continue
        floor = by.get((n, phase, "floor-distributed"))
        local = by.get((n, phase, "csvload-local"))
        if floor:
            lines.append(f"{n:,} {phase}: csvload {s:.2f} s / floor {floor:.2f} s ="
                         f" {s / floor:.2f}x the floor's time")
        if local:
            lines.append(f"{n:,} {phase}: distributed {s:.2f} s / plain local {local:.2f} s ="
                         f" {s / local:.2f}x the plain server's time")
    return lines


def render(result: dict) -> str:
    lines = [
        "# csvload on a local Citus cluster",
        "",
        f"{result['when']}, Citus {result['citus']}, PostgreSQL {result['server']},"
        f" {result['cores']} cores shared by the coordinator, 2 workers and the client;"
        f" {result['shards']} shards; {result['runs']} runs per cell (medians).",
        "",
        "| rows | phase | method | median s | coordinator CPU s | workers CPU s |"
        " client CPU s | client peak RSS MiB | coordinator statements (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        stmts = ", ".join(f"{k} {v}" for k, v in list(r["statements"].items())[:4])
        lines.append(
            f"| {r['rows']:,} | {r['phase']} | {r['method']} | {r['median_s']:.2f} |"
            f" {r['coordinator_cpu']} | {r['workers_cpu']} | {r['client_cpu']} |"
            f" {r['client_rss_mib']} | {stmts} |"
        )
    lines += ["", "## Ratios", ""] + [f"- {line}" for line in result["ratios"]]
    if result.get("scale"):
        lines += ["", "## Scale (csvload-distributed, one run each)", "",
                  "| rows | phase | s | client peak RSS MiB | coordinator CPU s | workers CPU s |",
                  "|---|---|---|---|---|---|"]
        for m in result["scale"]:
            lines.append(f"| {m['rows']:,} | {m['phase']} | {m['seconds']:.2f} |"
                         f" {m['client_rss_mib']} | {m['coordinator_cpu']} |"
                         f" {sum(m['workers_cpu']):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    reason = unavailable_reason()
    if reason:
        bench.log(f"citus bench skipped: {reason}")
        return 0
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", "500000").split(",") if s]
    scale = [int(s) for s in os.environ.get("BENCH_SCALE", "").split(",") if s]
    shards = int(os.environ.get("BENCH_SHARDS", "32"))
    methods = ("csvload-distributed", "floor-distributed", "csvload-local")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "csvload-citus-bench"
    workdir.mkdir(exist_ok=True)
    measurements: list[dict] = []
    scaled: list[dict] = []
    with CitusCluster() as cluster:
        dsn = cluster.coordinator_dsn
        local_dsn = f"{dsn} options='-c search_path={LOCAL_SCHEMA}'"
        with cluster.connect(autocommit=True) as c:
            c.execute(f"CREATE SCHEMA IF NOT EXISTS {LOCAL_SCHEMA}")
            c.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
            c.execute("SELECT pg_reload_conf()")
            citus_version = c.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
            ).fetchone()[0]
            server = c.execute("SHOW server_version").fetchone()[0]
        bench.log(f"cluster up in {cluster.start_seconds:.1f} s: {dsn}")
        for rows in sizes:
            bench.data_files(rows)
            for run in range(runs):
                order = methods[run % len(methods):] + methods[: run % len(methods)]
                for name in order:
                    measurements += one_pair(cluster, workdir, rows, name, dsn, local_dsn, shards)
        for rows in scale:
            bench.data_files(rows)
            scaled += one_pair(cluster, workdir, rows, "csvload-distributed", dsn, local_dsn,
                               shards, checks=rows <= 2_000_000)
    summary = summarize(measurements)
    result = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "citus": citus_version,
        "server": server,
        "cores": os.cpu_count(),
        "shards": shards,
        "runs": runs,
        "summary": summary,
        "ratios": ratios(summary),
        "measurements": measurements,
        "scale": scaled,
    }
    # A scale-only run (BENCH_SIZES empty) keeps the 500k results where they are.
    stem = "citus_results" if sizes else "citus_scale_results"
    (HERE / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    text = render(result)
    (HERE / f"{stem}.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
