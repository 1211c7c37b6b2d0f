"""Benchmark: csvload against a hand-written floor and the old system's batched import.

    .venv/bin/python tests/bench/bench.py

Environment:
    DATABASE_URL   server to use; the products table in it is dropped and recreated.
                   Unset: a throwaway local cluster is started in a temp dir and removed.
    BENCH_RUNS     runs per method, size and phase; medians are reported (default 5).
    BENCH_LARGE=1  add the 2,000,000-row files (slow: several minutes per method).
    BENCH_SIZES    comma-separated row counts replacing the default 10000,100000,500000.
    BENCH_METHODS  comma-separated subset of csvload,floor,seed,copy (default: all).
    BENCH_PHASES   comma-separated subset of fresh,unchanged,onepct,reimport (default: all;
                   each phase imports into the table the phases before it left).
    BENCH_EXTRAS=0 skip the progress-display and unix-socket runs.
    BENCH_EXPLAIN=0 skip the one extra csvload run per size whose write statement is
                   EXPLAIN ANALYZEd (auto_explain) to split it into dedupe, join, write.
    BENCH_UNIX_URL with DATABASE_URL: the same server reached over its unix socket, for the
                   unix-socket runs (the throwaway cluster provides its own).

Each run of a method imports a file into a freshly created, empty products table
("fresh"), then the same file again ("unchanged": the nightly feed in which nothing
changed), a variant with 1% of the names changed ("onepct"), and the re-import variant
("reimport": same SKUs, about half the names changed), each into the table the phase
before left.  The method "copy" is the physical floor: psql's copy of the same file into
an UNLOGGED table without indexes (no dedupe, no merge), for every phase.  Methods run in
a rotating order within each run so that drifting noise (page cache, autovacuum, a
neighbour's job) is shared among them. After every import the table is checked against the expected
last-occurrence-wins content computed independently in Python; a mismatch aborts.

Time is the wall clock of the whole client process, start to exit. Peak RSS is the
client process's own ru_maxrss, read with os.wait4 when it exits (the server's memory is
not included). Results go to tests/bench/results.md and results.json; generated data is
cached in tests/bench/data/.
"""

from __future__ import annotations

import compileall
import contextlib
import csv
import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import pty
import pwd
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DATA = HERE / "data"
PYTHON = ROOT / ".venv" / "bin" / "python"
CSVLOAD = ROOT / ".venv" / "bin" / "csvload"
SEED_STYLE = HERE / "seed_style.py"

SEED = 1
DUPLICATES = 0.02
RENAME_FRACTION = 0.5
ONE_PERCENT = 0.01
DEFAULT_SIZES = (10_000, 100_000, 500_000)
LARGE_SIZE = 2_000_000
SCALE_SIZE = 10_000_000  # BENCH_SIZES=2000000,10000000: the scale run (issue 25's 5.5x)
PHASES = ("fresh", "unchanged", "onepct", "reimport")

