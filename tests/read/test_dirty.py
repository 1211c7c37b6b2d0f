"""Issue 4, dirty files, end to end through the CLI: rejected rows and the rejects file,
--max-errors, --dry-run, the input forms, --map, and the file-level errors."""

from __future__ import annotations

import gzip
import json
import os
import stat
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from helpers.cli import error_line, quiet_cli
from helpers.db import fetch_products, prefill, table_checksum
from helpers.files import write_file

from csvload.cli import main
from csvload.read.source import FIELD_LIMIT, Source, SourceOptions

ACTIVE_HINT = "(use true/false, t/f, 1/0 or yes/no)"


# -- rejected rows and the rejects file ------------------------------------------------------

DIRTY = (
    b"sku,name,description,active\n"  # 1
    b"a1,good,d1,true\n"  # 2
    b"a2,too,few\n"  # 3
    b",no sku,d,yes\n"  # 4
    b"a4,bad \xff byte,d,1\n"  # 5
    b"a5,nul \x00 here,d,0\n"  # 6
    b"a6,x,d,maybe\n"  # 7
    b'a7,"two\nlines",d,no\n'  # 8-9
    b"a8;semi;colons;t\n"  # 10
    b'a9,"multi\r\nline",extra,field,t\n'  # 11-12
    b"\n"  # 13
    b"a10,after blank,d,YES\n"  # 14
    b"a11,x,d,\n"  # 15
    b'a12,"never closed,d,t\n'  # 16
    b"tail,line,d,f\n"  # 17
)

DIRTY_REJECTS = (
    b"line,reason,record\r\n"
    b'3,"3 fields, header has 4","a2,too,few"\r\n'
    b'4,empty sku,",no sku,d,yes"\r\n'
    b'5,bytes that are not valid utf-8 (check --encoding),"a4,bad \xff byte,d,1"\r\n'
    b'6,NUL byte in record,"a5,nul \x00 here,d,0"\r\n'
    b'10,"1 fields, header has 4 (check --delimiter)",a8;semi;colons;t\r\n'
    b'11,"5 fields, header has 4","a9,""multi\r\nline"",extra,field,t"\r\n'
    b"16,a quoted field is never closed before the end of the file,"
    b'"a12,""never closed,d,t\ntail,line,d,f"\r\n'
    # Values are checked by the server against their columns' types, after the reader:
    # those rejects follow the reader's.
    b"7,\"active is 'maybe', not a boolean " + ACTIVE_HINT.encode() + b'","a6,x,d,maybe"\r\n'
)

DIRTY_GOOD = [
    ("a1", "good", "d1", True),
    ("a10", "after blank", "d", True),
    ("a11", "x", "d", True),  # an empty active is "no value": the column default, true
    ("a7", "two\nlines", "d", False),
]


def test_each_reason_line_and_the_rejects_file_byte_exact(products, tmp_path):
    path = write_file(tmp_path, DIRTY)
    result = quiet_cli(products, "import", path, "--max-errors", "9", "--json", "--quiet")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["rejected"], summary["inserted"]) == ("succeeded", 8, 4)
    assert summary["rows_read"] == 12
    assert summary["rejects_file"] == path + ".rejects.csv"
    assert Path(path + ".rejects.csv").read_bytes() == DIRTY_REJECTS
    assert fetch_products(products) == DIRTY_GOOD


def test_too_many_rejects_rolls_back_exits_1_and_still_writes_rejects(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, DIRTY)
    result = quiet_cli(products, "import", path, "--max-errors", "7")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: 8 rows rejected, more than --max-errors 7; nothing was imported"
        f" (see {path}.rejects.csv)"
    )
    assert table_checksum(products) == before
    assert Path(path + ".rejects.csv").read_bytes() == DIRTY_REJECTS


def test_default_max_errors_is_zero(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, b"sku,name\na,1\n,2\nb,3\n")
    result = quiet_cli(products, "import", path)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: 1 rows rejected, more than --max-errors 0; nothing was imported"
        f" (see {path}.rejects.csv)"
    )
    assert table_checksum(products) == before
    assert Path(path + ".rejects.csv").read_bytes() == b'line,reason,record\r\n3,empty sku,",2"\r\n'


