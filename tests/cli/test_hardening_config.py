"""Hardening of the DSN, the environment and the config files (issue 19): a malformed DSN
never shows its password, `init` is safe to run concurrently, timeouts are finite, and
.env and csvload.toml are read with bounded memory and one-line errors."""

from __future__ import annotations

import json
import os

import pytest
from helpers.cli import cli, csvload_cmd
from helpers.db import own_schema
from helpers.webhook import closed_port

from csvload.server import database

# The hostile test pass's three DSNs libpq cannot parse, and two it parses into a host or
# port holding the rest of the password.  Each with the pieces of its password that must
# not appear in any output.
URL_HINT = (
    "percent-encode special characters in the URL's password, e.g. % as %25, @ as %40, "
    "/ as %2F"
)
KEYWORD_HINT = "quote a value that has spaces in it, e.g. 'two words'"
MALFORMED = [
    ("postgresql://app:Sale50%off!@h/db", ("Sale50", "off!"), "PostgreSQL URL", URL_HINT),
    ("postgresql://app:Secr3t@[::1:55499/db", ("Secr3t",), "PostgreSQL URL", URL_HINT),
    ("host=h password=Open Sesame99", ("Open", "Sesame99"), "key=value DSN", KEYWORD_HINT),
    ("postgresql://app:Pa@ss99@h/db", ("Pa", "ss99"), "PostgreSQL URL", URL_HINT),
    ("postgresql://app:Pa/ss99@h/db", ("Pa", "ss99"), "PostgreSQL URL", URL_HINT),
]
IDS = ["percent", "ipv6", "spaces", "second-at", "slash"]


def clean_env(**extra: str) -> dict[str, str | None]:
    """CliRunner's env: no DSN from the developer's environment, plus `extra`."""
    env: dict[str, str | None] = {
        v: None
        for v in ("DATABASE_URL", "PGHOST", "PGDATABASE", "PGSERVICE", "CSVLOAD_WEBHOOK_URL")
    }
    return env | extra


def invoke(args, env=None):
    return cli(None, *args, env=clean_env(**(env or {})))


def assert_nowhere(pieces, *texts):
    for text in texts:
        for piece in pieces:
            assert piece not in text


@pytest.mark.parametrize(("dsn", "pieces", "kind", "hint"), MALFORMED, ids=IDS)
@pytest.mark.parametrize("source", ["--dsn", "DATABASE_URL", ".env"])
def test_malformed_dsn_names_its_source_and_never_its_password(
    dsn, pieces, kind, hint, source, tmp_path, monkeypatch, receiver
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("sku,name\na,one\n")
    args = ["import", "p.csv", "--json", "--webhook", receiver.url, "--webhook-retries", "0"]
    env = {}
    if source == "--dsn":
        args += ["--dsn", dsn]
        where = "--dsn"
    elif source == "DATABASE_URL":
        env["DATABASE_URL"] = dsn
        where = "DATABASE_URL"
    else:
        quoted = dsn if " " not in dsn else f'"{dsn}"'
        (tmp_path / ".env").write_text(f"# the shop's database\n\nDATABASE_URL={quoted}\n")
        where = ".env line 3: DATABASE_URL"
    result = invoke(args, env)
    message = f"{where}: not a valid {kind} ({hint})"
    assert result.exit_code == 2
    assert result.stderr == f"Error: {message}\n"
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["error"]) == ("failed", message)
    assert len(receiver.requests) == 1  # the failed import's event was delivered
    event = receiver.requests[0].json()
    assert (event["event"], event["error"]) == ("import.failed", message)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("p.csv", ".env")]
    assert_nowhere(
        pieces,
        result.stdout,
        result.stderr,
        receiver.requests[0].body.decode(),
        json.dumps(receiver.requests[0].headers),
    )


@pytest.mark.parametrize(("dsn", "pieces", "kind", "hint"), MALFORMED, ids=IDS)
@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["runs"], ["stats"]])
def test_commands_that_connect_report_a_malformed_dsn_alike(dsn, pieces, kind, hint, command):
    for args, env, where in (
        ([*command, "--dsn", dsn], {}, "--dsn"),
        (command, {"DATABASE_URL": dsn}, "DATABASE_URL"),
    ):
        result = invoke(args, env)
        assert result.exit_code == 2
        assert result.stderr == f"Error: {where}: not a valid {kind} ({hint})\n"
        assert_nowhere(pieces, result.stdout, result.stderr)


