"""The public conformance corpus (tests/corpus, see its README and SOURCES): every case's
expected parse reaches PostgreSQL byte-exact, or the row is rejected with a reason.

Two checks per case.  The stage check runs csvload's own staging step (the COPY that the
import uses) and reads back every column of the staging table, so it proves that COPY
received exactly what Python parsed, whether a record was forwarded raw or re-quoted.  The
landing check runs `csvload import` with --map onto the product columns and compares the
products table.

Non-RFC-4180 quoting (a quote inside an unquoted field, text after a closing quote) is read
the way Python's csv module reads it, which is the parse CPython's own tests pin
(cpython-test_csv, rfc4180_valid=false); see the commons-csv test.csv case for one place
where another parser reads such a field differently.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from helpers.db import fetch_products
from helpers.files import CORPUS

from csvload.cli import main
from csvload.load.result import ImportResult
from csvload.load.staging import Staging, Statements, stage
from csvload.read.source import Source, SourceOptions


@dataclass
class Case:
    name: str
    data: bytes
    rows: list[list[str]]  # the expected data records, in file order, every column
    rejected: list[int] = field(default_factory=list)  # physical lines of rejected records
    encoding: str = "utf-8"
    sku: int = 0  # the columns mapped onto sku and name (description: the next unused one)
    name_col: int = 1


def _header(data: bytes, encoding: str) -> list[str]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    text = data.decode(encoding, errors="replace").lstrip("\ufeff")
    return next(csv.reader(io.StringIO(text, newline="")))


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _json_rows(path: Path) -> list[list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    objects = data["rows"] if isinstance(data, dict) else data
    return [list(o.values()) for o in objects]


def spectrum_cases() -> list[Case]:
    folder = CORPUS / "csv-spectrum"
    cases = []
    for csv_path in sorted((folder / "csvs").glob("*.csv")):
        if csv_path.stem == "location_coordinates":
            # Its JSON disagrees with its own CSV (SOURCES.md): the values come from the bytes.
            rows = [
                ["2095257564", "37\ufffd36'37.8\"N 121\ufffd2'17.9\"W", "Modesto", "Stanislaus"]
            ]
        else:
            rows = _json_rows(folder / "json" / f"{csv_path.stem}.json")
        cases.append(Case(f"spectrum-{csv_path.stem}", _read(csv_path), rows))
    return cases


def csv_parser_cases() -> list[Case]:
    folder = CORPUS / "csv-parser"
    fixtures = folder / "fixtures"
    return [
        Case(
            "csv-parser-escape-quotes",
            _read(fixtures / "escape-quotes.csv"),
            _json_rows(folder / "expected" / "escape-quotes.json"),
        ),
        Case(
            "csv-parser-quotes+newlines",
            _read(fixtures / "quotes+newlines.csv"),
            _json_rows(folder / "expected" / "quotes+newlines.json"),
        ),
        # csv-parser's lenient mode keeps ragged rows; csvload rejects them (line 3).
        Case(
            "csv-parser-less-columns",
            _read(fixtures / "strict-false-less-columns.csv"),
            [["1", "2", "3"], ["6", "7", "8"]],
            [3],
        ),
        Case(
            "csv-parser-more-columns",
            _read(fixtures / "strict-false-more-columns.csv"),
            [["1", "2", "3"], ["8", "9", "10"]],
            [3],
        ),
    ]


def commons_cases() -> list[Case]:
    folder = CORPUS / "commons-csv"
    bom = b"".join(_read(folder / "CSVFileParser" / "bom.csv").splitlines(keepends=True)[:6])
    japanese = _read(folder / "CSV-196" / "japanese.csv")
    assert b'"' not in japanese
    return [
        Case(
            "commons-test.csv",
            _read(folder / "CSVFileParser" / "test.csv"),
            # As test_rfc4180.txt, except the last field of line 7: commons-csv drops the
            # blank after the closing quote of `" l " `, Python's csv keeps it.
            [["a", "b", "c", "d"], [" e ", "f ", " g", "h "], [" i ", ' " j " ', ' " k "', " l  "]],
            # Comment lines are one field (csvload has no comments); lines 9, 11: empty sku.
            [2, 4, 6, 8, 9, 10, 11, 12, 16],
        ),
        Case(
            "commons-bom",
            bom,
            [line.split(",") for line in bom.decode("utf-8-sig").splitlines()[1:]],
        ),
        Case(
            "commons-japanese",
            japanese,
            [line.split(",") for line in japanese.decode().splitlines()[1:]],
        ),
        Case(
            "commons-psql",
            b"c1,c2,c3,c4,c5\n" + _read(folder / "CSV-290" / "psql.csv"),
            [
                ["1", "abc", "test line 1\ntest line 2", "", ""],  # psql's NULL is '' here
                ["2", "xyz", "\\b:\x08 \\t:\t \\n:\n \\r:\r", "a", "b"],
                ["3", "a", "b,c,d", '"quoted"', "e"],
            ],
        ),
    ]


def _expected(name: str) -> list[list[str]]:
    return json.loads((CORPUS / "csvkit" / "expected" / name).read_text("utf-8"))["records"][1:]


def csvkit_cases() -> list[Case]:
    ex = CORPUS / "csvkit" / "examples"
    mac = _expected("mac_newlines.json")
    mac[1][0] = mac[1][0].replace("\n", "\r")  # SOURCES.md: the CR is kept byte-exact
    return [
        Case("csvkit-bad", _read(ex / "bad.csv"), [["0", "mixed types.... uh oh", "17"]], [2, 3]),
        # Column a is empty: map b (the literal "NA") onto sku instead.
        Case(
            "csvkit-blanks", _read(ex / "blanks.csv"), _expected("blanks.json"), sku=1, name_col=0
        ),
        Case("csvkit-dummy", _read(ex / "dummy.csv"), [["1", "2", "3"]]),
        Case("csvkit-dummy-gz", _read(ex / "dummy.csv.gz"), [["1", "2", "3"]]),
        Case("csvkit-mac-newlines", _read(ex / "mac_newlines.csv"), mac),
        Case("csvkit-null-byte", _read(ex / "null_byte.csv"), [], [2]),
        Case(
            "csvkit-latin1",
            _read(ex / "test_latin1.csv"),
            _expected("test_latin1.json"),
            encoding="latin-1",
        ),
        # Read as UTF-8, the 0xA9 byte is no text: the record is rejected, never mojibake.
        Case("csvkit-latin1-as-utf8", _read(ex / "test_latin1.csv"), [["1", "2", "3"]], [3]),
        Case(
            "csvkit-utf16-le",
            _read(ex / "test_utf16_little.csv"),
            [["1", "2", "3"], ["4", "5", "ʤ"]],
            encoding="utf-16",
        ),
        Case("csvkit-utf8-bom", _read(ex / "test_utf8_bom.csv"), _expected("test_utf8_bom.json")),
    ]


def pgloader_cases() -> list[Case]:
    data = _read(CORPUS / "pgloader" / "inline" / "csv-keep-extra-blanks.data.csv")
    out = (CORPUS / "pgloader" / "regress-expected" / "csv-keep-extra-blanks.out").read_text()
    rows = []
    for line in out.splitlines():
        _, label, value, comment = line.split("\t")
        rows.append([label, "" if value == "\\N" else value, comment])  # SOURCES.md: '' not NULL
    # pgloader refuses the last record; Python's csv reads the blank before the quote as
    # part of an unquoted field, and that is what is stored.
    rows.append(["keep extra blanks", "  test string  ", ' "should be an error"'])
    return [Case("pgloader-keep-extra-blanks", b"c1,c2,c3\n" + data, rows)]


def rust_csv_cases() -> list[Case]:
    head = b"".join(
        _read(CORPUS / "rust-csv" / "examples" / "data" / "uspop-latin1.csv").splitlines(
            keepends=True
        )[:11]
    )
    text = head.decode("latin-1")
    rows = list(csv.reader(io.StringIO(text, newline="")))[1:]  # no stated parse: input only
    return [Case("rust-csv-uspop-latin1", head, rows, encoding="latin-1")]


def cpython_cases() -> list[Case]:
    vectors = json.loads((CORPUS / "cpython-test_csv" / "vectors.json").read_text("utf-8"))
    cases = []
    for n, vector in enumerate(vectors["vectors"]):
        text, rows = vector["input"], [list(r) for r in vector["expected"]]
        if len(rows[0]) == 1:
            # One column cannot hold both sku and name: add a second one after each record.
            # Every one-column input is a single line that ends outside any quote.
            assert len(rows) == 1 and "\n" not in text
            text += ",x"
            rows = [rows[0] + ["x"]]
        width = len(rows[0])
        header = ",".join(f"c{i + 1}" for i in range(width))
        skus = [i for i, value in enumerate(rows[0]) if value]
        sku = skus[0] if skus else 0
        name_col = 1 if sku == 0 else 0
        rejected = []
        for lineno, row in zip(_record_lines(text), list(rows), strict=True):
            if len(row) != width or "\x00" in "".join(row) or not row[sku]:
                rejected.append(lineno)
                rows.remove(row)
        for ending in ("\n", "\r\n", ""):
            data = (header + "\n" + text + ending).encode()
            label = {"\n": "lf", "\r\n": "crlf", "": "no-eol"}[ending]
            cases.append(
                Case(f"cpython-{n}-{vector['test']}-{label}", data, rows, rejected, sku=sku,
                     name_col=name_col)
            )  # fmt: skip
    return cases


def _record_lines(text: str) -> list[int]:
    """The physical line (in the file, after the header) each record of text starts on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    starts, last = [], 0
    for _ in reader:
        starts.append(last + 2)
        last = reader.line_num
    return starts


