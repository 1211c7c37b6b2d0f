"""Property tests: any table of text written as CSV comes back byte-exact; any bytes give a
clean import, clean rejections or a one-line CsvloadError, and what is staged for COPY is
exactly what Python's csv module parsed."""

from __future__ import annotations

import csv
import gzip
import io

import psycopg
import pytest
from helpers.db import fetch_products
from helpers.files import csv_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csvload.errors import CsvloadError
from csvload.load.loader import ImportOptions, import_source
from csvload.load.result import ImportResult
from csvload.load.staging import Staging, Statements, stage
from csvload.read.source import Source, SourceOptions

PROFILE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any Unicode but surrogates and NUL (which PostgreSQL text cannot hold), with the
# characters that matter to CSV drawn often.
CHARS = st.one_of(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    st.sampled_from(['"', ",", "\r", "\n", " ", ";", "\t", "\ufeff", "\\", "."]),
)
TEXT = st.text(CHARS, max_size=25)
BOOLEAN = st.sampled_from(["true", "FALSE", "t", "F", "1", "0", "yes", "No"])
DIALECTS = st.sampled_from(
    [
        (csv.QUOTE_MINIMAL, "\r\n"),  # the only terminator MINIMAL quotes both CR and LF for
        (csv.QUOTE_ALL, "\n"),
        (csv.QUOTE_ALL, "\r"),
        (csv.QUOTE_ALL, "\r\n"),
        (csv.QUOTE_NONNUMERIC, "\n"),
    ]
)


def _truncate(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE products")


@PROFILE
@given(
    rows=st.lists(st.tuples(TEXT, TEXT, TEXT, BOOLEAN), min_size=1, max_size=12),
    dialect=DIALECTS,
    final_newline=st.booleans(),
    bom=st.booleans(),
)
def test_any_table_of_text_round_trips_byte_exact(
    products, tmp_path, rows, dialect, final_newline, bom
):
    quoting, terminator = dialect
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=quoting, lineterminator=terminator)
    writer.writerow(["sku", "name", "description", "active"])
    # Unique, non-blank SKUs, case-insensitively too: a numbered prefix.
    table = [
        (f"k{i}-{sku}", name, desc, active) for i, (sku, name, desc, active) in enumerate(rows)
    ]
    writer.writerows(table)
    text = out.getvalue()
    if not final_newline:
        text = text[: -len(terminator)]
    path = tmp_path / "t.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    _truncate(products)
    with Source(SourceOptions(str(path))) as source, psycopg.connect(products) as conn:
        result = import_source(conn, source, ImportOptions(batch_size=5))
    assert (result.inserted, result.rejected) == (len(table), 0)
    expected = [(s, n, d, active.lower() in ("true", "t", "1", "yes")) for s, n, d, active in table]
    assert sorted(fetch_products(products)) == sorted(expected)


# -- fuzz -------------------------------------------------------------------------------------

SEED = (
    b"sku,name,description\n"
    b'a1,plain,"quoted, comma"\n'
    b'a2,"multi\r\nline","he said ""hi"""\n'
    b"a3,caf\xc3\xa9,\n"
    b",empty,sku\n"
    b"a5,too,many,fields\n"
    b'a6,"unclosed\n'
    b"a7,x,y\r"
)

MUTATION = st.tuples(
    st.sampled_from(["insert", "delete", "replace"]),
    st.integers(min_value=0, max_value=len(SEED)),
    st.binary(min_size=1, max_size=4)
    | st.sampled_from([b'"', b",", b"\r", b"\n", b"\x00", b"\xff", b"\\.", b'""']),
)


def _mutate(data: bytes, mutations) -> bytes:
    for kind, at, chunk in mutations:
        at = min(at, len(data))
        if kind == "insert":
            data = data[:at] + chunk + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(chunk) :]
        else:
            data = data[:at] + chunk + data[at + len(chunk) :]
    return data


FUZZ_INPUT = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"sku,name,description\n" + b),
    st.lists(MUTATION, min_size=1, max_size=6).map(lambda m: _mutate(SEED, m)),
)


@PROFILE
@given(
    data=FUZZ_INPUT,
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
    compress=st.sampled_from([None, "whole", "truncated"]),
)
def test_fuzz_never_crashes_and_stages_what_python_parsed(
    products, tmp_path, data, encoding, compress
):
    if compress:
        data = gzip.compress(data)
        if compress == "truncated":
            data = data[: len(data) // 2]
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    options = SourceOptions(str(path), encoding)
    rejects: list = []

    class Collect:
        def write(self, batch):
            rejects.extend(batch)

    try:
        with Source(options) as source, psycopg.connect(products) as conn:
            result = ImportResult(status="running", file=source.name)
            stage(
                Statements(conn),
                Staging(source, result, batch_size=3, max_errors=10**6, rejects=Collect()),
            )
            staged = [
                list(r[:-1]) for r in conn.execute("SELECT * FROM csvload_stage ORDER BY ord")
            ]
            conn.rollback()
            header_width = len(source.header)
    except CsvloadError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert all(r.reason and "\n" not in r.reason for r in rejects)
    assert result.rows_read == len(staged) + len(rejects)
    if compress or encoding != "utf-8":
        return  # the oracle below reads plain UTF-8
    text = data.decode("utf-8-sig", errors="surrogateescape")
    rejected = {r.line for r in rejects}
    expected = [row for line, row in csv_records(text) if line not in rejected]
    assert staged == expected
    assert all(len(row) == header_width for row in staged)


@pytest.mark.parametrize("delimiter", [";", "\t", "|", "."])
def test_other_delimiters_round_trip(products, tmp_path, delimiter):
    table = [("s1", 'x"y', f"a{delimiter}b"), ("s2", "line\r\nbreak", ""), ("s3", "\\.", " sp ")]
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerows([("sku", "name", "description"), *table])
    path = tmp_path / "d.csv"
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    options = SourceOptions(str(path), delimiter=delimiter)
    with Source(options) as source, psycopg.connect(products) as conn:
        import_source(conn, source, ImportOptions())
    assert sorted(fetch_products(products)) == [(s, n, d, True) for s, n, d in table]
