"""Synthetic product CSV files for demos, tests and the benchmark.

The output is deterministic: the same arguments give the same bytes on every run and
machine. All randomness comes from `random.Random` seeded with an int or a str (both
are seeded through a fixed algorithm, unlike `hash()`), and nothing depends on set or
dict ordering.

Memory stays constant however many rows are written. A row's SKU is a pure function of
its "SKU index" (a keyed bijection of the index onto the SKU space), so a duplicate row
can recompute any earlier SKU instead of remembering it.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from csvload.errors import OutputWriteError

__all__ = ["HEADER", "MAX_ROWS", "generate", "generate_file", "sku_for"]

HEADER = ("name", "sku", "description")

# The SKU bijection works on 40-bit integers; 2**40 SKUs is far beyond any test file.
_BITS = 40
_MASK = (1 << _BITS) - 1
MAX_ROWS = 1 << _BITS

# Rows are produced in blocks so that the random choices for a whole block come from one
# rng.choices call each (the per-row Python loop is the cost: 500k rows take ~2 s); the
# block size bounds memory.
_BLOCK = 4096

_ADJECTIVES = (
    "Rustic",
    "Modern",
    "Classic",
    "Vintage",
    "Nordic",
    "Compact",
    "Elegant",
    "Sturdy",
    "Minimal",
    "Industrial",
    "Coastal",
    "Urban",
    "Heritage",
    "Deluxe",
    "Essential",
    "Folding",
    "Stackable",
    "Curved",
    "Slim",
    "Grand",
    "Provençal",
    "Handcrafted",
    "Weathered",
    "Polished",
    "Brushed",
    "Matte",
    "Glossy",
    "Soft",
    "Bold",
    "Tall",
    "Low",
    "Round",
    "Square",
    "Oval",
    "Hanging",
    "Wall-Mounted",
    "Portable",
    "Luxe",
)
_MATERIALS = (
    "Oak",
    "Walnut",
    "Teak",
    "Pine",
    "Birch",
    "Maple",
    "Ash",
    "Bamboo",
    "Rattan",
    "Wicker",
    "Marble",
    "Granite",
    "Slate",
    "Concrete",
    "Glass",
    "Steel",
    "Brass",
    "Copper",
    "Iron",
    "Aluminium",
    "Leather",
    "Linen",
    "Velvet",
    "Wool",
    "Cotton",
    "Jute",
    "Ceramic",
    "Terracotta",
    "Cork",
    "Acacia",
    "Mango Wood",
    "Bouclé",
)
_NOUNS = (
    "Side Table",
    "Coffee Table",
    "Dining Table",
    "Desk",
    "Bookshelf",
    "Étagère",
    "Armchair",
    "Bergère Chair",
    "Bar Stool",
    "Bench",
    "Ottoman",
    "Sofa",
    "Daybed",
    "Bed Frame",
    "Headboard",
    "Nightstand",
    "Dresser",
    "Wardrobe",
    "Sideboard",
    "Console",
    "TV Stand",
    "Floor Lamp",
    "Table Lamp",
    "Pendant Light",
    "Mirror",
    "Coat Rack",
    "Shoe Cabinet",
    "Planter",
    "Vase",
    "Tray",
    "Cutting Board",
    "Bowl",
    "Serving Platter",
    "Wall Shelf",
    "Magazine Rack",
    "Rug",
    "Cushion",
    "Throw",
)
_COLOURS = (
    "natural",
    "charcoal",
    "ivory",
    "sage green",
    "terracotta",
    "navy",
    "sand",
    "walnut brown",
    "off-white",
    "smoke grey",
    "ochre",
    "black",
    "crème",
    "bleu ciel",
)
_PLACES = (
    "Malmö",
    "København",
    "Zürich",
    "München",
    "Kraków",
    "São Paulo",
    "Reykjavík",
    "Århus",
    "Lyon",
    "Porto",
    "Kyoto",
    "東京",
    "Sevilla",
    "Tromsø",
    "Düsseldorf",
    "Ljubljana",
    "Milano",
    "Gdańsk",
)
_CARE = (
    "wipe with a damp cloth",
    "avoid direct sunlight",
    "dust weekly",
    "oil twice a year",
    "do not machine wash",
    "use coasters",
)
# First sentences; fields: {m} material (lowercase), {n} noun (lowercase), {c} colour,
# {w} and {d} dimensions in cm.
_FIRST = (
    "A {c} {n} in solid {m}.",
    "This {n} is made of {m}, finished in {c}.",
    "Our best-selling {n}, now in {c} {m}.",
    "Measures {w} x {d} cm, in {c}.",
    'A {n} in {m} with a "{c}" finish.',
    "Simple, sturdy and made to last: a {m} {n}.",
    "The {n} every room needs, {w} cm wide.",
    "Hand-finished {m} in {c}, {w} x {d} cm.",
)
# Optional second sentences; {p} place, {k} care instruction, {y} years.
_SECOND = (
    "Designed in {p}.",
    "Made in {p}; ships flat-packed.",
    'Customers call it "the last {n} you will buy".',
    "Care: {k}.",
    "Care: {k}, and {k2}.",
    "{y}-year warranty, tools included.",
    'Inspired by the "{p}" collection.',
    "Assembly takes about {y}0 minutes.",
    "Pairs well with the rest of the {p} range, sold separately.",
    "Naïve charm, façade-friendly, über-practical.",
)
_WIDTHS = tuple(range(30, 241, 5))
_DEPTHS = tuple(range(20, 101, 5))
_YEARS = (1, 2, 3, 5, 10)

_LETTERS = "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _SkuKeys:
    """Per-seed constants of the SKU bijection, drawn from their own generator so that
    the row generator's stream does not depend on them."""

    __slots__ = ("xor", "mul1", "mul2")

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"csvload-sku:{seed}")
        self.xor = rng.getrandbits(_BITS)
        self.mul1 = rng.getrandbits(_BITS) | 1  # odd, so multiplication mod 2**40 inverts
        self.mul2 = rng.getrandbits(_BITS) | 1


