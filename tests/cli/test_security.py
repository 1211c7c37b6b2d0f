"""Security: a known DSN password and webhook secret never show in any output, hostile
header names never reach SQL, and the rejects file respects the umask and symlinks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import psycopg
from helpers.cli import csvload_cmd
from helpers.db import table_checksum
from helpers.webhook import closed_port
from psycopg import conninfo

PASSWORD = "KnownPw123"
SECRET = "KnownSecret456"


def run(dsn: str, path, *extra: str, env: dict | None = None):
    return subprocess.run(
        csvload_cmd("import", str(path), "--dsn", dsn, "--json", *extra),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def with_password(dsn: str) -> str:
    # The test server trusts local connections, so the password is sent and ignored.
    return conninfo.make_conninfo(dsn, password=PASSWORD)


def everything_written(dsn: str, tmp_path, outputs, receiver) -> str:
    """Every byte csvload produced: outputs, files beside the inputs, run rows, payloads."""
    seen = [o.stdout + o.stderr for o in outputs]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    with psycopg.connect(dsn) as c:
        if c.execute("SELECT to_regclass('csvload_runs')").fetchone()[0]:
            seen += [r[0] for r in c.execute("SELECT r::text FROM csvload_runs r")]
    seen += [r.body.decode() + json.dumps(r.headers) for r in receiver.requests]
    return "\n".join(seen)


def test_password_and_secret_never_appear_anywhere(products, tmp_path, receiver):
    dsn = with_password(products)
    env = os.environ | {"CSVLOAD_WEBHOOK_SECRET": SECRET}
    bad_hook = f"http://127.0.0.1:{closed_port()}/hook"
    (tmp_path / "ok.csv").write_text("sku,name\na,one\n")
    (tmp_path / "nosku.csv").write_text("name\nx\n")
    (tmp_path / "rejects.csv").write_text('sku,name\nb,two\n"unclosed,x\nc,three,extra\n')
    outputs = [
        # succeeds, webhook delivered and signed (secret from the environment)
        run(dsn, tmp_path / "ok.csv", "--webhook", receiver.url, env=env),
        # succeeds, webhook to a closed port (secret on the command line)
        run(
            dsn,
            tmp_path / "ok.csv",
            "--webhook",
            bad_hook,
            "--webhook-secret",
            SECRET,
            "--webhook-retries",
            "0",
        ),
        # missing column, with a failed-event webhook
        run(dsn, tmp_path / "nosku.csv", "--webhook", receiver.url, env=env),
        # too many rejects
        run(dsn, tmp_path / "rejects.csv", "--webhook", receiver.url, env=env),
        # no table: a schema that has none
        run(
            conninfo.make_conninfo(dsn, options="-c search_path=pg_catalog_nothing"),
            tmp_path / "ok.csv",
            "--webhook",
            receiver.url,
            env=env,
        ),
        # wrong port
        run(
            conninfo.make_conninfo(dsn, host="127.0.0.1", port=str(closed_port())),
            tmp_path / "ok.csv",
            "--connect-timeout",
            "1",
            env=env,
        ),
    ]
    codes = [o.returncode for o in outputs]
    assert codes == [0, 4, 1, 1, 1, 1], [o.stderr for o in outputs]
    assert len(receiver.requests) >= 4  # the delivered events were searched too
    written = everything_written(products, tmp_path, outputs, receiver)
    assert PASSWORD not in written
    assert SECRET not in written


HOSTILE = ['"; DROP TABLE products; --', 'a"b', "x'y;z"]


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def test_hostile_header_names_are_ignored_with_a_warning(products, tmp_path):
    with psycopg.connect(products) as c:
        c.execute("INSERT INTO products (sku, name) VALUES ('keep', 'me')")
    header = ",".join([*(csv_field(h) for h in HOSTILE), "sku", "name"])
    path = tmp_path / "hostile.csv"
    path.write_text(f"{header}\n1,2,3,s-1,n-1\n")
    done = run(products, path)
    assert done.returncode == 0, done.stderr
    warning = [line for line in done.stderr.splitlines() if line.startswith("Warning")]
    assert len(warning) == 1
    for h in HOSTILE:
        assert h in warning[0]
    with psycopg.connect(products) as c:
        rows = c.execute("SELECT sku, name FROM products ORDER BY sku").fetchall()
    assert rows == [("keep", "me"), ("s-1", "n-1")]


def test_hostile_header_mapped_with_map_is_only_data(products, tmp_path):
    with psycopg.connect(products) as c:
        c.execute("INSERT INTO products (sku, name) VALUES ('keep', 'me')")
    hostile = HOSTILE[0]
    path = tmp_path / "mapped.csv"
    path.write_text(f"{csv_field(hostile)},sku,{csv_field(HOSTILE[1])}\nn-1,s-1,x\n")
    done = run(products, path, "--map", f"{hostile}=name")
    assert done.returncode == 0, done.stderr
    with psycopg.connect(products) as c:
        rows = c.execute("SELECT sku, name FROM products ORDER BY sku").fetchall()
    assert rows == [("keep", "me"), ("s-1", "n-1")]


# -- the rejects file -----------------------------------------------------------------------


def test_rejects_file_takes_the_umask(products, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("sku,name\na,b\nc,d,e\n")
    # umask is per process: set it in a child that then runs csvload in-process.
    code = (
        "import os, sys; os.umask(0o027); from csvload.cli import main; "
        "sys.argv = ['csvload', 'import', sys.argv[1], '--dsn', sys.argv[2], '--quiet',"
        " '--max-errors', '5']; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path), products], capture_output=True, text=True
    )
    assert done.returncode == 3, done.stderr
    rejects = tmp_path / "r.csv.rejects.csv"
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o640


def test_symlink_at_the_rejects_path_is_refused_not_followed(products, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("sku,name\na,b\nc,d,e\n")
    target = tmp_path / "precious.txt"
    target.write_text("do not touch\n")
    rejects = tmp_path / "r.csv.rejects.csv"
    rejects.symlink_to(target)
    done = run(products, path, "--max-errors", "5")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"Error: Invalid value for --rejects: {rejects} is a symbolic link"
        " (give the file it points to, or another path)"
    )
    assert target.read_text() == "do not touch\n"
    assert rejects.readlink() == target


def test_failed_import_leaves_products_intact(products, tmp_path):
    # The hostile-header imports above must not have dropped or changed anything: here the
    # table check is explicit against a checksum.
    with psycopg.connect(products) as c:
        c.execute("INSERT INTO products (sku, name) VALUES ('keep', 'me')")
    before = table_checksum(products)
    path = tmp_path / "h.csv"
    path.write_text(f"{csv_field(HOSTILE[0])}\nx\n")  # no sku, no name
    done = run(products, path)
    assert done.returncode == 1
    assert table_checksum(products) == before