def test_verify_and_init_report_a_malformed_dsn_alike(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("sku,name\na,one\n")
    dsn, pieces, kind, hint = MALFORMED[0]
    for args in (["verify", "p.csv", "--dsn", dsn], ["init", "--dsn", dsn]):
        result = invoke(args)
        assert result.exit_code == 2
        assert result.stderr == f"Error: --dsn: not a valid {kind} ({hint})\n"
        assert_nowhere(pieces, result.stdout, result.stderr)


@pytest.mark.parametrize(
    ("dsn", "message", "forms"),
    [
        # decoded, as written (percent-encoded) and percent-encoded once more
        (
            "postgresql://app:Sale50%25off!@h/db",
            'failed: "Sale50%off!" / Sale50%25off! / Sale50%25off%21',
            ("Sale50",),
        ),
        # key=value: quoted and escaped as written, and decoded
        (
            "host=h password='Open Se\\'same99'",
            "failed: 'Open Se\\'same99' / Open Se'same99",
            ("Sesame", "same99"),
        ),
        # a URL's ?password= as written and decoded
        ("postgresql://h/db?password=Pass%2Fw0rd", "Pass%2Fw0rd or Pass/w0rd", ("w0rd",)),
    ],
)
def test_redact_hides_every_form_of_the_password(dsn, message, forms):
    redacted = database.redact(message, dsn)
    assert "***" in redacted
    assert_nowhere(forms, redacted)


def test_connect_error_from_a_parsed_dsn_names_the_server_not_the_password(tmp_path):

    port = closed_port()
    dsn = f"postgresql://app:Sale50%25off!@127.0.0.1:{port}/shop"
    result = invoke(["status", "--dsn", dsn, "--connect-timeout", "1"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot connect to shop on 127.0.0.1:{port}: ")
    assert len(result.stderr.splitlines()) == 1
    assert_nowhere(("Sale50", "off!"), result.stdout, result.stderr)


# -- .env ------------------------------------------------------------------------------------

# With no DATABASE_URL csvload would fall back to libpq's PG* variables: here a server that
# is not there, so a .env that is silently skipped shows as a connection error instead.
NO_SERVER = {"PGHOST": "/nonexistent-csvload-test", "PGDATABASE": "none"}


def status_with_env_file(tmp_path, monkeypatch, content: bytes):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(content)
    return invoke(["status"], NO_SERVER)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b'APP=shop\nDATABASE_URL="postgresql://app@db.example.com/shop\n', 2),
        (b"DATABASE_URL='postgresql://app@db.example.com/shop\nOTHER=1\n", 1),
        # a line for another variable is as much an error
        (b"# settings\n\nSECRET_KEY='unclosed\nDATABASE_URL=postgresql://x/y\n", 3),
    ],
)
def test_env_file_line_python_dotenv_cannot_parse(tmp_path, monkeypatch, content, line):
    result = status_with_env_file(tmp_path, monkeypatch, content)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: .env line {line}: not a NAME=value line python-dotenv can read "
        "(check for an unclosed quote)\n"
    )


def test_env_file_that_is_not_utf8(tmp_path, monkeypatch):
    content = b"# caf\xe9\nDATABASE_URL=postgresql://x/y\n"
    result = status_with_env_file(tmp_path, monkeypatch, content)
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: .env line 1: bytes that are not valid UTF-8 (a .env file is UTF-8)\n"
    )


def test_env_file_with_a_bom_is_read(tmp_path, monkeypatch):
    # A malformed DSN on line 1 proves DATABASE_URL was found behind the BOM.
    content = b"\xef\xbb\xbfDATABASE_URL=postgresql://app:50%off@h/db\n"
    result = status_with_env_file(tmp_path, monkeypatch, content)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: .env line 1: DATABASE_URL: not a valid PostgreSQL URL ({URL_HINT})\n"
    )


def test_env_file_bigger_than_a_mebibyte(tmp_path, monkeypatch):
    content = b"DATABASE_URL=postgresql://x/y\n" + b"# padding\n" * 110_000
    result = status_with_env_file(tmp_path, monkeypatch, content)
    assert result.exit_code == 2
    assert result.stderr == "Error: .env: more than 1 MiB, too big for a .env file\n"


def test_env_fifo_is_refused_without_waiting_for_a_writer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / ".env")
    result = invoke(["status"], NO_SERVER)
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: .env: not a regular file (a .env file is a plain file, not a device or a "
        "pipe)\n"
    )


def test_env_directory_is_a_virtualenv_and_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").mkdir()
    result = invoke(["status"], NO_SERVER)
    assert result.exit_code == 1
    assert "/nonexistent-csvload-test/.s.PGSQL.5432" in result.stderr


def test_environment_wins_over_an_unreadable_env_file(tmp_path, monkeypatch):
    # The .env is not read at all when the environment has DATABASE_URL.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_bytes(b'DATABASE_URL="unclosed\n')
    result = invoke(["status"], {"DATABASE_URL": "postgresql://app:50%off@h/db"})
    assert result.stderr == f"Error: DATABASE_URL: not a valid PostgreSQL URL ({URL_HINT})\n"


