"""Excel workbooks as inputs (issue 24): cells read as a person sees them, the header row,
empty rows and columns, sheets, formulas' cached values, merged header cells, rejects
naming the sheet and the row, and a file that is not a workbook.  Every workbook is
written by xlsxwriter (helpers.files.write_workbook), never by hand."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pytest
from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.db import execute, query
from helpers.files import Formula, write_file, write_workbook

from csvload.read.workbook import cell_text, column_letter, number

ITEMS = """
CREATE TABLE item (
    sku text NOT NULL UNIQUE,
    price numeric(10,2),
    stock integer,
    released date,
    seen_at timestamp,
    active boolean,
    ean text,
    note text
)
"""


@pytest.fixture
def items(dsn):
    execute(dsn, ITEMS)
    return dsn


def item_rows(dsn) -> list[tuple]:
    return query(dsn, "SELECT * FROM item ORDER BY sku")


# -- cells as a person sees them ---------------------------------------------------------------


def test_numbers_are_written_in_their_shortest_form_without_a_trailing_zero():
    assert number(19.99) == "19.99"
    # A spreadsheet keeps and shows 15 significant digits: so does csvload.
    assert number(0.1 + 0.2) == "0.3"
    assert number(19.990000000000002) == "19.99"
    assert number(59.970000000000006) == "59.97"
    assert number(4.0) == "4"
    assert number(-12.0) == "-12"
    assert number(-0.0) == "0"
    assert number(1e20) == "100000000000000000000"
    assert number(1.5e-7) == "0.00000015"
    assert number(123456789012345.0) == "123456789012345"
    assert number(1234567890123456.0) == "1234567890123460"


def test_other_cells_are_iso_dates_booleans_and_text():
    assert cell_text(datetime.date(2024, 3, 1)) == "2024-03-01"
    assert cell_text(datetime.datetime(2024, 3, 1, 13, 45, 10)) == "2024-03-01T13:45:10"
    assert cell_text(datetime.time(7, 5)) == "07:05:00"
    assert cell_text(datetime.timedelta(hours=26, minutes=3)) == "26:03:00"
    assert cell_text(True) == "true" and cell_text(False) == "false"
    assert cell_text("0012345678905") == "0012345678905"
    assert cell_text(7) == "7"
    assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


def test_a_workbook_loads_its_cells_as_typed_values(items, tmp_path):
    book = write_workbook(tmp_path, {"Sheet1": [
        ["sku", "price", "stock", "released", "seen_at", "active", "ean", "note"],
        ["A-1", 19.99, 4, datetime.date(2024, 3, 1), datetime.datetime(2024, 3, 1, 13, 45, 10),
         True, "0012345678905", 19.99],
        ["A-2", Formula("=B2*2", 39.98), Formula("=C2+1", 5), None, None, False,
         "0000000000017", Formula("=B2*3", 59.970000000000006)],
        ["A-4", None, None, None, None, None, None, 4.0],
        ["A-3", 1.5, 0, datetime.date(1999, 12, 31), datetime.datetime(2000, 1, 1), None,
         "4006381333931", Formula('="x"&A3', "xA-3")],
    ]})  # fmt: skip
    summary = imported(items, book, "--table", "item")
    assert (summary["inserted"], summary["rejected"]) == (4, 0)
    assert summary["files"] == [
        {"file": book, "size": (tmp_path / "book.xlsx").stat().st_size, "rows_read": 4}
    ]
    assert item_rows(items) == [
        ("A-1", Decimal("19.99"), 4, datetime.date(2024, 3, 1),
         datetime.datetime(2024, 3, 1, 13, 45, 10), True, "0012345678905", "19.99"),
        # A formula's value is the one the spreadsheet cached.
        # A computed 59.97 is stored as 59.970000000000006; the sheet shows 59.97.
        ("A-2", Decimal("39.98"), 5, None, None, False, "0000000000017", "59.97"),
        ("A-3", Decimal("1.50"), 0, datetime.date(1999, 12, 31),
         datetime.datetime(2000, 1, 1), None, "4006381333931", "xA-3"),
        ("A-4", None, None, None, None, None, "", "4"),  # an empty text cell is ""
    ]  # fmt: skip


# -- the header, empty rows and columns ---------------------------------------------------------


def test_the_header_is_the_first_non_empty_row_and_empty_rows_are_skipped(items, tmp_path):
    book = write_workbook(tmp_path, {"Sheet1": [
        [],
        [],
        [None, "sku", "stock", None],  # row 3, from column B: leading empty column
        [None, "A-1", 1],
        [],  # an empty row inside the data: skipped, not rejected, not counted
        [None, "A-2", 2, None],
        [None, "", 3],  # row 7: a row with an empty key is a reject, named by its row
        [None, "A-3", 3],
        [],
        [],
    ]})  # fmt: skip
    result = quiet_cli(items, "import", book, "--table", "item", "--json", "--max-errors", "1")
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows_read"], summary["inserted"], summary["rejected"]) == (4, 3, 1)
    assert query(items, "SELECT sku, stock FROM item ORDER BY sku") == [
        ("A-1", 1), ("A-2", 2), ("A-3", 3),
    ]  # fmt: skip
    rejects = (tmp_path / "book.xlsx.rejects.csv").read_bytes().decode()
    assert rejects == f'file,line,reason,record\r\n{book} sheet Sheet1,7,empty sku,",3"\r\n'


def test_header_row_picks_the_header_below_a_merged_title(items, tmp_path):
    rows = [
        [None, None, None],  # the title, merged across A1:C1
        ["sku", "stock", None],  # the real header; C2 is merged with B2 ("stock" spans both)
        ["A-1", 7, "a note under the merged header cell"],
    ]
    merged = {"Sheet1": [("A1:C1", "Price list 2024"), ("B2:C2", "stock")]}
    book = write_workbook(tmp_path, {"Sheet1": rows}, merged=merged)
    # Without --header-row the title is the header, and it has no sku column.
    result = quiet_cli(items, "import", book, "--table", "item")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {book} sheet Sheet1 row 1: no sku column in the header (found 'Price list"
        " 2024', '', ''; use --map 'Your Column=sku')"
    )
    result = cli(items, "import", book, "--table", "item", "--header-row", "2")
    assert result.exit_code == 0, result.stderr
    # A merged header cell names its first column; the others it spans have no header, and
    # their values are left out with a warning, like any column the table does not have.
    warning = result.stderr.splitlines()[0]
    assert warning == f"Warning: {book}: ignoring unknown columns: (no header)"
    assert query(items, "SELECT sku, stock FROM item") == [("A-1", 7)]


def test_an_empty_header_row_is_an_error(items, tmp_path):
    book = write_workbook(tmp_path, {"Sheet1": [["sku"], [], ["A-1"]]})
    result = quiet_cli(items, "import", book, "--table", "item", "--header-row", "2")
    assert result.exit_code == 1
    assert error_line(result) == f"Error: {book} sheet Sheet1 row 2: the header row is empty"


def test_a_value_past_the_last_header_is_a_reject(items, tmp_path):
    book = write_workbook(tmp_path, {"Sheet1": [
        ["sku", "stock"], ["A-1", 1, None, "stray"], ["A-2", 2],
    ]})  # fmt: skip
    summary = imported(items, book, "--table", "item", "--max-errors", "1", exit_codes=(3,))
    assert summary["inserted"] == 1
    rejects = (tmp_path / "book.xlsx.rejects.csv").read_bytes().decode()
    assert rejects == (
        "file,line,reason,record\r\n"
        f'{book} sheet Sheet1,2,"a value in column D, which has no header",'
        '"A-1,1,,stray"\r\n'
    )


# -- sheets ------------------------------------------------------------------------------------


def test_the_first_sheet_is_read_and_sheet_picks_another(items, tmp_path):
    book = write_workbook(tmp_path, {
        "Summary": [["sku", "stock"], ["S-1", 1]],
        "Prices": [["SKU", "Stock"], ["P-1", 2], ["P-2", 3]],
    })  # fmt: skip
    imported(items, book, "--table", "item")
    assert query(items, "SELECT sku FROM item") == [("S-1",)]
    summary = imported(items, book, "--table", "item", "--sheet", "prices")
    assert summary["inserted"] == 2
    result = quiet_cli(items, "import", book, "--table", "item", "--sheet", "Stock")
    assert result.exit_code == 1
    assert error_line(result) == f"Error: {book}: no sheet 'Stock' (it has 'Summary', 'Prices')"


def test_a_value_that_does_not_fit_names_the_sheet_and_the_row(items, tmp_path):
    rows = [["sku", "price"]] + [[f"A-{i}", i + 0.5] for i in range(1, 30)]
    rows[17] = ["A-17", "abc"]  # row 18 as the spreadsheet shows it
    book = write_workbook(tmp_path, {"Prices": rows})
    result = quiet_cli(items, "import", book, "--table", "item", "--batch-size", "4")
    assert result.exit_code == 1
    rejects = (tmp_path / "book.xlsx.rejects.csv").read_bytes().decode()
    assert rejects == (
        "file,line,reason,record\r\n"
        f'{book} sheet Prices,18,"price is \'abc\', not a numeric(10,2)","A-17,abc"\r\n'
    )
    assert item_rows(items) == []


def test_many_batches_keep_every_row_and_its_number(items, tmp_path):
    rows = [["sku", "stock"]]
    for i in range(1, 101):
        rows.append([f"A-{i}", i])
        if i % 7 == 0:
            rows.append([])  # empty rows break the runs of row numbers
    rows.append(["", 0])  # a reject in the last batch
    book = write_workbook(tmp_path, {"Sheet1": rows})
    summary = imported(items, book, "--table", "item", "--batch-size", "8", "--max-errors", "1",
                       exit_codes=(3,))  # fmt: skip
    assert (summary["rows_read"], summary["inserted"]) == (101, 100)
    assert query(items, "SELECT count(*), sum(stock) FROM item") == [(100, 5050)]
    assert (
        (tmp_path / "book.xlsx.rejects.csv")
        .read_bytes()
        .decode()
        .splitlines()[1]
        .startswith(f"{book} sheet Sheet1,{len(rows)},empty sku,")
    )


# -- not a workbook ----------------------------------------------------------------------------


def test_a_file_that_is_not_a_workbook_is_one_line(items, tmp_path):
    fake = write_file(tmp_path, "sku,stock\nA-1,1\n", "prices.xlsx")
    result = quiet_cli(items, "import", fake, "--table", "item")
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {fake}: not a workbook csvload can read (invalid Zip archive: Could not find EOCD)"
    )
    assert item_rows(items) == []


def test_sheet_without_a_workbook_is_a_usage_error(items, tmp_path):
    path = write_file(tmp_path, "sku,stock\nA-1,1\n")
    result = quiet_cli(items, "import", path, "--table", "item", "--sheet", "Prices")
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: --sheet reads a workbook (.xlsx, .xls, .ods), and no input is one"
    )


def test_verify_reads_a_workbook(items, tmp_path):
    book = write_workbook(tmp_path, {"Sheet1": [["sku", "stock"], ["A-1", 1], ["A-2", 2]]})
    imported(items, book, "--table", "item")
    execute(items, "UPDATE item SET stock = 5 WHERE sku = 'A-2'")
    result = quiet_cli(items, "verify", book, "--table", "item", "--json")
    assert result.exit_code == 1
    assert (json.loads(result.stdout)["matching"], json.loads(result.stdout)["different"]) == (1, 1)


def test_an_empty_sheet_and_a_header_row_past_its_end_are_errors(items, tmp_path):
    book = write_workbook(tmp_path, {"Empty": [], "Data": [["sku"], ["A-1"]]})
    result = quiet_cli(items, "import", book, "--table", "item")
    assert result.exit_code == 1
    assert error_line(result) == f"Error: {book} sheet Empty: empty sheet, no header row"
    result = quiet_cli(items, "import", book, "--table", "item", "--sheet", "Data",
                       "--header-row", "5")  # fmt: skip
    assert result.exit_code == 1
    assert error_line(result) == f"Error: {book} sheet Data: no row 5, the sheet ends before it"


def test_a_row_with_an_error_cell_is_a_reject(items, tmp_path):
    # The reader gives an error cell as an empty one: csvload finds it in the sheet's XML,
    # so a price of #DIV/0! never becomes "no price".
    book = write_workbook(tmp_path, {"Sheet1": [
        ["sku", "price", "note"],
        ["A-1", 1.5, "x"],
        ["A-2", Formula("=1/0", "#DIV/0!"), "x"],
        ["A-3", 2.5, Formula("=NA()", "#N/A")],
        ["A-4", 3.5, "x"],
    ]})  # fmt: skip
    summary = imported(items, book, "--table", "item", "--max-errors", "2", exit_codes=(3,))
    assert (summary["inserted"], summary["rejected"]) == (2, 2)
    assert query(items, "SELECT sku, price FROM item ORDER BY sku") == [
        ("A-1", Decimal("1.50")), ("A-4", Decimal("3.50")),
    ]  # fmt: skip
    assert (tmp_path / "book.xlsx.rejects.csv").read_bytes().decode() == (
        "file,line,reason,record\r\n"
        f'{book} sheet Sheet1,3,"price is #DIV/0!, an error in the sheet","A-2,,x"\r\n'
        f'{book} sheet Sheet1,4,"note is #N/A, an error in the sheet","A-3,2.5"\r\n'
    )
