import csv
import io
import tracemalloc

import pytest
from helpers.files import PROJECT

from csvload.generate import HEADER, generate, generate_file, sku_for

SAMPLE = PROJECT / "sample_data" / "products-1k.csv"


def _text(rows: int, **options) -> str:
    out = io.StringIO(newline="")
    assert generate(out, rows, **options) == rows
    return out.getvalue()


def _parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


class _Discard(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def test_same_seed_gives_same_bytes_and_other_seed_differs():
    first = _text(3000, seed=7, duplicates=0.1)
    assert _text(3000, seed=7, duplicates=0.1) == first
    assert _text(3000, seed=8, duplicates=0.1) != first


def test_header_row_count_and_every_row_has_three_nonempty_fields():
    records = _parse(_text(9000, seed=3))  # spans several internal blocks
    assert tuple(records[0]) == HEADER
    assert len(records) == 9001
    assert all(len(r) == 3 and all(r) for r in records[1:])


def test_zero_rows_writes_only_the_header():
    assert _text(0) == "name,sku,description\n"


def test_skus_are_unique_case_insensitively_without_duplicates():
    records = _parse(_text(20000, seed=5))[1:]
    assert len({sku.lower() for _, sku, _ in records}) == 20000
    # Mixed case is the point: the file must not be all upper or all lower.
    assert any(sku != sku.lower() and sku != sku.upper() for _, sku, _ in records)


def test_sku_for_predicts_the_distinct_skus_in_order():
    records = _parse(_text(50, seed=11))[1:]
    assert [sku for _, sku, _ in records] == [sku_for(i, seed=11) for i in range(50)]


def test_duplicates_repeat_earlier_skus_in_other_case_with_changed_values():
    records = _parse(_text(10000, seed=2, duplicates=0.05))[1:]
    first_sku: dict[str, str] = {}
    descriptions: dict[str, set[str]] = {}
    repeats = 0
    for _, sku, desc in records:
        key = sku.lower()
        if key in first_sku:
            repeats += 1
            assert sku != first_sku[key]
            assert desc not in descriptions[key]
            descriptions[key].add(desc)
        else:
            first_sku[key] = sku
            descriptions[key] = {desc}
    assert repeats == 500
    assert records[0][1] == sku_for(0, seed=2)


def test_duplicates_never_exceed_the_rows_that_have_an_earlier_row():
    records = _parse(_text(2, duplicates=0.9))[1:]
    assert records[0][1].lower() == records[1][1].lower()
    assert len(_parse(_text(1, duplicates=0.9))) == 2


def test_some_fields_need_quoting_and_some_are_not_ascii():
    text = _text(2000, seed=4)
    records = _parse(text)[1:]
    assert any('"' in desc for _, _, desc in records)
    assert any("," in desc for _, _, desc in records)
    assert any(not desc.isascii() for _, _, desc in records)
    assert any(not name.isascii() for name, _, _ in records)
    assert any("東京" in desc for _, _, desc in records)
    # The raw text really carries CSV quoting, not just the parsed values.
    assert '""' in text
    assert "\r" not in text


def test_rename_variant_keeps_skus_and_descriptions_and_renames_about_that_fraction():
    base = _parse(_text(8000, seed=9, duplicates=0.02))[1:]
    variant = _parse(_text(8000, seed=9, duplicates=0.02, rename_fraction=0.5))[1:]
    assert [r[1:] for r in variant] == [r[1:] for r in base]
    renamed = [(b[0], v[0]) for b, v in zip(base, variant, strict=True) if b[0] != v[0]]
    assert 3600 < len(renamed) < 4400
    # A rename swaps the adjective; material and product stay recognisable.
    assert all(old.split(" ", 1)[1] == new.split(" ", 1)[1] for old, new in renamed)
    every = _parse(_text(500, seed=9, rename_fraction=1.0))[1:]
    assert all(v[0] != b[0] for v, b in zip(every, base[:500], strict=True))


def test_generate_file_writes_utf8_that_round_trips(tmp_path):
    path = tmp_path / "p.csv"
    assert generate_file(path, 300, seed=6, duplicates=0.1) == 300
    assert path.read_bytes() == _text(300, seed=6, duplicates=0.1).encode("utf-8")


def test_committed_sample_is_what_the_generator_makes():
    # Also pins the output across Python versions and machines: if this breaks, the
    # generator changed and the sample (and any saved benchmark data) must be remade.
    assert SAMPLE.read_bytes() == _text(1000, seed=1, duplicates=0.02).encode("utf-8")


def test_memory_stays_bounded_while_streaming():
    tracemalloc.start()
    try:
        generate(_Discard(), 100_000, seed=1, duplicates=0.1, rename_fraction=0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Holding the 100k rows would need well over 20 MB; one block is a few MB at most.
    assert peak < 8_000_000


@pytest.mark.parametrize(
    ("rows", "options"),
    [
        (-1, {}),
        (10, {"duplicates": 1.0}),
        (10, {"duplicates": -0.1}),
        (10, {"rename_fraction": 1.5}),
    ],
)
def test_out_of_range_arguments_are_refused(rows, options):
    with pytest.raises(ValueError):
        generate(io.StringIO(), rows, **options)