CASES = (
    spectrum_cases()
    + csv_parser_cases()
    + commons_cases()
    + csvkit_cases()
    + pgloader_cases()
    + rust_csv_cases()
    + cpython_cases()
)


def _mapping(case: Case) -> tuple[tuple[str, str], ...]:
    header = [h.strip() for h in _header(case.data, case.encoding)]
    rest = [i for i in range(len(header)) if i not in (case.sku, case.name_col)]
    pairs = [(header[case.sku], "sku"), (header[case.name_col], "name")]
    if rest:
        pairs.append((header[rest[0]], "description"))
    return tuple(pairs)


class _Collect:
    def __init__(self):
        self.rejects = []

    def write(self, rejects):
        self.rejects.extend(rejects)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case_stages_byte_exact_or_rejects(products, tmp_path, case):
    path = tmp_path / "case.csv"
    path.write_bytes(case.data)
    mapping = _mapping(case)

    # Stage check: every column, as PostgreSQL's COPY parsed it.
    collected = _Collect()
    options = SourceOptions(str(path), case.encoding, ",", mapping)
    with Source(options) as source, psycopg.connect(products) as conn:
        result = ImportResult(status="running", file=source.name)
        stage(Statements(conn), Staging(source, result, max_errors=10**6, rejects=collected))
        staged = conn.execute("SELECT * FROM csvload_stage ORDER BY ord").fetchall()
        conn.rollback()
    assert [list(row[:-1]) for row in staged] == case.rows
    assert [r.line for r in collected.rejects] == case.rejected
    assert all(r.reason and "\n" not in r.reason for r in collected.rejects)

    # Landing check: the import, mapped onto products.
    args = ["import", str(path), "--encoding", case.encoding, "--json", "--quiet"]
    for header, target in mapping:
        args += ["--map", f"{header}={target}"]
    run = CliRunner().invoke(
        main, [*args, "--max-errors", "1000", "--dsn", products], catch_exceptions=False
    )
    assert run.exit_code == (3 if case.rejected else 0), run.stderr
    summary = json.loads(run.stdout)
    assert summary["rejected"] == len(case.rejected)
    description = [i for i, (_, t) in enumerate(mapping) if t == "description"]
    latest: dict[str, tuple] = {}
    for row in case.rows:
        desc = row[_column(case, mapping, "description")] if description else None
        latest[row[case.sku].lower()] = (row[case.sku], row[case.name_col], desc, True)
    assert sorted(fetch_products(products)) == sorted(latest.values())


def _column(case: Case, mapping, target: str) -> int:
    header = [h.strip() for h in _header(case.data, case.encoding)]
    return header.index(next(h for h, t in mapping if t == target))