def _sku(index: int, keys: _SkuKeys, case_flip: int = 0) -> str:
    # xor, odd multiply and xorshift are each bijections on 40-bit integers, so distinct
    # indexes give distinct values, and 2**40 < 26**5 * 10**5 keeps the decoding below
    # injective: SKUs are unique even compared case-insensitively.
    x = (index ^ keys.xor) * keys.mul1 & _MASK
    x ^= x >> 19
    x = x * keys.mul2 & _MASK
    x ^= x >> 21
    x, digits = divmod(x, 100_000)
    # The case pattern is a function of the value, so it is stable for an index;
    # flipping bits of it yields the same SKU in a different letter case.
    case = ((x * 0x9E3779B1) >> 7 ^ case_flip) & 31
    x, l0 = divmod(x, 26)
    x, l1 = divmod(x, 26)
    x, l2 = divmod(x, 26)
    l4, l3 = divmod(x, 26)
    return (
        f"{_LETTERS[l0 + 26 * (case & 1)]}{_LETTERS[l1 + 26 * (case >> 1 & 1)]}"
        f"{_LETTERS[l2 + 26 * (case >> 2 & 1)]}-{digits:05d}-"
        f"{_LETTERS[l3 + 26 * (case >> 3 & 1)]}{_LETTERS[l4 + 26 * (case >> 4 & 1)]}"
    )


def sku_for(index: int, *, seed: int = 0) -> str:
    """The SKU that `generate(..., seed=seed)` gives its `index`-th distinct product."""
    if not 0 <= index < MAX_ROWS:
        raise ValueError(f"index must be in [0, {MAX_ROWS}), got {index}")
    return _sku(index, _SkuKeys(seed))