def test_exactly_max_errors_imports_good_rows_and_exits_3(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\na,1\n,2\nb,3\n")
    result = quiet_cli(products, "import", path, "--max-errors", "1", "--quiet")
    assert result.exit_code == 3
    assert fetch_products(products) == [("a", "1", None, True), ("b", "3", None, True)]


def test_json_of_a_failed_import_still_gives_rejected_and_rejects_file(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\na,1\n,2\nb,3\n")
    result = quiet_cli(products, "import", path, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["rejected"]) == ("failed", 1)
    assert summary["rejects_file"] == path + ".rejects.csv"


def test_no_rejects_no_rejects_file_and_no_temp_files(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\na,1\n")
    result = quiet_cli(products, "import", path, "--json", "--quiet")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert (summary["rejected"], summary["rejects_file"]) == (0, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]


def test_rejects_option_puts_the_file_where_asked(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\n,1\n")
    target = tmp_path / "out" / "bad-rows.csv"
    target.parent.mkdir()
    result = quiet_cli(products, "import", path, "--rejects", str(target), "--max-errors", "1",
                       "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["rejects_file"] == str(target)
    assert target.read_bytes() == b'line,reason,record\r\n2,empty sku,",1"\r\n'
    assert not Path(path + ".rejects.csv").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["bad-rows.csv"]


def test_stdin_rejects_go_to_the_current_directory(products, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = b"sku,name\nfrom-stdin,x\n,y\n"
    result = quiet_cli(products, "import", "-", "--max-errors", "1", "--json", "--quiet",
                       input=data)
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["rejects_file"] == str(tmp_path / "stdin.rejects.csv")
    assert (tmp_path / "stdin.rejects.csv").read_bytes() == (
        b'line,reason,record\r\n3,empty sku,",y"\r\n'
    )
    assert fetch_products(products) == [("from-stdin", "x", None, True)]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_rejects_file_mode_follows_umask(products, tmp_path, umask, mode):
    path = write_file(tmp_path, b"sku,name\n,1\n")
    old = os.umask(umask)
    try:
        result = quiet_cli(products, "import", path, "--max-errors", "1", "--quiet")
    finally:
        os.umask(old)
    assert result.exit_code == 3
    assert stat.S_IMODE(os.stat(path + ".rejects.csv").st_mode) == mode


def test_a_symlink_at_the_rejects_path_is_refused_neither_followed_nor_replaced(
    products, tmp_path
):
    path = write_file(tmp_path, b"sku,name\n,1\n")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, path + ".rejects.csv")
    assert quiet_cli(products, "import", path, "--max-errors", "1", "--quiet").exit_code == 2
    assert victim.read_text() == "precious"
    assert os.readlink(path + ".rejects.csv") == str(victim)


def test_unwritable_rejects_location_is_a_one_line_error(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, b"sku,name\n,1\n")
    result = quiet_cli(products, "import", path, "--rejects", str(tmp_path / "no" / "dir.csv"))
    assert result.exit_code == 1
    assert error_line(result).startswith(f"Error: {tmp_path / 'no' / 'dir.csv'}: cannot write")
    assert table_checksum(products) == before


def test_field_size_limit(products, tmp_path):
    big = b"x" * FIELD_LIMIT
    too_big = b"y" * (FIELD_LIMIT + 1)
    path = write_file(
        tmp_path,
        b"sku,name\nmax," + big + b'\nover,"' + too_big + b'"\nmid,' + b"z" * 200_000 + b"\n",
    )
    result = quiet_cli(products, "import", path, "--max-errors", "1", "--quiet")
    assert result.exit_code == 3
    with psycopg.connect(products) as conn:
        lengths = conn.execute("SELECT sku, length(name) FROM products ORDER BY sku").fetchall()
    assert lengths == [("max", FIELD_LIMIT), ("mid", 200_000)]
    rejects = Path(path + ".rejects.csv").read_bytes()
    assert rejects.startswith(
        b"line,reason,record\r\n3,a field is longer than 16777216 characters,"
        b'"over,""' + too_big + b'"""\r\n'
    )


def test_field_past_the_csv_hard_limit_refuses_the_file(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, b'sku,name\na,b\nc,"' + b"q" * (4 * FIELD_LIMIT + 10) + b'"\n')
    result = quiet_cli(products, "import", path)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {path} line 3: a field is longer than 67108864 characters, the file cannot "
        "be read past it (look for an unclosed quote)"
    )
    assert table_checksum(products) == before


# -- --dry-run ------------------------------------------------------------------------------


def test_dry_run_reports_every_count_including_rejects_and_changes_nothing(products, tmp_path):
    first = write_file(tmp_path, b"sku,name\nkeep,same\nold,before\n", "first.csv")
    assert quiet_cli(products, "import", first, "--quiet").exit_code == 0
    before = table_checksum(products)
    path = write_file(tmp_path, b"sku,name\nkeep,same\nold,after\nnew,x\n,empty\nnew,x2\n")
    result = quiet_cli(products, "import", path, "--dry-run", "--max-errors", "1", "--json",
                       "--quiet")
    assert result.exit_code == 3
    summary = json.loads(result.stdout)
    counts = {k: summary[k] for k in ("inserted", "updated", "unchanged", "duplicates", "rejected")}
    assert summary["status"] == "dry_run"
    assert counts == {"inserted": 1, "updated": 1, "unchanged": 1, "duplicates": 1, "rejected": 1}
    assert summary["rows_read"] == 5
    assert table_checksum(products) == before
    assert Path(path + ".rejects.csv").exists()


# -- input forms ----------------------------------------------------------------------------


def test_stdin(products):
    result = quiet_cli(products, "import", "-", "--quiet", input=b"sku,name\ns1,from stdin\n")
    assert result.exit_code == 0
    assert fetch_products(products) == [("s1", "from stdin", None, True)]


def test_gzip_is_detected_by_content_and_progress_counts_compressed_bytes(products, tmp_path):
    rows = "".join(f"sku-{i},name {i},{'description ' * 20}\n" for i in range(5000))
    data = gzip.compress(("sku,name,description\n" + rows).encode())
    path = write_file(tmp_path, data, "p.csv.gz")
    with Source(SourceOptions(path)) as source:
        done = [chunk.bytes_done for chunk in source.chunks(500)]
    # About 500 rows a chunk; a block forwarded whole (about 1,000 of these rows) is
    # never split.
    assert 5 <= len(done) <= 10
    assert done == sorted(done) and all(d <= len(data) for d in done)
    assert done[-1] == len(data) < len(rows)
    result = quiet_cli(products, "import", path, "--json", "--quiet")
    assert json.loads(result.stdout)["inserted"] == 5000
    # Detection is by magic bytes, not by name; stdin works too.
    plain = write_file(tmp_path, gzip.compress(b"sku,name\nz,gz on stdin\n"), "nosuffix.csv")
    assert quiet_cli(products, "import", "-", "--quiet",
                     input=Path(plain).read_bytes()).exit_code == 0
    assert ("z", "gz on stdin", None, True) in fetch_products(products)


@pytest.mark.parametrize(
    "mangle,line",
    [
        (lambda d: d[: len(d) // 2], None),  # truncated stream
        (lambda d: d[:10] + bytes(b ^ 0x55 for b in d[10:30]) + d[30:], None),  # corrupt
        (lambda d: d[:3] + b"\xff" + d[4:], 1),  # bad header flags
    ],
    ids=["truncated", "corrupt", "bad-header"],
)
def test_damaged_gzip_is_a_one_line_error(products, tmp_path, mangle, line):
    before = prefill(products)
    body = "".join(f"s{i},{i * 7919 % 1000}\n" for i in range(20000))
    path = write_file(tmp_path, mangle(gzip.compress(("sku,name\n" + body).encode())), "p.csv.gz")
    result = quiet_cli(products, "import", path)
    assert result.exit_code == 1
    message = error_line(result)
    assert message.startswith(f"Error: {path} line ")
    assert ": cannot read the input: " in message
    assert message.endswith("(is the file truncated or not really gzip?)")
    if line:
        assert message.startswith(f"Error: {path} line {line}: ")
    assert table_checksum(products) == before


@pytest.mark.parametrize(
    "data,encoding",
    [
        ("\ufeffsku,name\nb1,Grüße ✓\n".encode(), None),
        ("sku,name\nl1,Crème brûlée ©\n".encode("latin-1"), "latin-1"),
        ("sku,name\nw1,€ “quoted” – dash\n".encode("cp1252"), "cp1252"),
        ("sku,name\nu1,日本語 🚀\n".encode("utf-16"), "utf-16"),  # BOM, native order
        (b"\xfe\xff" + "sku,name\nu2,日本語 🚀\n".encode("utf-16-be"), "utf-16"),
    ],
    ids=["utf8-bom", "latin-1", "cp1252", "utf-16", "utf-16-be-bom"],
)
def test_encodings_store_the_right_text(products, tmp_path, data, encoding):
    path = write_file(tmp_path, data)
    args = ["--encoding", encoding] if encoding else []
    result = quiet_cli(products, "import", path, "--quiet", *args)
    assert result.exit_code == 0, result.stderr
    text = data.decode(encoding or "utf-8-sig").lstrip("\ufeff")
    sku, name = text.splitlines()[1].split(",")
    assert fetch_products(products) == [(sku, name, None, True)]


def test_latin1_bytes_read_as_utf8_are_rejected_never_stored(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\nok,plain\nl1,Cr\xe8me\n")
    result = quiet_cli(products, "import", path, "--max-errors", "1", "--quiet")
    assert result.exit_code == 3
    assert fetch_products(products) == [("ok", "plain", None, True)]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b'3,bytes that are not valid utf-8 (check --encoding),"l1,Cr\xe8me"\r\n'
    )


def test_latin1_rejects_file_keeps_latin1_bytes(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\n\xe91,caf\xe9\n,caf\xe9 \xa9\n")
    result = quiet_cli(products, "import", path, "--encoding", "latin-1", "--max-errors", "1")
    assert result.exit_code == 3
    assert fetch_products(products) == [("é1", "café", None, True)]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b'line,reason,record\r\n3,empty sku,",caf\xe9 \xa9"\r\n'
    )


def test_utf8_file_given_as_latin1_is_refused(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, "sku,name\na,plain\nb,Crème\n".encode())
    for encoding in ("latin-1", "cp1252"):
        result = quiet_cli(products, "import", path, "--encoding", encoding)
        assert result.exit_code == 1
        assert error_line(result) == (
            f"Error: {path} line 3: text is valid UTF-8 but --encoding {encoding} was given"
            " (use --encoding utf-8)"
        )
    assert table_checksum(products) == before


def test_utf16_file_read_as_utf8_is_a_clear_error(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, "sku,name\na,b\n".encode("utf-16"))
    result = quiet_cli(products, "import", path)
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {path} line 1: header has bytes that are not valid utf-8 (check --encoding)"
    )
    assert table_checksum(products) == before


def test_cp1252_undefined_byte_is_rejected(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\na,\x80 ok\nb,\x81 undefined\n")
    result = quiet_cli(products, "import", path, "--encoding", "cp1252", "--max-errors", "1")
    assert result.exit_code == 3
    assert fetch_products(products) == [("a", "€ ok", None, True)]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n"
        b'3,bytes that are not valid cp1252 (check --encoding),"b,\x81 undefined"\r\n'
    )


def test_undecodable_utf16_is_rejected_and_written_back_byte_exact(products, tmp_path):
    good = "sku,name\nok,fine\n".encode("utf-16")
    lone = "x,".encode("utf-16-le") + b"\x00\xd8" + "y\n".encode("utf-16-le")  # lone surrogate
    odd = "z,w".encode("utf-16-le") + b"\x41"  # an odd trailing byte
    path = write_file(tmp_path, good + lone + odd)
    result = quiet_cli(products, "import", path, "--encoding", "utf-16", "--max-errors", "2")
    assert result.exit_code == 3, result.stderr
    assert fetch_products(products) == [("ok", "fine", None, True)]
    reason = b"bytes that are not valid utf-16 (check --encoding)"
    expected = "line,reason,record\r\n".encode("utf-16")
    expected += f'3,{reason.decode()},"x,'.encode("utf-16-le") + b"\x00\xd8"
    expected += 'y"\r\n'.encode("utf-16-le")
    expected += f'4,{reason.decode()},"z,w'.encode("utf-16-le") + b"\x41"
    expected += '"\r\n'.encode("utf-16-le")
    assert Path(path + ".rejects.csv").read_bytes() == expected


@pytest.mark.parametrize(
    "data,args",
    [
        (b"sku;name;description\na;b, with comma;c\n", ["--delimiter", ";"]),
        (b"sku;name;description\na;b, with comma;c\n", ["--delimiter", "auto"]),
        (b"sku\tname\tdescription\na\tb, with comma\tc\n", ["--delimiter", "auto"]),
        (b"sku|name|description\na|b, with comma|c\n", ["--delimiter", "auto"]),
    ],
    ids=["semicolon", "auto-semicolon", "auto-tab", "auto-pipe"],
)
def test_delimiters(products, tmp_path, data, args):
    path = write_file(tmp_path, data)
    assert quiet_cli(products, "import", path, "--quiet", *args).exit_code == 0
    assert fetch_products(products) == [("a", "b, with comma", "c", True)]


def test_delimiter_auto_that_cannot_decide_is_a_clear_error(products, tmp_path):
    path = write_file(tmp_path, b"skuname\nab\n")
    result = quiet_cli(products, "import", path, "--delimiter", "auto")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {path}: cannot detect the delimiter (give --delimiter explicitly)"
    )


@pytest.mark.parametrize("delimiter", ['"', "\n"], ids=["quote", "newline"])
def test_unusable_delimiter_is_refused(products, tmp_path, delimiter):
    path = write_file(tmp_path, b"sku,name\na,b\n")
    before = table_checksum(products)
    result = quiet_cli(products, "import", path, "--delimiter", delimiter)
    assert result.exit_code == 2  # a usage error, caught while parsing options
    assert (
        "Invalid value for '--delimiter': must be one character other than a quote or a"
        " line break, or 'auto'" in result.stderr
    )
    assert table_checksum(products) == before


def test_rejects_path_naming_the_input_is_refused(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\na,b\n")
    result = quiet_cli(products, "import", path, "--rejects", path)
    assert result.exit_code == 2
    assert "Invalid value for --rejects: must not be the input file" in result.stderr
    assert Path(path).read_bytes() == b"sku,name\na,b\n"


def test_dot_delimiter_with_a_copy_end_marker_lookalike(products, tmp_path):
    # Up to PostgreSQL 17, "\." alone on a line ends COPY even in CSV mode, dropping the
    # rows after it: such a row must not be forwarded raw.  (18 no longer does that.)
    path = write_file(tmp_path, b"sku.name\na.1\n\\.\nb.2\n")
    assert quiet_cli(products, "import", path, "--delimiter", ".", "--quiet").exit_code == 0
    assert fetch_products(products) == [
        ("\\", "", None, True),
        ("a", "1", None, True),
        ("b", "2", None, True),
    ]


def test_unclosed_quote_at_eof_is_rejected_whatever_the_quote_count(products, tmp_path):
    # Two quotes, one of them literal: the quoted field opened after it never closes.
    path = write_file(tmp_path, b'sku,name,description\nok,1,2\nx,a"b,"c\nd,e,f\n')
    result = quiet_cli(products, "import", path, "--max-errors", "1")
    assert result.exit_code == 3
    assert fetch_products(products) == [("ok", "1", "2", True)]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b"line,reason,record\r\n3,a quoted field is never closed before the end of the file,"
        b'"x,a""b,""c\nd,e,f"\r\n'
    )


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings_quoted_newlines_blank_lines_and_no_final_newline(products, tmp_path, eol):
    lines = [
        b"sku,name,description",  # 1
        b"",  # 2
        b'q1,"inner' + eol + b'break","x"',  # 3-4
        b",bad,row",  # 5
        b"",  # 6
        b"",  # 7
        b"last,no,newline",  # 8
    ]
    path = write_file(tmp_path, eol.join(lines))
    result = quiet_cli(products, "import", path, "--max-errors", "1", "--quiet")
    assert result.exit_code == 3
    assert fetch_products(products) == [
        ("last", "no", "newline", True),
        ("q1", "inner" + eol.decode() + "break", "x", True),
    ]
    assert Path(path + ".rejects.csv").read_bytes() == (
        b'line,reason,record\r\n5,empty sku,",bad,row"\r\n'
    )


def test_mixed_line_endings_count_physical_lines(products, tmp_path):
    path = write_file(tmp_path, b"sku,name\r\na,1\rb,2\n,3\r\n")
    result = quiet_cli(products, "import", path, "--max-errors", "1", "--quiet")
    assert result.exit_code == 3
    assert Path(path + ".rejects.csv").read_bytes() == (
        b'line,reason,record\r\n4,empty sku,",3"\r\n'
    )


def test_crlf_straddling_the_read_buffer_is_one_line_ending(products, tmp_path):
    # The text layer reads in 8 KiB chunks: put a CRLF across each possible boundary.
    rows = b"".join(b"s%d,%s\r\n" % (i, b"n" * (8180 + i)) for i in range(24))
    path = write_file(tmp_path, b"sku,name\r\n" + rows + b",x\r\n")
    result = quiet_cli(products, "import", path, "--max-errors", "1", "--json", "--quiet")
    assert json.loads(result.stdout)["inserted"] == 24
    assert Path(path + ".rejects.csv").read_bytes().startswith(b"line,reason,record\r\n26,")


def test_blank_lines_before_the_header(products, tmp_path):
    path = write_file(tmp_path, b"\n\r\nsku,name\n,x\n")
    assert quiet_cli(products, "import", path).exit_code == 1
    assert Path(path + ".rejects.csv").read_bytes() == b'line,reason,record\r\n4,empty sku,",x"\r\n'


# -- --map ----------------------------------------------------------------------------------


def test_map_renames_headers(products, tmp_path):
    path = write_file(tmp_path, b"Product Code,Product Name,Notes\nP-1,Chair,wooden\n")
    result = quiet_cli(
        products, "import", path, "--quiet",
        "--map", "Product Code=sku", "--map", "product name=name", "--map", "Notes=description",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert fetch_products(products) == [("P-1", "Chair", "wooden", True)]


def test_map_to_an_unknown_field_is_a_usage_error(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, b"Code,sku,name\nP-1,s,Chair\n")
    result = quiet_cli(products, "import", path, "--map", "Code=price")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --map Code=price: products has no such column 'price' (writable columns:"
        " sku, name, description, active, created_at, updated_at)\n"
    )
    assert table_checksum(products) == before


# -- file-level errors ----------------------------------------------------------------------


BOGUS_DSN = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.csv", "{p}: no such file"),
        (lambda d: d, "{p}: is a directory, not a CSV file"),
        (lambda d: _write(d / "e.csv", b""), "{p}: empty file, no header line"),
        (lambda d: _write(d / "e.csv", b"\n\r\n\n"), "{p}: empty file, no header line"),
        (lambda d: _write(d / "e.csv", b"\xef\xbb\xbf"), "{p}: empty file, no header line"),
        (
            lambda d: _write(d / "h.csv", b"name,description\nx,y\n"),
            "{p} line 1: no sku column in the header (found 'name', 'description'; "
            "use --map 'Your Column=sku')",
        ),
        (
            lambda d: _write(d / "q.csv", b'sku,"name\na,b\n'),
            "{p} line 1: the header opens a quote that is never closed",
        ),
    ],
    ids=["missing", "directory", "empty", "only-blank-lines", "only-bom", "no-sku", "open-quote"],
)
def test_file_level_errors(products, tmp_path, make, message):
    before = prefill(products)
    path = str(make(tmp_path))
    result = quiet_cli(products, "import", path)
    assert result.exit_code == 1
    assert error_line(result) == "Error: " + message.format(p=path)
    assert table_checksum(products) == before
    # Before the database is touched: an unreachable DSN gives the same file error.
    again = CliRunner().invoke(main, ["import", path, "--quiet", "--dsn", BOGUS_DSN])
    assert (again.exit_code, error_line(again)) == (1, "Error: " + message.format(p=path))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_permission_denied(products, tmp_path):
    # Root reads any file, so the import runs in a forked child that drops to nobody.
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    before = prefill(products)
    path = write_file(tmp_path, b"sku,name\na,b\n", "secret.csv")
    os.chmod(path, 0o600)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 99
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            result = CliRunner().invoke(main, ["import", path, "--quiet", "--dsn", products])
            os.write(write_end, result.stderr.encode())
            status = result.exit_code
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        stderr = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1, stderr
    assert stderr == f"Error: {path}: permission denied\n"
    assert table_checksum(products) == before


def test_utf16_without_bom_names_the_byte_order_options(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, "sku,name\na,b\n".encode("utf-16-le"))
    result = quiet_cli(products, "import", path, "--encoding", "utf-16")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {path} line 1: UTF-16 stream does not start with BOM (name the byte order: "
        "--encoding utf-16-le or utf-16-be)"
    )
    assert table_checksum(products) == before
    assert quiet_cli(products, "import", path, "--encoding", "utf-16-le").exit_code == 0
    assert ("a", "b", None, True) in fetch_products(products)
