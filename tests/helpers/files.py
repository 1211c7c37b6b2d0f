"""Input files for an import, and what csvload leaves beside its outputs."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
PROJECT = TESTS.parent
DATA = TESTS / "data"
PRESET_SAMPLES = DATA / "presets"  # shop exports as Shopify and WooCommerce publish them
CORPUS = TESTS / "corpus"


def write_file(directory: Path, data: str | bytes, name: str = "p.csv",
               encoding: str = "utf-8") -> str:
    """Write `data` (text in `encoding`, or bytes as they are) to directory/name; its path,
    as the CLI takes it."""
    path = Path(directory) / name
    path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return str(path)


def temp_files(directory: Path) -> list[Path]:
    """The temp files csvload writes an output to before renaming it into place."""
    return sorted(directory.glob(".*.tmp"))


def csv_records(text: str) -> list[tuple[int, list[str]]]:
    """(start line, fields) of each non-blank data record, as Python's csv module reads it:
    the oracle that staged rows are compared with."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    records, last = [], 0
    for row in reader:
        if row:
            records.append((last + 1, row))
        last = reader.line_num
    return records[1:]


def write_toml(directory: Path, text: str, name: str = "csvload.toml") -> Path:
    """A config file (dedented), its folders made as needed."""
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


class Formula:
    """A formula cell for write_workbook(): the formula and the value Excel cached for it."""

    def __init__(self, formula: str, cached: object):
        self.formula, self.cached = formula, cached


def write_workbook(directory: Path, sheets: dict, name: str = "book.xlsx",
                   merged: dict | None = None) -> str:
    """An .xlsx written by xlsxwriter (a spreadsheet library, not by hand): `sheets` maps
    each sheet's name to its rows, a row a list of cells (None: no cell; str, int, float,
    bool, date, datetime, time or a Formula, each written as its own cell type, dates with
    a date format); `merged` maps a sheet's name to [(range, value)] merged cells."""
    import datetime

    import xlsxwriter

    path = Path(directory) / name
    book = xlsxwriter.Workbook(str(path))
    formats = {
        datetime.datetime: book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
        datetime.date: book.add_format({"num_format": "yyyy-mm-dd"}),
        datetime.time: book.add_format({"num_format": "hh:mm:ss"}),
    }
    for sheet_name, rows in sheets.items():
        sheet = book.add_worksheet(sheet_name)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, Formula):
                    sheet.write_formula(r, c, value.formula, None, value.cached)
                elif isinstance(value, bool):
                    sheet.write_boolean(r, c, value)
                elif isinstance(value, int | float):
                    sheet.write_number(r, c, value)
                elif isinstance(value, datetime.date | datetime.time):
                    sheet.write_datetime(r, c, value, formats[type(value)])
                else:
                    sheet.write_string(r, c, value)
        for cells, value in (merged or {}).get(sheet_name, []):
            sheet.merge_range(cells, value)
    book.close()
    return str(path)
