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
