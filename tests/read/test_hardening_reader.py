"""Issue 19, the reader's findings: a line that is just \\. must not end the COPY; a line
longer than the csv module's limit (or input without line ends at all) fails fast in bounded
memory; --encoding takes text encodings only; and a database whose encoding cannot store a
character rejects that record instead of failing the whole COPY."""

from __future__ import annotations

import csv
import io
import json
import resource
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers.cli import csvload_cmd, error_line, quiet_cli
from helpers.db import fetch_products, prefill, table_checksum
from helpers.files import csv_records, write_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import conninfo

from csvload.errors import InputError
from csvload.load.result import ImportResult
from csvload.load.staging import Staging, Statements, stage
from csvload.read import lines as source
from csvload.read.source import Source, SourceOptions
from csvload.table import schema

# -- a line that is just \. ---------------------------------------------------------------------


@pytest.fixture
def major_products(major_dsn):
    with psycopg.connect(major_dsn) as conn:
        schema.create_products(conn)
    return major_dsn


def _json(result) -> dict:
    return json.loads(result.stdout)


def test_a_backslash_dot_line_is_a_value_not_the_end_of_the_data(major_products, tmp_path):
    path = write_file(tmp_path, b"sku\nA-1\n\\.\nA-2\nA-3\n")
    result = quiet_cli(major_products, "import", path, "--default", "name=x", "--json")
    assert result.exit_code == 0, result.output
    summary = _json(result)
    assert (summary["inserted"], summary["duplicates"], summary["rejected"]) == (4, 0, 0)
    assert sorted(r[0] for r in fetch_products(major_products)) == ["A-1", "A-2", "A-3", "\\."]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["lf", "crlf"])