# What `csvload init` creates; used until (and unless) the CLI can create it.
PRODUCTS_DDL = (
    """CREATE TABLE IF NOT EXISTS products (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sku text NOT NULL, name text NOT NULL, description text,
        active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE UNIQUE INDEX IF NOT EXISTS products_lower_sku_key ON products (lower(sku))",
    "CREATE INDEX IF NOT EXISTS products_active_idx ON products (active)",
    "CREATE INDEX IF NOT EXISTS products_created_at_idx ON products (created_at)",
    "CREATE INDEX IF NOT EXISTS products_active_created_at_idx ON products (active, created_at)",
)

# The floor's staging, shared by the floors of the other benches (Citus).
FLOOR_STAGE = """\
BEGIN;
CREATE TEMP TABLE stage (
    ord bigint GENERATED ALWAYS AS IDENTITY,
    sku text, name text, description text
) ON COMMIT DROP;
\\copy stage (name, sku, description) FROM '{path}' WITH (FORMAT csv, HEADER true)
"""
FLOOR_SCRIPT = FLOOR_STAGE + """\
INSERT INTO products (sku, name, description)
SELECT DISTINCT ON (lower(sku)) sku, name, description
FROM stage
ORDER BY lower(sku), ord DESC
ON CONFLICT (lower(sku)) DO UPDATE
SET name = excluded.name, description = excluded.description, updated_at = now()
WHERE (products.name, products.description)
      IS DISTINCT FROM (excluded.name, excluded.description);
COMMIT;
"""
# BEGIN, CREATE TEMP TABLE, COPY, INSERT, COMMIT.
FLOOR_STATEMENTS = 5

# The physical floor: reading the file and storing it, nothing else.  {columns}: one text
# column per column of the file's header.
RAW_COPY_SCRIPT = """\
DROP TABLE IF EXISTS bench_raw_copy;
CREATE UNLOGGED TABLE bench_raw_copy ({columns});
\\copy bench_raw_copy FROM '{path}' WITH (FORMAT csv, HEADER true)
"""


class BenchError(Exception):
    """The benchmark cannot go on: a method failed or left a wrong table."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


@dataclass
class Finished:
    seconds: float
    rss_kib: int
    stdout: str
    stderr: str
    cpu_seconds: float  # the client's own user + system CPU time


# GNU time reports ru_maxrss of the command it forks itself. We cannot read it with
# os.wait4 on our own child: Linux carries the pre-exec hiwater RSS of the forking
# process into the child's maxrss, so every child would "peak" at least at this
# process's size (the expected-content dicts make that 100+ MiB).
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")
# Without GNU time a small Python wrapper does the same; its own ~10 MiB then sets a
# lower bound for every reading.
_WRAPPER = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
open(sys.argv[1], "w").write(f"{usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def _terminal() -> tuple[int, int, threading.Thread, list[bytes]]:
    """A pseudo-terminal of 120x40 for a child's stderr: (master, slave, the thread that
    drains the master, what it read)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    read: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child and we have closed the slave
                return
            if not data:
                return
            read.append(data)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return master, slave, thread, read


def run_measured(argv: Sequence[str], label: str, *, tty: bool = False) -> Finished:
    """Run argv to completion; time it (wall clock) and read its peak RSS and CPU time.
    With tty, its stderr is a pseudo-terminal, as for a person at a terminal."""
    env = dict(os.environ, PGCLIENTENCODING="UTF8")
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r") as rss,
    ):
        if GNU_TIME:
            wrapped = [GNU_TIME, "-f", "%M %U %S", "-o", rss.name, *argv]
        else:
            wrapped = [sys.executable, "-c", _WRAPPER, rss.name, *argv]
        terminal = _terminal() if tty else None
        started = time.perf_counter()
        proc = subprocess.run(
            wrapped,
            stdout=out,
            stderr=terminal[1] if terminal else err,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        if terminal:
            master, slave, thread, read = terminal
            os.close(slave)
            thread.join()
            os.close(master)
            stderr = b"".join(read).decode("utf-8", "replace")
        if proc.returncode != 0:
            # argv carries the DSN, which may hold a password: name the method only.
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            raise BenchError(f"{label} exited with {proc.returncode}:\n{tail}")
        # GNU time may prefix a "Command exited with non-zero status" line; take the last.
        rss_kib, user, system = rss.read().strip().splitlines()[-1].split()
    return Finished(seconds, int(rss_kib), stdout, stderr, float(user) + float(system))


def _json_line(stdout: str, label: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as e:
        raise BenchError(f"{label} printed no JSON summary on stdout: {stdout[-300:]!r}") from e


# --------------------------------------------------------------------------- methods


@dataclass
class Outcome:
    finished: Finished
    statements: int | None
    counts: dict


class Floor:
    name = "floor"
    description = (
        "psql, one transaction: \\copy into a TEMP staging table with an ordinal column, "
        "then one INSERT ... SELECT DISTINCT ON (lower(sku)) ... ON CONFLICT DO UPDATE "
        "WHERE IS DISTINCT FROM."
    )

    def __init__(self, workdir: Path, script: str = FLOOR_SCRIPT) -> None:
        self.workdir = workdir
        self.script = script

    def run(self, path: Path, dsn: str, *, quiet: bool = True) -> Outcome:
        if "'" in str(path):
            raise BenchError(f"cannot quote {path} for \\copy")
        script = self.workdir / "floor.sql"
        # {now}: the client's clock as a timestamptz literal, for a script that sets
        # timestamps itself; a constant costs the server nothing per row.
        now = dt.datetime.now(dt.UTC).isoformat()
        script.write_text(self.script.format(path=path, now=now), encoding="utf-8")
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)]
        return Outcome(run_measured(argv, "floor (psql)"), FLOOR_STATEMENTS, {})


class RawCopy:
    """psql's \\copy of the file into an UNLOGGED table without indexes: what reading and
    storing the file costs, the floor under every loader.  It leaves products alone."""

    name = "copy"
    checks = False
    description = (
        "the physical floor: psql `\\copy` of the file into an UNLOGGED table of text "
        "columns without indexes (dropped and created again first); no dedupe, no merge."
    )

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def run(self, path: Path, dsn: str, *, quiet: bool = True) -> Outcome:
        with open(path, encoding="utf-8", newline="") as f:
            header = next(csv.reader(f))
        columns = ", ".join(f"c{i + 1} text" for i in range(len(header)))
        script = self.workdir / "raw_copy.sql"
        script.write_text(RAW_COPY_SCRIPT.format(path=path, columns=columns), encoding="utf-8")
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)]
        return Outcome(run_measured(argv, "copy (psql)"), 3, {})


class SeedStyle:
    name = "seed"
    description = (
        "the old system's batches (tests/bench/seed_style.py): csv.DictReader, 5,000 rows per "
        "batch, one SELECT per batch, multi-row INSERT/UPDATE ... VALUES of up to 1,000 rows, "
        "one transaction; every existing SKU is rewritten, changed or not."
    )

    def run(self, path: Path, dsn: str, *, quiet: bool = True) -> Outcome:
        argv = [str(PYTHON), str(SEED_STYLE), str(path), "--dsn", dsn]
        finished = run_measured(argv, "seed-style")
        counts = _json_line(finished.stdout, "seed-style")
        return Outcome(finished, counts.get("statements"), counts)


class Csvload:
    name = "csvload"
    description = "`csvload import FILE --dsn DSN --json --quiet` as a subprocess."

    def __init__(self, options: Sequence[str] = (), source: str | None = None) -> None:
        self.options = tuple(options)  # more import options: --table, --default ...
        # Another csvload's src folder (BENCH_BEFORE): run as `python -m csvload` from it.
        self.source = source

    def run(self, path: Path, dsn: str, *, quiet: bool = True, tty: bool = False) -> Outcome:
        cli = [str(CSVLOAD)]
        if self.source is not None:
            cli = ["env", f"PYTHONPATH={self.source}", str(PYTHON), "-m", "csvload"]
        argv = [*cli, "import", str(path), "--dsn", dsn, "--json", *self.options]
        if quiet:
            argv.append("--quiet")
        finished = run_measured(argv, "csvload import", tty=tty)
        # A failed import exits non-zero (run_measured raises); the table check and the
        # count check below judge the rest.
        counts = _json_line(finished.stdout, "csvload import")
        return Outcome(finished, counts.get("statements"), counts)


def before_method(options: Sequence[str] = ()) -> dict[str, Csvload]:
    """BENCH_BEFORE=/path/to/an/older/src: that csvload too, as method "before", to compare
    two versions in one run (`git archive COMMIT src | tar -x -C /tmp/before`)."""
    source = os.environ.get("BENCH_BEFORE")
    if not source:
        return {}
    before = Csvload(options, source=source)
    before.name = "before"
    return {"before": before}


def csvload_available() -> tuple[bool, str]:
    """Whether the CLI has both `init` and `import`, and if not, why."""
    if not CSVLOAD.exists():
        return False, f"{CSVLOAD} does not exist"
    try:
        helps = [
            subprocess.run(
                [str(CSVLOAD), *cmd, "--help"], capture_output=True, text=True, timeout=60
            )
            for cmd in ([], ["init"], ["import"])
        ]
    except subprocess.TimeoutExpired:
        return False, "csvload --help timed out"
    for result in helps:
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return False, f"`{' '.join(result.args[1:])}` failed: {last}"
    options = helps[2].stdout
    missing = [opt for opt in ("--dsn", "--json", "--quiet") if opt not in options]
    if missing:
        return False, f"csvload import has no {', '.join(missing)} yet"
    return True, "available"


# --------------------------------------------------------------------------- data


def phase_files(rows: int) -> dict[str, Path]:
    """bench.py's phases (BENCH_PHASES narrows them) and the file each imports, generated
    when missing (only those the phases need)."""
    wanted = [p for p in os.environ.get("BENCH_PHASES", ",".join(PHASES)).split(",") if p]
    unknown = set(wanted) - set(PHASES)
    if unknown or not wanted or wanted[0] != "fresh":
        raise BenchError(f"BENCH_PHASES must start with fresh and name only {PHASES}")
    files = {
        "fresh": ("", 0.0), "unchanged": ("", 0.0), "onepct": ("-onepct", ONE_PERCENT),
        "reimport": ("-reimport", RENAME_FRACTION),
    }  # fmt: skip
    return {p: generated(rows, *files[p]) for p in PHASES if p in wanted}


def data_files(rows: int) -> tuple[Path, Path]:
    """The (fresh, reimport) pair for `rows`, generated into the cache if missing."""
    return generated(rows, "", 0.0), generated(rows, "-reimport", RENAME_FRACTION)


def generated(rows: int, suffix: str, rename: float) -> Path:
    """The products file of `rows` with `rename` of its names changed, generated into the
    cache if missing."""
    # Imported here so `import bench` works before the package is installed.
    from csvload.generate import generate_file

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"products-{rows}-s{SEED}-d{DUPLICATES}{suffix}.csv"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        generate_file(partial, rows, seed=SEED, duplicates=DUPLICATES, rename_fraction=rename)
        partial.rename(path)
        log(f"generated {path.name} in {time.perf_counter() - started:.1f}s")
    return path


@dataclass(frozen=True)
class TableShape:
    """What verify() compares: `query` yields (key, *values) per row of `table`, the
    values as the file spells them; `columns` are those values' file columns, `key` the
    key's, and `fold` turns a file's key into the query's (str.lower for lower(sku))."""

    table: str
    query: str
    key: str
    fold: Callable[[str], str]
    columns: tuple[str, ...]


PRODUCTS = TableShape(
    "products", "SELECT lower(sku), name, description FROM products", "sku", str.lower,
    ("name", "description"),
)


def _digest(*values: str | None) -> bytes:
    # NULL and '' must not compare equal: the generator never writes an empty description.
    text = "\x1f".join("\x00" if v is None else v for v in values)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def expected_content(
    path: Path, into: dict[str, bytes] | None = None, shape: TableShape = PRODUCTS
) -> dict[str, bytes]:
    """The folded key -> digest of the last occurrence's values, streaming."""
    content = {} if into is None else into
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        i_key = header.index(shape.key)
        wanted = [header.index(c) for c in shape.columns]
        fold = shape.fold
        for record in reader:
            content[fold(record[i_key])] = _digest(*(record[i] for i in wanted))
    return content


def _last_values(
    paths: Sequence[Path], keys: set[str], shape: TableShape
) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for path in paths:
        with open(path, encoding="utf-8", newline="") as f:
            for record in csv.DictReader(f):
                if shape.fold(record[shape.key]) in keys:
                    found[shape.fold(record[shape.key])] = tuple(record[c] for c in shape.columns)
    return found


@dataclass
class Expectation:
    content: dict[str, bytes]
    sources: tuple[Path, ...]  # to show expected values when a check fails
    inserted: int
    updated: int


# --------------------------------------------------------------------------- database


def reset_table(conn: psycopg.Connection, dsn: str, use_csvload_init: bool) -> None:
    conn.execute("DROP TABLE IF EXISTS products CASCADE")
    if use_csvload_init:
        run_measured([str(CSVLOAD), "init", "--dsn", dsn], "csvload init")
    else:
        for statement in PRODUCTS_DDL:
            conn.execute(statement)
    settle(conn)


def settle(conn: psycopg.Connection) -> None:
    """Leave no garbage, stale statistics or dirty buffers for the next run to pay for."""
    conn.execute("VACUUM ANALYZE")
    # Without superuser or pg_checkpoint the runs still alternate, only noisier.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        conn.execute("CHECKPOINT")


def verify(
    conn: psycopg.Connection, expected: Expectation, label: str, shape: TableShape = PRODUCTS
) -> None:
    """Fail unless the table holds exactly one row per key with the expected values."""
    remaining = dict(expected.content)
    wrong: dict[str, tuple[str | None, ...]] = {}
    extra: list[str] = []
    duplicated: list[str] = []
    seen: set[str] = set()
    with conn.cursor() as cur:
        for key, *values in cur.stream(shape.query):
            if key in seen:
                duplicated.append(key)
                continue
            seen.add(key)
            want = remaining.pop(key, None)
            if want is None:
                extra.append(key)
            elif want != _digest(*values):
                wrong[key] = tuple(values)
    if not (remaining or wrong or extra or duplicated):
        return
    lines = [
        f"{label}: {shape.table} table is wrong: {len(wrong)} rows with other values, "
        f"{len(remaining)} missing, {len(extra)} unexpected, {len(duplicated)} duplicated"
    ]
    sample = dict(list(wrong.items())[:3])
    want = _last_values(expected.sources, set(sample), shape)
    for key, got in sample.items():
        lines.append(f"  {key}: table has {got!r}, file's last occurrence {want.get(key)!r}")
    lines.extend(f"  missing {key}" for key in list(remaining)[:3])
    lines.extend(f"  unexpected {key}" for key in extra[:3])
    lines.extend(f"  duplicated {key}" for key in duplicated[:3])
    raise BenchError("\n".join(lines))


# The throwaway server's log, where auto_explain writes (None with DATABASE_URL).
SERVER_LOG: Path | None = None


@contextlib.contextmanager
def local_server() -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL cluster on 127.0.0.1; yields its DSN over TCP and over its
    unix socket, and removes it after."""
    tmp = Path(tempfile.mkdtemp(prefix="csvload-bench-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # The server binaries refuse to run as root.
        user = "postgres"
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            user, entry = "nobody", pwd.getpwnam("nobody")
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", user, "--"]
    datadir = tmp / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        subprocess.run(
            [
                *as_user,
                "initdb",
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_user,
                "pg_ctl",
                "-D",
                str(datadir),
                "-l",
                str(tmp / "server.log"),
                "-w",
                "-o",
                f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BenchError(f"cannot start a local server: {e.stderr.decode()[-500:]}") from e
    log(f"started a throwaway PostgreSQL on 127.0.0.1:{port} in {tmp}")
    global SERVER_LOG
    SERVER_LOG = tmp / "server.log"
    try:
        yield (
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            f"postgresql://postgres@/postgres?host={tmp}&port={port}",
        )
    finally:
        SERVER_LOG = None
        subprocess.run(
            [*as_user, "pg_ctl", "-D", str(datadir), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- the runs


@dataclass
class Measurement:
    method: str
    rows: int
    phase: str
    run: int
    seconds: float
    rss_kib: int
    statements: int | None
    counts: dict = field(default_factory=dict)
    progress: str = ""  # for progress-check runs: quiet, lines or bar
    transport: str = ""  # "unix" for the unix-socket runs; "" for the DSN as given
    cpu_s: float | None = None  # the client process's user + system CPU time

    @classmethod
    def of(
        cls, method: str, rows: int, phase: str, run: int, outcome: Outcome, **extra
    ) -> Measurement:
        finished = outcome.finished
        return cls(
            method,
            rows,
            phase,
            run,
            finished.seconds,
            finished.rss_kib,
            outcome.statements,
            outcome.counts,
            cpu_s=finished.cpu_seconds,
            **extra,
        )


@dataclass(frozen=True)
class Config:
    dsn: str
    runs: int
    sizes: tuple[int, ...]
    methods: tuple[str, ...]
    large: bool
    unix_dsn: str | None = None


def config_from_env(dsn: str, unix_dsn: str | None = None) -> Config:
    large = os.environ.get("BENCH_LARGE", "") not in ("", "0")
    sizes_text = os.environ.get("BENCH_SIZES", "")
    sizes = tuple(int(s) for s in sizes_text.split(",") if s) or DEFAULT_SIZES
    if large and LARGE_SIZE not in sizes:
        sizes += (LARGE_SIZE,)
    methods = tuple(
        m for m in os.environ.get("BENCH_METHODS", "floor,seed,csvload,copy").split(",") if m
    )
    if os.environ.get("BENCH_BEFORE") and "before" not in methods:
        methods += ("before",)
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    if runs < 1:
        raise BenchError("BENCH_RUNS must be at least 1")
    return Config(dsn, runs, sizes, methods, large, unix_dsn)


def _check_counts(m: Measurement, expected: Expectation) -> str | None:
    """A note when csvload's own counts disagree with what the file implies."""
    distinct = len(expected.content)
    want = {
        "rows_read": m.rows,
        "inserted": expected.inserted,
        "updated": expected.updated,
        "unchanged": distinct - expected.inserted - expected.updated,
        "duplicates": m.rows - distinct,
        "rejected": 0,
    }
    bad = {k: (m.counts[k], v) for k, v in want.items() if k in m.counts and m.counts[k] != v}
    if not bad:
        return None
    return f"{m.method} {m.rows} {m.phase}: counts (reported, expected) {bad}"


def run_bench(cfg: Config, workdir: Path) -> dict:
    ok, why = csvload_available()
    wanted = {
        "floor": Floor(workdir), "seed": SeedStyle(), "csvload": Csvload(),
        "copy": RawCopy(workdir),
    }  # fmt: skip
    wanted.update(before_method())
    unknown = set(cfg.methods) - set(wanted)
    if unknown:
        raise BenchError(
            f"unknown BENCH_METHODS {sorted(unknown)} (use csvload,floor,seed,copy)"
        )
    methods = [wanted[m] for m in cfg.methods if m != "csvload" or ok]
    notes: list[str] = []
    if "csvload" in cfg.methods and not ok:
        notes.append(f"csvload skipped: {why}")
        log(f"csvload skipped: {why}")
    measurements: list[Measurement] = []

    with psycopg.connect(cfg.dsn, autocommit=True) as conn:
        machine = machine_info(conn)
        for rows in cfg.sizes:
            files, expect = expectations(rows, phases=phase_files(rows))
            measurements += rotated_runs(
                conn, cfg, methods, rows, files, expect,
                reset=lambda: reset_table(conn, cfg.dsn, ok), notes=notes,
            )
            if ok and "csvload" in cfg.methods and explaining():
                measurements += explained_runs(
                    conn, cfg, rows, files, expect, Csvload(),
                    lambda: reset_table(conn, cfg.dsn, ok),
                )  # fmt: skip
            del expect

        extras = os.environ.get("BENCH_EXTRAS", "1") != "0"
        if extras and ok and "csvload" in cfg.methods:
            measurements += progress_runs(cfg, conn)
        if extras and ok and {"csvload", "floor"} <= set(cfg.methods):
            if cfg.unix_dsn:
                measurements += unix_socket_runs(cfg, conn, wanted)
            else:
                notes.append("unix-socket runs skipped: set BENCH_UNIX_URL with DATABASE_URL")

    return {
        "machine": machine,
        "config": asdict(cfg)
        | {"dsn": "(not recorded)", "unix_dsn": "(not recorded)" if cfg.unix_dsn else None},
        "notes": notes,
        "measurements": [asdict(m) for m in measurements],
    }


def rotated_runs(
    conn: psycopg.Connection,
    cfg: Config,
    methods: Sequence,
    rows: int,
    files: dict[str, Path],
    expect: dict[str, Expectation],
    *,
    reset: Callable[[], None],
    notes: list[str],
    check: Callable[[psycopg.Connection, Expectation, str], None] = verify,
) -> list[Measurement]:
    """cfg.runs runs of each method on one size: a fresh import into the table `reset`
    empties, then the re-import; each checked with `check`, csvload's counts too."""
    out = []
    for run in range(cfg.runs):
        # Rotate the order so no method always runs first or last.
        order = list(methods[run % len(methods) :]) + list(methods[: run % len(methods)])
        for method in order:
            reset()
            for phase in files:
                outcome = method.run(files[phase], cfg.dsn)
                label = f"{method.name} {rows} {phase} run {run + 1}"
                if getattr(method, "checks", True):
                    check(conn, expect[phase], label)
                m = Measurement.of(method.name, rows, phase, run + 1, outcome)
                out.append(m)
                note = None
                if method.name in ("csvload", "before"):
                    note = _check_counts(m, expect[phase])
                if note:
                    notes.append(note)
                    log(f"WARNING {note}")
                log(f"[{label}] {m.seconds:.2f}s, {m.rss_kib / 1024:.0f} MiB")
                settle(conn)
    return out


def expectations(
    rows: int,
    pair: tuple[Path, Path] | None = None,
    shape: TableShape = PRODUCTS,
    phases: dict[str, Path] | None = None,
) -> tuple[dict[str, Path], dict[str, Expectation]]:
    """The file of each phase, in order (`phases`; else fresh and re-import: `pair`, or
    data_files(rows)), and what the table must hold after each: every phase imports into
    the table the phase before left."""
    if phases is None:
        fresh_file, reimport_file = pair or data_files(rows)
        phases = {"fresh": fresh_file, "reimport": reimport_file}
    expect: dict[str, Expectation] = {}
    content: dict[str, bytes] = {}
    sources: tuple[Path, ...] = ()
    for phase, path in phases.items():
        before = content
        content = expected_content(path, into=dict(before), shape=shape)
        sources += (path,)
        inserted = sum(1 for k in content if k not in before)
        changed = sum(1 for k, v in before.items() if content[k] != v)
        expect[phase] = Expectation(content, sources, inserted, changed)
    return dict(phases), expect


def unix_socket_runs(cfg: Config, conn: psycopg.Connection, wanted: dict) -> list[Measurement]:
    """csvload and the floor, fresh and re-import, over the server's unix socket (the
    transport of the managed local server and of a DSN without a host), on the largest
    default size, at least 3 runs in rotating order."""
    rows = max((s for s in cfg.sizes if s != LARGE_SIZE), default=LARGE_SIZE)
    files, expect = expectations(rows)
    methods = [wanted["csvload"], wanted["floor"]]
    out = []
    for run in range(max(cfg.runs, 3)):
        for method in methods[run % 2 :] + methods[: run % 2]:
            reset_table(conn, cfg.dsn, True)
            for phase in files:
                outcome = method.run(files[phase], cfg.unix_dsn)
                label = f"{method.name} {rows} {phase} over the unix socket, run {run + 1}"
                verify(conn, expect[phase], label)
                out.append(
                    Measurement.of(method.name, rows, phase, run + 1, outcome, transport="unix")
                )
                log(f"[{label}] {outcome.finished.seconds:.2f}s")
                settle(conn)
    return out


# auto_explain for csvload's sessions only (PGOPTIONS; needs a superuser, as the
# throwaway server's is): every statement of 200 ms or more logs its plan with actual times.
EXPLAIN_OPTIONS = (
    "-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=200"
    " -c auto_explain.log_analyze=on -c auto_explain.log_format=json"
    " -c auto_explain.log_triggers=on"
)


def explaining() -> bool:
    return SERVER_LOG is not None and os.environ.get("BENCH_EXPLAIN", "1") != "0"


def explained_runs(
    conn: psycopg.Connection,
    cfg: Config,
    rows: int,
    files: dict[str, Path],
    expect: dict[str, Expectation],
    method: Csvload,
    reset: Callable[[], None],
    check: Callable[[psycopg.Connection, Expectation, str], None] | None = None,
) -> list[Measurement]:
    """One more csvload run of every phase, its write statement EXPLAIN ANALYZEd by
    auto_explain, to split the write into dedupe, join and write.  Not a timing: the
    instrumentation slows the statement; only the proportions are used (split_write)."""
    assert SERVER_LOG is not None
    out = []
    reset()
    for phase, path in files.items():
        offset = SERVER_LOG.stat().st_size
        previous = os.environ.get("PGOPTIONS")
        os.environ["PGOPTIONS"] = EXPLAIN_OPTIONS
        try:
            outcome = method.run(path, cfg.dsn)
        finally:
            if previous is None:
                del os.environ["PGOPTIONS"]
            else:
                os.environ["PGOPTIONS"] = previous
        label = f"{method.name} {rows} {phase}, explained"
        (check or verify)(conn, expect[phase], label)
        with open(SERVER_LOG, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            plan = write_plan(f.read())
        m = Measurement.of(method.name, rows, "explained", 1, outcome)
        m.counts = {"phase": phase, "split": plan_split(plan) if plan else None}
        out.append(m)
        log(f"[{label}] {m.seconds:.2f}s, write split {m.counts['split']}")
        settle(conn)
    return out


def write_plan(log_text: str) -> dict | None:
    """The longest-running ModifyTable plan auto_explain logged in `log_text`: the import's
    write statement (INSERT, MERGE or the WITH statement)."""
    plans = []
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if not line.endswith("plan:"):
            continue
        body = []
        for more in lines[i + 1 :]:
            if not more.startswith("\t"):
                break
            body.append(more[1:])
        try:
            plan = json.loads("\n".join(body))
        except json.JSONDecodeError:
            continue
        if _modifies(plan["Plan"]):
            plans.append(plan)
    return max(plans, key=lambda p: p["Plan"]["Actual Total Time"], default=None)


def _modifies(node: dict) -> bool:
    return node["Node Type"] == "ModifyTable" or any(
        _modifies(child) for child in node.get("Plans", ())
    )


def _first(node: dict, types: tuple[str, ...]) -> dict | None:
    if node["Node Type"] in types:
        return node
    for child in node.get("Plans", ()):
        found = _first(child, types)
        if found is not None:
            return found
    return None


def plan_split(plan: dict) -> dict[str, float]:
    """The write statement's milliseconds by step: dedupe (the stage's scan, the sort and
    DISTINCT ON's Unique, the casts), join (with the table: hashing or probing it), write
    (what the ModifyTable adds: comparing, the MERGE's conditions, writing rows and index
    entries) and triggers (a foreign key's checks)."""
    root = plan["Plan"]
    dedupe_node = _first(root, ("Unique",))
    join_node = _first(root, ("Hash Join", "Merge Join", "Nested Loop"))
    dedupe = dedupe_node["Actual Total Time"] if dedupe_node else 0.0
    join = join_node["Actual Total Time"] - dedupe if join_node else 0.0
    below = join_node["Actual Total Time"] if join_node else dedupe
    triggers = sum(t.get("Time", 0.0) for t in plan.get("Triggers", ()))
    return {
        "dedupe": round(dedupe, 1),
        "join": round(max(join, 0.0), 1),
        "write": round(max(root["Actual Total Time"] - below, 0.0), 1),
        "triggers": round(triggers, 1),
    }


PROGRESS_MODES = ("quiet", "lines", "bar")
PROGRESS_RUNS = 9


def progress_runs(cfg: Config, conn: psycopg.Connection) -> list[Measurement]:
    """csvload fresh imports on the largest default size, at least PROGRESS_RUNS runs of
    each display in rotating order: --quiet; plain progress lines (stderr not a terminal);
    the rich bar (stderr a pseudo-terminal).

    The displays differ by a few milliseconds of client CPU, while wall times on this
    shared machine move by ±3% from run to run; hence more runs than elsewhere, and the
    client's CPU time reported beside the wall time."""
    rows = max((s for s in cfg.sizes if s != LARGE_SIZE), default=LARGE_SIZE)
    fresh_file, _ = data_files(rows)
    expected = Expectation(expected_content(fresh_file), (fresh_file,), 0, 0)
    method = Csvload()
    out = []
    for run in range(max(cfg.runs, PROGRESS_RUNS)):
        shift = run % len(PROGRESS_MODES)
        for progress in PROGRESS_MODES[shift:] + PROGRESS_MODES[:shift]:
            reset_table(conn, cfg.dsn, True)
            outcome = method.run(
                fresh_file, cfg.dsn, quiet=progress == "quiet", tty=progress == "bar"
            )
            label = f"csvload {rows} fresh, progress={progress}, run {run + 1}"
            verify(conn, expected, label)
            out.append(
                Measurement.of(
                    "csvload", rows, "progress-check", run + 1, outcome, progress=progress
                )
            )
            log(
                f"[{label}] {outcome.finished.seconds:.2f}s, "
                f"{len(outcome.finished.stderr.splitlines())} stderr lines"
            )
    return out


def machine_info(conn: psycopg.Connection) -> dict:
    def show(setting: str) -> str:
        return conn.execute(f"SHOW {setting}").fetchone()[0]

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgres": show("server_version"),
        "postgres_settings": {
            s: show(s)
            for s in (
                "shared_buffers",
                "max_wal_size",
                "synchronous_commit",
                "fsync",
                "work_mem",
                "maintenance_work_mem",
            )
        },
        "commit": commit,
    }


# --------------------------------------------------------------------------- reporting


def summarize(result: dict) -> dict:
    """Medians per (rows, phase, method), the median of per-run ratios to the floor, and
    csvload's speed-up over seed-style (also per run)."""
    ms = [m for m in result["measurements"] if m["phase"] in PHASES and not m.get("transport")]
    floor = {(m["rows"], m["phase"], m["run"]): m["seconds"] for m in ms if m["method"] == "floor"}
    groups: dict[tuple[int, str, str], list[dict]] = {}
    for m in ms:
        groups.setdefault((m["rows"], m["phase"], m["method"]), []).append(m)
    rows = []
    for (n, phase, method), group in sorted(groups.items(), key=_order):
        ratios = [
            m["seconds"] / floor[(n, phase, m["run"])]
            for m in group
            if (n, phase, m["run"]) in floor
        ]
        statements = {m["statements"] for m in group}
        rows.append(
            {
                "rows": n,
                "phase": phase,
                "method": method,
                "median_s": statistics.median(m["seconds"] for m in group),
                "runs_s": [round(m["seconds"], 2) for m in group],
                "ratio_to_floor": statistics.median(ratios) if ratios else None,
                "peak_rss_mib": max(m["rss_kib"] for m in group) / 1024,
                "statements": statements.pop()
                if len(statements) == 1
                else sorted(statements, key=lambda s: -1 if s is None else s),
                "reported_s": _median_or_none(m["counts"].get("seconds") for m in group),
            }
        )
    summary = {"table": rows}
    split = time_split(result["measurements"])
    if split:
        summary["split"] = split

    # How many times faster csvload is than seed-style: per-run pairs, like the floor ratios.
    seconds = {(m["rows"], m["phase"], m["method"], m["run"]): m["seconds"] for m in ms}
    speedups = []
    for n, phase in sorted({(m["rows"], m["phase"]) for m in ms}, key=lambda k: (k[0], k[1])):
        pairs = [
            seconds[(n, phase, "seed", run)] / seconds[(n, phase, "csvload", run)]
            for (rows_, phase_, method, run) in seconds
            if (rows_, phase_, method) == (n, phase, "csvload")
            and (n, phase, "seed", run) in seconds
        ]
        if pairs:
            speedups.append({"rows": n, "phase": phase, "times_faster": statistics.median(pairs)})
    if speedups:
        summary["csvload_vs_seed"] = speedups

    unix = [m for m in result["measurements"] if m.get("transport") == "unix"]
    if unix:
        unix_floor = {(m["phase"], m["run"]): m["seconds"] for m in unix if m["method"] == "floor"}
        summary["unix_socket"] = {
            "rows": unix[0]["rows"],
            "table": [
                {
                    "phase": phase,
                    "method": method,
                    "median_s": statistics.median(m["seconds"] for m in group),
                    "runs_s": [round(m["seconds"], 2) for m in group],
                    "ratio_to_floor": statistics.median(
                        m["seconds"] / unix_floor[(phase, m["run"])] for m in group
                    ),
                }
                for phase in PHASES
                for method in ("floor", "csvload")
                if (group := [m for m in unix if (m["phase"], m["method"]) == (phase, method)])
            ],
        }

    checks = [m for m in result["measurements"] if m["phase"] == "progress-check"]
    if checks:
        # Older results recorded progress as a bool: True was the plain lines.
        legacy = {True: "lines", False: "quiet"}
        mode_of = [(m, legacy.get(m["progress"], m["progress"])) for m in checks]
        runs = {
            mode: {m["run"]: m["seconds"] for m, m_mode in mode_of if m_mode == mode}
            for mode in PROGRESS_MODES
        }
        quiet = runs["quiet"]
        cpu = {
            mode: {m["run"]: m["cpu_s"] for m, m_mode in mode_of if m_mode == mode}
            for mode in PROGRESS_MODES
        }
        summary["progress"] = {
            "rows": checks[0]["rows"],
            "runs_s": {mode: [round(t[r], 2) for r in sorted(t)] for mode, t in runs.items() if t},
            # Paired within a run, like the ratios to the floor.
            "overhead": {
                mode: statistics.median(t[r] / quiet[r] for r in quiet if r in t) - 1
                for mode, t in runs.items()
                if mode != "quiet" and t
            },
            # The client CPU a display adds, as a share of the quiet import's wall time.
            "cpu_overhead": {
                mode: statistics.median(
                    (c[r] - cpu["quiet"][r]) / quiet[r]
                    for r in quiet
                    if c.get(r) is not None and cpu["quiet"].get(r) is not None
                )
                for mode, c in cpu.items()
                if mode != "quiet" and any(v is not None for v in c.values())
            },
        }

    by = {(r["rows"], r["phase"], r["method"]): r for r in rows}
    scaling = []
    for (n, phase, method), r in by.items():
        base = by.get((500_000, phase, method))
        if n == LARGE_SIZE and base:
            scaling.append(
                {
                    "phase": phase,
                    "method": method,
                    "time_ratio": r["median_s"] / base["median_s"],
                    "rss_ratio": r["peak_rss_mib"] / base["peak_rss_mib"],
                }
            )
    if scaling:
        summary["scaling_2m_over_500k"] = scaling
    scale = [
        {
            "phase": phase, "method": method,
            "time_ratio": r["median_s"] / base["median_s"],
            "peak_rss_mib": r["peak_rss_mib"], "base_rss_mib": base["peak_rss_mib"],
        }
        for (n, phase, method), r in by.items()
        if n == SCALE_SIZE and (base := by.get((LARGE_SIZE, phase, method)))
    ]  # fmt: skip
    if scale:
        summary["scaling_10m_over_2m"] = scale
    return summary


_METHOD_ORDER = {"floor": 0, "copy": 1, "before": 2, "csvload": 3, "seed": 4}
TIMED = ("prepare", "read", "copy", "analyze", "indexes", "write", "commit")
WRITE_STEPS = ("dedupe", "join", "write", "triggers")


def time_split(measurements: list[dict], method: str = "csvload") -> list[dict]:
    """Per size and phase, where `method`'s time went: the medians of the phases it timed
    itself (its JSON summary's timings), the rest of the wall time (start-up, connecting,
    the run history, exit) as "other", and its write statement split into WRITE_STEPS by
    the proportions of the explained run (explained_runs), scaled to the median write.
    Beside it the physical floor ("copy") and the floor of the same run."""
    timed = [
        m for m in measurements
        if m["method"] == method and m["phase"] in PHASES and not m.get("transport")
        and m["counts"].get("timings") is not None
    ]  # fmt: skip
    explained = {
        (m["rows"], m["counts"]["phase"]): m["counts"]["split"]
        for m in measurements
        if m["method"] == method and m["phase"] == "explained" and m["counts"].get("split")
    }
    plain = [m for m in measurements if m["phase"] in PHASES and not m.get("transport")]
    out = []
    for n, phase in sorted({(m["rows"], m["phase"]) for m in timed}, key=_phase_order):
        group = [m for m in timed if (m["rows"], m["phase"]) == (n, phase)]
        row: dict = {"rows": n, "phase": phase}
        row["wall"] = statistics.median(m["seconds"] for m in group)
        for step in TIMED:
            row[step] = statistics.median(m["counts"]["timings"].get(step, 0.0) for m in group)
        row["other"] = statistics.median(
            m["seconds"] - sum(m["counts"]["timings"].get(s, 0.0) for s in TIMED)
            for m in group
        )
        parts = explained.get((n, phase))
        if parts and sum(parts.values()) > 0:
            total = sum(parts.values())
            row["write_split"] = {k: row["write"] * v / total for k, v in parts.items()}
        for other in ("copy", "floor"):
            times = [m["seconds"] for m in plain
                     if (m["rows"], m["phase"], m["method"]) == (n, phase, other)]
            row[f"{other}_s"] = statistics.median(times) if times else None
        out.append(row)
    return out


def _phase_order(key: tuple[int, str]) -> tuple[int, int]:
    return (key[0], PHASES.index(key[1]))


def split_lines(split: list[dict], method: str = "csvload") -> list[str]:
    """time_split()'s table as markdown."""
    out = [
        f"## Where {method}'s time goes (medians, seconds)",
        "",
        "prepare: reading the table's definition; read: the client reading and parsing; "
        "copy: waiting for the server's COPY; "
        "other: start-up, connecting, the run history and exit.  The write statement "
        "is split by the proportions of one EXPLAIN ANALYZEd run (auto_explain): dedupe "
        "(scan, sort, DISTINCT ON, casts), join (with the table), write (compare, "
        "conditions, rows and index entries), triggers.  physical floor: `\\copy` into an "
        "UNLOGGED table without indexes.",
        "",
        "| records | phase | wall | other | prepare | read | copy | analyze | indexes "
        "| write (dedupe / join / write / triggers) | commit | physical floor | floor |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in split:
        parts = r.get("write_split")
        write = f"{r['write']:.2f}"
        if parts:
            write += " (" + " / ".join(f"{parts.get(k, 0.0):.2f}" for k in WRITE_STEPS) + ")"
        out.append(
            f"| {r['rows']:,} | {r['phase']} | {r['wall']:.2f} | {r['other']:.2f} "
            f"| {r['prepare']:.2f} | {r['read']:.2f} | {r['copy']:.2f} | {r['analyze']:.2f} "
            f"| {r['indexes']:.2f} "
            f"| {write} | {r['commit']:.2f} | {_fmt(r['copy_s'])} | {_fmt(r['floor_s'])} |"
        )
    out.append("")
    return out


def _order(item: tuple[tuple[int, str, str], list]) -> tuple:
    n, phase, method = item[0]
    return (PHASES.index(phase), n, _METHOD_ORDER.get(method, 9))


def _median_or_none(values: Iterator) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _or_dash(value: object) -> str:
    return "–" if value is None else str(value)


def machine_lines(mach: dict) -> list[str]:
    """The date, commit, machine and server of a result, as markdown list items."""
    return [
        f"- Date: {mach['date']}, commit {mach['commit']}",
        f"- Machine: {mach['nproc']} CPUs ({mach['cpu']}), {mach['memory']} RAM, {mach['os']}",
        f"- PostgreSQL {mach['postgres']} "
        + ", ".join(f"{k}={v}" for k, v in mach["postgres_settings"].items()),
    ]


def render_markdown(result: dict, summary: dict) -> str:
    mach, cfg = result["machine"], result["config"]
    out = [
        "# csvload benchmark results",
        "",
        *machine_lines(mach),
        f"- Python {mach['python']}; {cfg['runs']} runs per cell, methods in rotating order; "
        "times are medians of the whole client process (start to exit)",
        f"- Data: `csvload.generate`, seed {SEED}, {DUPLICATES:.0%} duplicate rows; the "
        f"re-import file has the same SKUs with {RENAME_FRACTION:.0%} of the rows renamed",
        "",
    ]
    titles = {
        "fresh": "Fresh import into an empty table",
        "unchanged": "The same file again (nothing changed)",
        "onepct": "1% of the names changed",
        "reimport": "Re-import into the filled table (same SKUs, about half the names changed)",
    }
    for phase in PHASES:
        if not any(r["phase"] == phase for r in summary["table"]):
            continue
        out += [
            f"## {titles[phase]}",
            "",
            "| records | method | time (median) | runs | × floor | peak client RSS "
            "| statements | self-reported |",
            "|---:|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in summary["table"]:
            if r["phase"] != phase:
                continue
            out.append(
                f"| {r['rows']:,} | {r['method']} | {_fmt(r['median_s'], suffix=' s')} "
                f"| {', '.join(f'{s:.2f}' for s in r['runs_s'])} "
                f"| {_fmt(r['ratio_to_floor'], suffix='×')} "
                f"| {r['peak_rss_mib']:.0f} MiB | {_or_dash(r['statements'])} "
                f"| {_fmt(r['reported_s'], suffix=' s')} |"
            )
        out.append("")

    if summary.get("split"):
        out += split_lines(summary["split"])
    present = [p for p in PHASES if any(r["phase"] == p for r in summary["table"])]

    if summary.get("csvload_vs_seed"):
        out += [
            "## csvload against seed-style (times faster; median of per-run ratios)",
            "",
            "| records | " + " | ".join(present) + " |",
            "|---:|" + "---:|" * len(present),
        ]
        faster = {(r["rows"], r["phase"]): r["times_faster"] for r in summary["csvload_vs_seed"]}
        for n in sorted({n for n, _ in faster}):
            cells = " | ".join(_fmt(faster.get((n, phase)), 1, "×") for phase in present)
            out.append(f"| {n:,} | {cells} |")
        out.append("")

    out += ["## Peak client RSS by size (MiB, max over runs)", ""]
    sizes = sorted({r["rows"] for r in summary["table"]})
    methods = sorted({r["method"] for r in summary["table"]}, key=lambda m: _METHOD_ORDER.get(m, 9))
    out += [
        "| method | phase | " + " | ".join(f"{n:,}" for n in sizes) + " |",
        "|---|---|" + "---:|" * len(sizes),
    ]
    cells = {(r["method"], r["phase"], r["rows"]): r["peak_rss_mib"] for r in summary["table"]}
    for method in methods:
        for phase in present:
            out.append(
                f"| {method} | {phase} | "
                + " | ".join(_fmt(cells.get((method, phase, n)), 0) for n in sizes)
                + " |"
            )
    out.append("")

    if "progress" in summary:
        p = summary["progress"]
        names = {
            "quiet": "`--quiet`",
            "lines": "plain progress lines (stderr not a terminal)",
            "bar": "the rich progress bar (stderr a pseudo-terminal)",
        }
        out += [
            f"## Progress reporting overhead (csvload, fresh import of {p['rows']:,} rows)",
            "",
            "| display | runs | wall-time overhead against `--quiet` (median of per-run "
            "ratios) | client CPU added, as a share of the `--quiet` time (median) |",
            "|---|---|---:|---:|",
        ]
        for mode, times in p["runs_s"].items():
            cells = [
                "–" if v is None else f"{v:+.1%}"
                for v in (p["overhead"].get(mode), p.get("cpu_overhead", {}).get(mode))
            ]
            out.append(
                f"| {names[mode]} | {', '.join(f'{t:.2f}' for t in times)} s "
                f"| {cells[0]} | {cells[1]} |"
            )
        out += [
            "",
            "Compare a wall-time overhead with the spread between runs before reading much "
            "into it: the displays cost only client CPU, which the last column measures "
            "directly.",
            "",
        ]
    if "unix_socket" in summary:
        u = summary["unix_socket"]
        out += [
            f"## Over the server's unix socket ({u['rows']:,} records)",
            "",
            "The tables above connect over TCP to 127.0.0.1. The managed local server and a DSN "
            "without a host use the unix socket instead.",
            "",
            "| phase | method | time (median) | runs | × floor |",
            "|---|---|---:|---|---:|",
        ]
        for r in u["table"]:
            out.append(
                f"| {r['phase']} | {r['method']} | {_fmt(r['median_s'], suffix=' s')} "
                f"| {', '.join(f'{t:.2f}' for t in r['runs_s'])} "
                f"| {_fmt(r['ratio_to_floor'], suffix='×')} |"
            )
        out.append("")
    if "scaling_2m_over_500k" in summary:
        out += [
            "## Scaling, 2,000,000 / 500,000 rows (4.00 is linear)",
            "",
            "| method | phase | time ratio | RSS ratio |",
            "|---|---|---:|---:|",
        ]
        for s in summary["scaling_2m_over_500k"]:
            out.append(
                f"| {s['method']} | {s['phase']} | {s['time_ratio']:.2f} | {s['rss_ratio']:.2f} |"
            )
        out.append("")

    if "scaling_10m_over_2m" in summary:
        out += [
            "## Scaling, 10,000,000 / 2,000,000 rows (5.00 is linear; the goal is 5.5)",
            "",
            "| method | phase | time ratio | peak RSS at 2M | at 10M |",
            "|---|---|---:|---:|---:|",
        ]
        for s in summary["scaling_10m_over_2m"]:
            out.append(
                f"| {s['method']} | {s['phase']} | {s['time_ratio']:.2f} "
                f"| {s['base_rss_mib']:.0f} MiB | {s['peak_rss_mib']:.0f} MiB |"
            )
        out.append("")

    out += [
        "## Methods",
        "",
        f"- **floor**: {Floor.description} Statements: {FLOOR_STATEMENTS} "
        "(BEGIN, CREATE TEMP TABLE, COPY, INSERT, COMMIT).",
        f"- **copy**: {RawCopy.description}",
        f"- **seed**: {SeedStyle.description} Statements counted by the script, "
        "BEGIN and COMMIT included.",
        f"- **csvload**: {Csvload.description} Statements as csvload reports them.",
        "- × floor is the median over runs of (method time / floor time in the same run).",
        "- time includes process start-up (about 0.1–0.2 s for the Python clients, which "
        "dominates at 10k rows; csvload's modules are compiled to bytecode first, as a wheel "
        "install does); self-reported is the time the client measured itself.",
        "- Every import was checked: one row per lower(sku), carrying the last "
        "occurrence's name and description.",
        "",
    ]
    if result["notes"]:
        out += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    return "\n".join(out)


def bench_main(
    run: Callable[[Config, Path], dict],
    configure: Callable[[str, str | None], Config],
    report: Callable[[dict], tuple[dict, str]],
    stem: str,
) -> int:
    """Run a benchmark on DATABASE_URL's server, else on a throwaway local one:
    run(configure(dsn, unix_dsn), workdir) gives the result, report(result) its summary and
    markdown, written with the result to tests/bench/{stem}.md and {stem}.json."""
    dsn = os.environ.get("DATABASE_URL", "")
    unix_dsn = os.environ.get("BENCH_UNIX_URL") if dsn else None
    started = time.perf_counter()
    # csvload runs from the source tree (an editable install).  Compile it to bytecode
    # first, as pip does when it installs a wheel: with PYTHONDONTWRITEBYTECODE set (as on
    # the machine these results come from) each run would compile its modules again, about
    # 18 ms of its start-up.
    compileall.compile_dir(ROOT / "src", quiet=1)
    try:
        with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as work:
            if not dsn:
                dsn, unix_dsn = stack.enter_context(local_server())
            result = run(configure(dsn, unix_dsn), Path(work))
    except BenchError as e:
        log(f"bench failed: {e}")
        return 1
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["summary"], markdown = report(result)
    (HERE / f"{stem}.md").write_text(markdown, encoding="utf-8")
    (HERE / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown)
    log(f"total {result['total_seconds']:.0f}s; wrote {HERE / stem}.md and {stem}.json")
    return 0


def _report(result: dict) -> tuple[dict, str]:
    summary = summarize(result)
    return summary, render_markdown(result, summary)


def main() -> int:
    return bench_main(run_bench, config_from_env, _report, "results")


if __name__ == "__main__":
    sys.exit(main())
