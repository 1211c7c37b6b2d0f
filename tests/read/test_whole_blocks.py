"""Blocks forwarded to COPY whole (source._WholeBlocks): which blocks qualify, and that a
file mixing whole blocks with blocks the csv reader parses record by record stages exactly
what Python's csv module reads, with every bad record rejected at its own line."""

from __future__ import annotations

import io
import random

import psycopg
import pytest
from helpers.files import csv_records

from csvload.load.result import ImportResult
from csvload.load.staging import Staging, Statements, stage
from csvload.read.source import Source, SourceOptions
from csvload.read.wholeblocks import WholeBlocks as _WholeBlocks

HEADER = "name,sku,description,active\n"  # sku, the key, is column 1
BOOLEANS = ("true", "t", "1", "yes", "false", "f", "0", "no")


def forwarded(lines: str, encoding: str = "utf-8") -> bytes | None:
    """What goes to COPY for the first data block of a file holding lines (None: the block
    goes to the csv reader).  UTF-8 blocks are cut from bytes; UTF-16 ones read as text."""
    data = (HEADER + lines).encode(encoding)
    with Source(SourceOptions("-", encoding=encoding), stdin=io.BytesIO(data)) as source:
        blocks = _WholeBlocks(4, [1], ",", source.encoding == "utf-8-sig")
        return blocks.copy_data(next(source._raw_blocks))


ENCODINGS = pytest.mark.parametrize("encoding", ["utf-8", "utf-16"], ids=["bytes", "text"])


@ENCODINGS
@pytest.mark.parametrize(
    "text",
    [
        "n,S-1,d,true\n",
        'n,S-1,"a, ""quoted"" field",FALSE\n',
        "n, S-1 ,,  Yes \n",  # sku and active with spaces around: strip() keeps them
        'n,"  x",d,0\n',
        'n,"""",d,no\n',  # a sku that is one quote character
        "n,S-1,d,t\r\nm,S-2,e,f\r\n",  # CRLF throughout
        "ü,ß-1,日本,1\n",
        "n,日本,d,1\n",  # no ASCII in the sku: the bytes pattern defers to the text one
        # Values are the server's to check against their columns' types, not the reader's:
        "n,S-1,d,on\n",
        "n,S-1,d,maybe\n",
        'n,S-1,d,"t"\n',
    ],
)
def test_well_formed_blocks_go_whole(text, encoding):
    assert forwarded(text, encoding) == text.replace("\r\n", "\n").encode()


@ENCODINGS
@pytest.mark.parametrize(
    "text",
    [
        "n,,d,t\n",  # empty sku
        "n,   ,d,t\n",  # blank sku
        'n," ",d,t\n',
        'n,"",d,t\n',
        "n,\u00a0\u3000,d,t\n",  # Unicode whitespace is blank too
        "n,\x1f,d,t\n",  # so is the unit separator, for str.strip()
        "n,S-1,d\n",  # too few fields
        "n,S-1,d,t,x\n",  # too many
        'n,S"1,d,t\n',  # a quote inside an unquoted field
        'n,"S"1,d,t\n',  # text after a closing quote
        'n,""",d,t\n',  # an escaped quote and no closing one
        'n,"S\n1",d,t\n',  # a record over two lines
        "n,S-1,d,t\n\nm,S-2,d,f\n",  # a blank line
        "n,S-1,d,t\r\nm,S-2,d,f\n",  # mixed line ends
        "n,S-1,d\r,t\n",  # a bare CR
        "n,S-1,d,t",  # no final line end
        "n,S-1,d\x00,t\n",  # NUL
    ],
)
def test_other_blocks_go_to_the_reader(text, encoding):
    assert forwarded(text, encoding) is None


def test_undecodable_bytes_go_to_the_reader():
    data = (HEADER + "n,S-1,d,t\n").encode() + b"n,S-\xff,d,t\n"
    with Source(SourceOptions("-"), stdin=io.BytesIO(data)) as source:
        blocks = _WholeBlocks(4, [1], ",", True)
        assert blocks.copy_data(next(source._raw_blocks)) is None


def test_tab_delimiter_blank_sku():
    def tab(lines: str) -> bytes | None:
        data = ("sku\tname\n" + lines).encode()
        with Source(SourceOptions("-", delimiter="\t"), stdin=io.BytesIO(data)) as source:
            return _WholeBlocks(2, [0], "\t", True).copy_data(next(source._raw_blocks))

    assert tab("S-1\tn\n") == b"S-1\tn\n"
    assert tab(" \tn\n") is None
    assert tab("\tn\n") is None


def _mixed_file(newline: str, seed: int) -> tuple[str, set[int]]:
    """About 2 MB of well-formed records, with multi-line records, blank lines and bad
    records in two stretches of it (so blocks of both kinds follow each other, and records
    straddle block ends).  Returns the text and the lines of the bad records."""
    rng = random.Random(seed)
    spellings = [*BOOLEANS, " Yes ", "TRUE", "No"]
    lines = ["name,sku,description,active"]
    bad: set[int] = set()
    line = 1
    for i in range(20_000):
        # The odd records come in two stretches, so that most blocks hold none.
        roll = rng.random() * 10 if 5_000 <= i < 6_000 or 12_000 <= i < 12_300 else 1 + 4 * (i % 2)
        name = f"Name {i} " + "x" * rng.randrange(40, 160)
        active = rng.choice(spellings)
        if roll < 0.2:
            record = f"{name},,empty sku,{active}"  # rejected
            bad.add(line + 1)
        elif roll < 0.4:
            record = f"{name},S-{i},bad active,maybe"  # staged: the server rejects it later
        elif roll < 0.6:
            record = f"{name},S-{i},too,many,fields"  # rejected
            bad.add(line + 1)
        elif roll < 0.9:
            record = f'{name},S-{i},"two{newline}lines",{active}'
        elif roll < 1.1:
            record = f'"{name}",S-{i},"a ""quoted"", field",{active}'
        elif roll < 1.2:
            lines.append("")
            line += 1
            record = f"{name},S-{i},after a blank line,{active}"
        else:
            record = f"{name},S-{i},plain,{active}"
        lines.append(record)
        line += record.count(newline) + 1
    return newline.join(lines) + newline, bad


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_mixed_file_stages_what_python_reads(products, tmp_path, newline, monkeypatch):
    text, bad = _mixed_file(newline, seed=len(newline))
    kinds = {"whole": 0, "reader": 0}
    copy_data = _WholeBlocks.copy_data

    def counted(self, block):
        data = copy_data(self, block)
        kinds["whole" if data is not None else "reader"] += 1
        return data

    monkeypatch.setattr(_WholeBlocks, "copy_data", counted)
    path = tmp_path / "mixed.csv"
    path.write_bytes(text.encode())
    result = ImportResult(status="running", file=str(path))

    class Collect:
        rejects: list = []

        def write(self, rejects):
            self.rejects.extend(rejects)

    collected = Collect()
    with Source(SourceOptions(str(path))) as source, psycopg.connect(products) as conn:
        stage(Statements(conn), Staging(source, result, max_errors=10**6, rejects=collected))
        staged = conn.execute(
            "SELECT c1, c2, c3, c4 FROM csvload_stage ORDER BY ord"
        ).fetchall()
        conn.rollback()

    expected = [
        (fields[0], fields[1], fields[2], fields[3])
        for start, fields in csv_records(text)
        if start not in bad
    ]
    assert staged == expected
    assert sorted(r.line for r in collected.rejects) == sorted(bad)
    assert result.rows_read == len(expected) + len(bad)
    assert kinds["whole"] >= 5 and kinds["reader"] >= 2, kinds