def test_backslash_dot_with_dot_and_backslash_delimiters(major_dsn, tmp_path, newline):
    """With "." as the delimiter the line \\. is the record (\\, ""); with "\\" it is
    ("", ".")."""
    with psycopg.connect(major_dsn) as conn:
        conn.execute("CREATE TABLE items (code text PRIMARY KEY, label text)")
    lines = [b"label\\code", b"a\\X1", b"\\.", b"b\\X2"]
    path = write_file(tmp_path, newline.join(lines) + newline, "back.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "items", "--key", "code",
                       "--delimiter", "\\", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _json(result)["inserted"] == 3
    lines = [b"code.label", b"X1.a", b"\\.", b"X2.b"]
    path = write_file(tmp_path, newline.join(lines) + newline, "dot.csv")
    result = quiet_cli(major_dsn, "import", path, "--table", "items", "--key", "code",
                       "--delimiter", ".", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _json(result)["inserted"] == 1  # X1 and X2 again, and "\"
    with psycopg.connect(major_dsn) as conn:
        rows = conn.execute('SELECT code, label FROM items ORDER BY code COLLATE "C"').fetchall()
    assert rows == [(".", ""), ("X1", "a"), ("X2", "b"), ("\\", "")]


def test_backslash_dot_does_not_cut_a_full_feed_short(major_products, tmp_path):
    """The finding's repro: a full feed T1..T50, \\., T51..T100 deleted T51..T100."""
    skus = [f"T{i}" for i in range(1, 101)]
    first = write_file(tmp_path, ("sku\n" + "".join(f"{s}\n" for s in skus)).encode(), "a.csv")
    assert quiet_cli(major_products, "import", first, "--default", "name=n").exit_code == 0
    text = "sku\n" + "".join(f"{s}\n" for s in skus[:50]) + "\\.\n"
    text += "".join(f"{s}\n" for s in skus[50:])
    path = write_file(tmp_path, text.encode(), "b.csv")
    result = quiet_cli(major_products, "import", path, "--default", "name=n", "--missing", "delete",
                       "--max-missing", "100%", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = _json(result)
    assert (summary["deleted"], summary["inserted"], summary["unchanged"]) == (0, 1, 100)
    assert sorted(r[0] for r in fetch_products(major_products)) == sorted([*skus, "\\."])


PROFILE = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DELIMITERS = [",", "\\", ".", ";", "\t"]
# Control characters but NUL (PostgreSQL text cannot hold it) and the rest, with what
# matters to CSV and to COPY drawn often.
NASTY = st.sampled_from(
    ["\\.", "\\", "\\N", ".", '"', '""', "\r", "\n", "\r\n", " ", "\x01", "\x1f", "\x7f",
     "\\.\n", "\n\\.\n", ",", ";", "\t", "é", "€", "NULL"]
)  # fmt: skip
FIELD = st.lists(
    st.one_of(NASTY, st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    max_size=6,
).map("".join)


@st.composite
def nasty_files(draw) -> tuple[str, str]:
    """(text, delimiter): a header sku[,c1...] and records written by csv.writer in any
    quoting, between raw lines that may be anything (\\. alone, stray quotes, ...)."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    ncols = draw(st.integers(1, 4))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE]))
    out = io.StringIO(newline="")
    header = ["sku", *(f"c{i}" for i in range(1, ncols))]
    out.write(delimiter.join(header) + newline)
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 3)) == 0:
            raw = draw(st.lists(st.one_of(NASTY, st.just(delimiter)), max_size=4))
            out.write("".join(raw) + newline)
            continue
        fields = draw(st.lists(FIELD, min_size=ncols, max_size=ncols))
        fields[0] = draw(st.sampled_from(["\\.", "\\", ".", "k"])) + fields[0]
        if quoting == csv.QUOTE_NONE:
            # Unquoted, as a sloppy exporter writes: anything may break the record.
            out.write(delimiter.join(fields) + newline)
        else:
            csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=newline
                       ).writerow(fields)  # fmt: skip
    return out.getvalue(), delimiter


@PROFILE
@given(file=nasty_files(), block=st.sampled_from([16, 64, 1 << 18]), trailing=st.booleans())
def test_what_postgresql_stages_is_what_python_parsed(
    major_dsn, tmp_path, monkeypatch, file, block, trailing
):
    """No record, however nasty, ends or changes the COPY stream: on PostgreSQL 15 (where
    \\. alone on a line ends COPY in CSV mode) and 18 (where it does not), the stage holds
    exactly the records Python's csv module reads, less the ones the reader rejected.
    Small blocks make the raw lines and whole blocks meet at every kind of boundary."""
    text, delimiter = file
    if not trailing:
        text = text.rstrip("\r\n")
    monkeypatch.setattr(source, "_BLOCK", block)
    path = tmp_path / "n.csv"
    path.write_bytes(text.encode("utf-8"))
    rejects: list = []

    class Collect:
        def write(self, batch):
            rejects.extend(batch)

    with Source(SourceOptions(str(path), delimiter=delimiter)) as src:
        ncols = len(src.header)
        with psycopg.connect(major_dsn) as conn:
            result = ImportResult(status="running", file=src.name)
            stage(
                Statements(conn),
                Staging(src, result, batch_size=3, max_errors=10**6, rejects=Collect()),
            )
            staged = [
                list(r[:-1]) for r in conn.execute("SELECT * FROM csvload_stage ORDER BY ord")
            ]
            conn.rollback()
    # conftest's csv_records, with the delimiter:
    oracle = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    records, last = [], 0
    for row in oracle:
        if row:
            records.append((last + 1, row))
        last = oracle.line_num
    records = records[1:]
    rejected = {r.line for r in rejects}
    assert staged == [row for line, row in records if line not in rejected]
    for line, row in records:  # and nothing was rejected without a reason
        if line in rejected:
            assert len(row) != ncols or not row[0].strip() or line == records[-1][0]
    assert result.rows_read == len(staged) + len(rejects)


# -- lines longer than the csv module can take ---------------------------------------------------


def _too_long(path: str, line: int) -> str:
    return (
        f"{path} line {line}: a line is longer than 64 MiB, the file cannot be read "
        "(is this really a CSV file?)"
    )


def test_a_70_mb_line_fails_with_one_line_and_changes_nothing(products, tmp_path):
    before = prefill(products)
    path = tmp_path / "big.csv"
    with open(path, "wb") as f:
        f.write(b"sku,name\nA-1,")
        piece = b"x" * (1 << 20)
        for _ in range(70):
            f.write(piece)
        f.write(b"\nA-2,y\n")
    result = quiet_cli(products, "import", str(path))
    assert result.exit_code == 1
    assert error_line(result) == "Error: " + _too_long(str(path), 2)
    assert table_checksum(products) == before


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"], ids=["bytes", "text"])
@pytest.mark.parametrize("where", ["header", "data"])
def test_every_read_path_stops_at_the_line_limit(tmp_path, monkeypatch, encoding, where):
    """The byte and the text readers both stop at the limit, in the header or after it,
    and so does a file without any line end."""
    monkeypatch.setattr(source, "_LINE_LIMIT", 1 << 20)
    long = "x" * (3 << 20)
    text = f"sku,{long}\nA,1\n" if where == "header" else f"sku,name\nA,1\nB,{long}\nC,2\n"
    path = write_file(tmp_path, text.encode(encoding))
    line = 1 if where == "header" else 3
    with pytest.raises(InputError) as e, Source(SourceOptions(path, encoding=encoding)) as src:
        for _ in src.chunks(10):
            pass
    assert str(e.value) == _too_long(path, line).replace("64 MiB", "1 MiB")
    assert "\n" not in str(e.value)


def test_a_line_under_the_limit_is_read_as_before(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "_LINE_LIMIT", 1 << 20)
    long = "x" * ((1 << 20) - 100)
    path = write_file(tmp_path, f"sku,name\nA,{long}\r\nB,\"a\r\n{long}\"\r\nC,2".encode())
    with Source(SourceOptions(path)) as src:
        rows = [r for chunk in src.chunks(1) for r in csv_records(
            "sku,name\n" + chunk.data.decode())]  # fmt: skip
    assert [fields for _, fields in rows] == [["A", long], ["B", f"a\r\n{long}"], ["C", "2"]]


def _limit_memory() -> None:
    gib = 1 << 30
    resource.setrlimit(resource.RLIMIT_AS, (gib, gib))


def test_dev_zero_fails_fast_in_bounded_memory(dsn):
    """NUL bytes without a line end, for ever: one line, well inside 1 GB of address space
    (unbounded growth hits the limit and fails the test), well inside the timeout."""
    done = subprocess.run(
        csvload_cmd("import", "/dev/zero", "--quiet", "--dsn", dsn),
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr == "Error: " + _too_long("/dev/zero", 1) + "\n"


# -- --encoding takes text encodings only -------------------------------------------------------


@pytest.mark.parametrize("name", ["hex", "rot13", "base64", "zlib", "uu", "quopri", "bz2"])
def test_an_encoding_that_is_not_a_text_encoding_is_a_usage_error(products, tmp_path, name):
    before = prefill(products)
    path = write_file(tmp_path, b"sku,name\nA,1\n")
    result = quiet_cli(products, "import", path, "--encoding", name)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for '--encoding': {name!r} is not a text encoding"
        " (try utf-8, latin-1, cp1252 or utf-16)"
    )
    assert table_checksum(products) == before


def test_an_unknown_encoding_is_still_a_usage_error(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\nA,1\n")
    result = quiet_cli(products, "import", path, "--encoding", "klingon")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--encoding': unknown encoding 'klingon'"
        " (try utf-8, latin-1, cp1252 or utf-16)"
    )


def test_the_library_refuses_a_codec_that_is_not_text(tmp_path):
    path = write_file(tmp_path, b"sku,name\nA,1\n")
    with pytest.raises(InputError, match="^'hex' is not a text encoding"):
        Source(SourceOptions(path, encoding="hex"))


# -- a database encoding that cannot store a character -----------------------------------------


@pytest.fixture
def latin1(major_server_dsn):
    """A DSN of a fresh LATIN1 database holding an empty products table; dropped after."""
    name = f"csvload_l1_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(major_server_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"
            " TEMPLATE template0"
        )
    dsn = conninfo.make_conninfo(major_server_dsn, dbname=name)
    try:
        with psycopg.connect(dsn) as conn:
            schema.create_products(conn)
        yield dsn
    finally:
        with psycopg.connect(major_server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


LATIN1_FILE = (
    "sku,name\n"  # 1
    "A-1,Crème brûlée\n"  # 2: LATIN1 stores these
    "A-2,10 €\n"  # 3: not the euro sign
    'A-3,"two\nlines ā"\n'  # 4-5: nor a macron, in a record the csv reader parses
    "A-4,plain\n"  # 6
)


@pytest.mark.parametrize("block", [16, 1 << 18], ids=["small-blocks", "one-block"])
def test_a_character_latin1_cannot_store_is_a_reject(latin1, tmp_path, monkeypatch, block):
    monkeypatch.setattr(source, "_BLOCK", block)
    path = write_file(tmp_path, LATIN1_FILE.encode())
    result = quiet_cli(latin1, "import", path, "--max-errors", "2", "--json")
    assert result.exit_code == 3, result.output
    assert (_json(result)["inserted"], _json(result)["rejected"]) == (2, 2)
    assert [r[:2] for r in fetch_products(latin1)] == [("A-1", "Crème brûlée"), ("A-4", "plain")]
    with open(path + ".rejects.csv", encoding="utf-8", newline="") as f:
        rejects = list(csv.reader(f))
    assert rejects[1:] == [
        ["3", "a character the database encoding LATIN1 cannot store: '€'", "A-2,10 €"],
        ["4", "a character the database encoding LATIN1 cannot store: 'ā'",
         'A-3,"two\nlines ā"'],
    ]  # fmt: skip


def test_one_bad_character_with_max_errors_1_imports_the_rest(latin1, tmp_path):
    path = write_file(tmp_path, "sku,name\nA-1,x\nA-2,10 €\nA-3,y\n".encode())
    result = quiet_cli(latin1, "import", path, "--max-errors", "1")
    assert result.exit_code == 3, result.output
    assert [r[0] for r in fetch_products(latin1)] == ["A-1", "A-3"]
    assert len(Path(path + ".rejects.csv").read_text(encoding="utf-8").splitlines()) == 2


def test_one_bad_character_with_max_errors_0_fails_and_changes_nothing(latin1, tmp_path):
    before = prefill(latin1)
    path = write_file(tmp_path, "sku,name\nA-1,x\nA-2,10 €\nA-3,y\n".encode())
    result = quiet_cli(latin1, "import", path)
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: 1 rows rejected, more than --max-errors 0; nothing was imported"
        f" (see {path}.rejects.csv)"
    )
    assert table_checksum(latin1) == before


def test_a_utf8_database_takes_every_character(major_products, tmp_path):
    path = write_file(tmp_path, LATIN1_FILE.encode())
    assert quiet_cli(major_products, "import", path).exit_code == 0
    assert len(fetch_products(major_products)) == 4