# -- csvload.toml ----------------------------------------------------------------------------


def feed_error(tmp_path, content: bytes) -> str:
    from csvload.cli.config import load_feed
    from csvload.errors import ConfigError

    (tmp_path / "csvload.toml").write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_feed(None, "shop", tmp_path)
    assert e.value.exit_status == 2
    return str(e.value)


def test_config_with_a_utf8_bom_is_read(tmp_path):
    from csvload.cli.config import load_feed

    (tmp_path / "csvload.toml").write_bytes(b'\xef\xbb\xbf[feeds.shop]\ntable = "items"\n')
    assert load_feed(None, "shop", tmp_path).settings == {"table": "items"}


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 100_000,
        "[feeds.shop]\ndefault = " + "{ a = " * 50_000,
    ],
)
def test_deeply_nested_config_is_one_line(tmp_path, text):
    message = feed_error(tmp_path, text.encode())
    assert message == "csvload.toml: arrays or tables nested too deeply to read"


@pytest.mark.parametrize(
    "text",
    [
        "[feeds.shop]\ndefault." + "a." * 400_000 + "a = 1\n",
        '[feeds.shop]\nmap = { "x"' + '."x"' * 150_000 + ' = "name" }\n',
        "[feeds.shop" + ".a" * 400_000 + "]\n",
    ],
)
def test_dotted_key_of_thousands_of_parts_is_refused_at_once(tmp_path, text):
    # tomllib takes time quadratic in a dotted key's parts: these took hours.  Read in a
    # child with a deadline, so that a regression fails instead of hanging the suite.
    import subprocess
    import sys

    (tmp_path / "csvload.toml").write_text(text)
    code = (
        "import sys; from pathlib import Path; from csvload.cli.config import load_feed;"
        "from csvload.errors import ConfigError\n"
        "try: load_feed(None, 'shop', Path(sys.argv[1]))\n"
        "except ConfigError as e: print(e)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=10
    )
    line = 1 if text.startswith("[feeds.shop.") else 2
    assert done.stdout == (
        f"csvload.toml line {line}: a dotted key of more than 100 parts, too deep to read\n"
    )


def test_config_bigger_than_a_mebibyte(tmp_path):
    text = b'[feeds.shop]\ntable = "p"\n' + b"# padding\n" * 110_000
    assert feed_error(tmp_path, text) == (
        "csvload.toml: more than 1 MiB, too big for a config file"
    )


def test_unknown_feed_lists_a_few_of_thousands(tmp_path):
    text = "".join(f"[feeds.f{i:05}]\n" for i in range(5000)).encode()
    message = feed_error(tmp_path, text)
    assert message == (
        "csvload.toml: no feed 'shop' (feeds: "
        + ", ".join(f"f{i:05}" for i in range(20))
        + ", ... (5000 in all))"
    )


def bounded_import(args, cwd, seconds=20):
    """csvload import in a child limited to 1 GiB of address space and `seconds`: reading
    /dev/zero or a FIFO unbounded makes it fail (MemoryError) or hang (timeout)."""
    import resource
    import subprocess


    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    # NO_SERVER: a .env read as nothing must not start the managed local server.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | NO_SERVER
    return subprocess.run(
        csvload_cmd("import", *args),
        cwd=cwd,
        env=env,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=seconds,
    )


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_config_that_is_not_a_regular_file(tmp_path, kind):
    (tmp_path / "p.csv").write_text("sku,name\na,one\n")
    if kind == "device":
        config = "/dev/zero"
    else:
        config = "feeds.toml"
        os.mkfifo(tmp_path / config)
    done = bounded_import(
        ["p.csv", "--feed", "shop", "--config", config, "--dsn", "host=/nonexistent"], tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"Error: {config}: not a regular file (a config file is a plain file, not a device or a "
        "pipe)\n"
    )