def _rows(rows: int, seed: int, duplicates: float, rename_fraction: float) -> Iterator[list]:
    """Yield blocks of rows (lists of [name, sku, description])."""
    rng = random.Random(seed)
    # Renames come from a separate generator so a re-import variant consumes the main
    # stream exactly like the original and therefore has the same SKUs in the same order.
    renamer = random.Random(f"csvload-rename:{seed}")
    keys = _SkuKeys(seed)
    choices = rng.choices
    rnd = rng.random
    n_adj = len(_ADJECTIVES)
    adj_ix = range(n_adj)

    # Selection sampling (Knuth's algorithm S): exactly `dups_left` of the rows after the
    # first are duplicates, spread at random, with no list of positions in memory.
    dups_left = min(round(rows * duplicates), max(rows - 1, 0))
    distinct = 0
    row = 0
    while row < rows:
        size = min(_BLOCK, rows - row)
        adjs = choices(adj_ix, k=size)
        mats = choices(_MATERIALS, k=size)
        nouns = choices(_NOUNS, k=size)
        colours = choices(_COLOURS, k=size)
        firsts = choices(_FIRST, k=size)
        # None means a one-sentence description (about a third of rows).
        seconds = choices(_SECOND + (None,) * 5, k=size)
        places = choices(_PLACES, k=size)
        cares = choices(range(len(_CARE)), k=size)
        widths = choices(_WIDTHS, k=size)
        depths = choices(_DEPTHS, k=size)
        years = choices(_YEARS, k=size)
        block = []
        for j in range(size):
            adj = adjs[j]
            mat = mats[j]
            noun = nouns[j]
            noun_lc = noun.lower()
            mat_lc = mat.lower()
            desc = firsts[j].format(m=mat_lc, n=noun_lc, c=colours[j], w=widths[j], d=depths[j])
            second = seconds[j]
            if second is not None:
                care = cares[j]
                desc += " " + second.format(
                    p=places[j],
                    k=_CARE[care],
                    k2=_CARE[(care + 1) % len(_CARE)],
                    n=noun_lc,
                    y=years[j],
                )
            if row > 0 and dups_left and rnd() * (rows - row) < dups_left:
                dups_left -= 1
                # A later row for an earlier product: same SKU in another letter case,
                # and a description no earlier row can have (it names this row).
                sku = _sku(rng.randrange(distinct), keys, 1 + rng.randrange(31))
                desc += f" Updated listing #{row + 1}."
            else:
                sku = _sku(distinct, keys)
                distinct += 1
            if rename_fraction and renamer.random() < rename_fraction:
                adj = (adj + 1 + renamer.randrange(n_adj - 1)) % n_adj
            block.append([f"{_ADJECTIVES[adj]} {mat} {noun}", sku, desc])
            row += 1
        yield block


def generate(
    out: TextIO,
    rows: int,
    *,
    seed: int = 0,
    duplicates: float = 0.0,
    rename_fraction: float = 0.0,
) -> int:
    """Write a header and `rows` product rows as CSV to `out`; return the rows written.

    `duplicates` is the fraction of rows that repeat an earlier row's SKU in a different
    letter case with a changed description. `rename_fraction` gives a re-import variant:
    the same file as with 0.0 (same SKUs, same descriptions, same order) except that
    about that fraction of rows has a different name. `out` should be opened with
    `newline=""` and UTF-8; lines end in "\\n".
    """
    if not 0 <= rows < MAX_ROWS:
        raise ValueError(f"rows must be in [0, {MAX_ROWS}), got {rows}")
    if not 0.0 <= duplicates < 1.0:
        raise ValueError(f"duplicates must be in [0, 1), got {duplicates}")
    if not 0.0 <= rename_fraction <= 1.0:
        raise ValueError(f"rename_fraction must be in [0, 1], got {rename_fraction}")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    written = 0
    for block in _rows(rows, seed, duplicates, rename_fraction):
        writer.writerows(block)
        written += len(block)
    return written


def generate_file(
    path: str | Path, rows: int, *, shown: str | None = None, **options: object
) -> int:
    """`generate` into a new UTF-8 file at `path`; return the rows written.  Raises
    OutputWriteError, naming the file as `shown` (default: the path), when it cannot be created
    or written."""
    shown = shown or str(path)
    try:
        out = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except FileNotFoundError as e:
        raise OutputWriteError(f"{shown}: no such folder") from e
    except NotADirectoryError as e:
        raise OutputWriteError(f"{shown}: part of the path is a file, not a folder") from e
    except IsADirectoryError as e:
        raise OutputWriteError(f"{shown}: is a folder") from e
    except PermissionError as e:
        raise OutputWriteError(f"{shown}: permission denied") from e
    except OSError as e:
        raise OutputWriteError(f"{shown}: cannot create: {e.strerror}") from e
    try:
        with out:
            return generate(out, rows, **options)  # type: ignore[arg-type]
    except OSError as e:  # a full disk, say
        raise OutputWriteError(f"{shown}: cannot write: {e.strerror}") from e