def test_env_file_that_is_a_device(tmp_path):
    (tmp_path / "p.csv").write_text("sku,name\na,one\n")
    (tmp_path / ".env").symlink_to("/dev/zero")
    done = bounded_import(["p.csv"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "Error: .env: not a regular file (a .env file is a plain file, not a device or a "
        "pipe)\n"
    )


# -- init, concurrently ------------------------------------------------------------------------

INIT_ROUNDS = 15
INIT_SESSIONS = 6


def test_concurrent_inits_on_a_fresh_schema_all_succeed(server_dsn):
    """What `csvload init` runs, in several sessions at once on a fresh schema, round after
    round: CREATE TABLE / INDEX IF NOT EXISTS alone race on the catalog's unique indexes
    (UniqueViolation in 4 of 14 rounds of two inits)."""
    import threading

    from csvload.history import runs
    from csvload.server.database import connect
    from csvload.table import schema

    for _ in range(INIT_ROUNDS):
        with own_schema(server_dsn) as dsn:
            start = threading.Barrier(INIT_SESSIONS)
            failures: list[BaseException] = []

            def init(dsn=dsn, start=start, failures=failures):
                try:
                    with connect(dsn) as conn:
                        start.wait(timeout=30)
                        schema.create_products(conn)
                        runs.create_runs_table(conn)
                except BaseException as e:  # reported by the assertion below
                    failures.append(e)

            threads = [threading.Thread(target=init) for _ in range(INIT_SESSIONS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not failures, failures
            with connect(dsn) as conn:
                indexes = conn.execute(
                    "SELECT count(*) FROM pg_indexes WHERE tablename = 'products'"
                    " AND schemaname = current_schema()"
                ).fetchone()[0]
            assert indexes == 1 + len(schema.INDEXES)  # the primary key, and csvload's


def test_init_twice_in_processes_at_once(dsn):
    import subprocess


    procs = [
        subprocess.Popen(
            csvload_cmd("init", "--dsn", dsn),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert err.startswith("csvload: products is ready in ")


# -- finite seconds ----------------------------------------------------------------------------

FLOAT_OPTIONS = [
    (["import", "p.csv"], "--connect-timeout"),
    (["import", "p.csv"], "--lock-timeout"),
    (["import", "p.csv"], "--statement-timeout"),
    (["import", "p.csv"], "--fetch-connect-timeout"),
    (["import", "p.csv"], "--fetch-read-timeout"),
    (["import", "p.csv", "--webhook", "http://127.0.0.1:9/hook"], "--webhook-timeout"),
    (["init"], "--connect-timeout"),
    (["status"], "--connect-timeout"),
    (["runs"], "--connect-timeout"),
    (["stats"], "--connect-timeout"),
    (["verify", "p.csv"], "--connect-timeout"),
    (["webhook", "test", "http://127.0.0.1:9/hook"], "--timeout"),
    (["generate", "3"], "--duplicates"),
    (["generate", "3"], "--rename"),
]


@pytest.mark.parametrize(("command", "option"), FLOAT_OPTIONS)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "Infinity", "NaN"])
def test_float_options_refuse_inf_and_nan(tmp_path, monkeypatch, command, option, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("sku,name\na,one\n")
    dsn = [] if command[0] in ("webhook", "generate") else ["--dsn", "host=/nonexistent"]
    result = invoke([*command, option, value, *dsn])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '{option}': '{value}' is not a finite number."
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "option", ["--connect-timeout", "--lock-timeout", "--statement-timeout", "--webhook-timeout"]
)
def test_timeouts_have_postgresqls_ceiling(tmp_path, monkeypatch, option):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("sku,name\na,one\n")
    result = invoke(["import", "p.csv", option, "1e10", "--dsn", "host=/nonexistent"])
    assert result.exit_code == 2
    low = {"--connect-timeout": 1, "--webhook-timeout": 0.1}.get(option, 0)
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '{option}': 10000000000.0 is not in the range "
        f"{low}<=x<=2147483."
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_errors = inf", "max_errors must be an integer >= 0, not inf"),
        ("batch_size = nan", "batch_size must be an integer >= 1, not nan"),
        (
            'max_missing = "inf%"',
            'max_missing must be an integer >= 0 or a percentage like "10%", not "inf%"',
        ),
        ("lock_timeout = inf", "unknown key 'lock_timeout'"),
    ],
)
def test_config_numbers_are_finite_and_timeouts_are_not_feed_settings(tmp_path, line, message):
    # A feed sets no float option: the timeouts are options of one run, not of a feed.
    text = f"[feeds.shop]\n{line}\n".encode()
    assert feed_error(tmp_path, text).startswith(f"csvload.toml line 2: feed 'shop': {message}")


# -- generate -o -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("missing/dir/x.csv", "-o missing/dir/x.csv: no such folder"),
        ("file.txt/x.csv", "-o file.txt/x.csv: part of the path is a file, not a folder"),
        ("/dev/full", "-o /dev/full: cannot write: No space left on device"),
    ],
)
def test_generate_output_that_cannot_be_written(tmp_path, monkeypatch, output, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x\n")
    result = invoke(["generate", "3", "-o", output])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_generate_output_in_a_folder_without_write_permission(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ro").mkdir(mode=0o555)
    result = invoke(["generate", "3", "-o", "ro/x.csv"])
    assert result.exit_code == 1
    assert result.stderr == "Error: -o ro/x.csv: permission denied\n"
