"""The inputs of one import: which files its arguments name (globs expanded in sorted
order), opening each as a CSV or a workbook, and Inputs, several of them read as one, in
the order given.

Inputs opens every file first, reads its header (the caller binds each one to the table
before anything is staged) and closes it again, so that a long list of files holds no
more than one open at a time; each is then opened once more and read to its end in turn.
Standard input and other inputs that cannot be read twice (a FIFO) stay open instead.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import BinaryIO

from csvload.errors import InputUsageError
from csvload.read.chunks import Chunk
from csvload.read.remote import is_remote
from csvload.read.source import Source, SourceOptions
from csvload.read.workbook import WorkbookSource, is_workbook

# What csvload writes beside an input by default: a glob never picks it up as an input.
REJECTS_SUFFIX = ".rejects.csv"


def expand(arguments: Sequence[str]) -> list[str]:
    """The paths the arguments name, in order: a glob (quoted, so the shell left it alone)
    by its matches in sorted order, leaving out csvload's own *.rejects.csv files; any
    other argument as it is.  InputUsageError for a glob that matches nothing, and for a
    second `-` (standard input can be read once)."""
    paths: list[str] = []
    for argument in arguments:
        if argument == "-" and "-" in paths:
            raise InputUsageError("- (standard input) can be given only once")
        if is_remote(argument):  # a URL's ? and * are its own, never a glob
            paths.append(argument)
        elif glob.has_magic(argument) and not os.path.exists(argument):
            found = sorted(p for p in glob.glob(argument) if not p.endswith(REJECTS_SUFFIX))
            if not found:
                raise InputUsageError(f"{argument}: no file matches")
            paths.extend(found)
        else:
            paths.append(argument)
    return paths


def open_input(
    options: SourceOptions, paths: Sequence[str] = (), stdin: BinaryIO | None = None
) -> Source | Inputs:
    """The input(s) to read: options.path, or every one of `paths` in order, each read
    with `options` (a workbook by its name's extension).  Use as a context manager."""
    paths = tuple(paths) or (options.path,)
    if (options.sheet is not None or options.header_row is not None) and not any(
        map(is_workbook, paths)
    ):
        given = "--sheet" if options.sheet is not None else "--header-row"
        raise InputUsageError(f"{given} reads a workbook (.xlsx, .xls, .ods), and no input is one")
    sources = [_source(replace(options, path=path), stdin) for path in paths]
    return sources[0] if len(sources) == 1 else Inputs(sources)


def _source(options: SourceOptions, stdin: BinaryIO | None) -> Source:
    kind = WorkbookSource if is_workbook(options.path) else Source
    return kind(options, stdin=stdin)


class Inputs:
    """Several inputs read as one, in order: what the loader reads of a Source (the first
    input's columns and delimiter are the stage's), and `sources`, each of which is bound
    to the table on its own."""

    labelled = True  # rejects and messages name the file
    fetched = None  # --if-changed reads one URL source alone (job.py), never one of many

    def __init__(self, sources: list[Source]):
        self.sources = sources
        first = sources[0]
        self.options = first.options
        names = [s.name for s in sources]
        shown = names if len(names) <= 3 else [names[0], f"{len(names) - 1} more files"]
        self.name = ", ".join(shown[:-1]) + " and " + shown[-1]
        self._read_twice = [s.options.path != "-" and os.path.isfile(s.options.path)
                            for s in sources]  # fmt: skip
        self._rows = [0] * len(sources)
        self.size: int | None = None

    def __enter__(self) -> Inputs:
        try:
            for source, again in zip(self.sources, self._read_twice, strict=True):
                source.__enter__()
                if again:
                    source.close()
        except BaseException:
            self.close()
            raise
        sizes = [s.size for s in self.sources]
        self.size = None if None in sizes else sum(sizes)  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for source in self.sources:
            source.close()

    # -- what the loader reads of a Source ----------------------------------------------

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(s.options.path for s in self.sources)

    @property
    def header(self) -> list[str]:
        return self.sources[0].header

    @property
    def header_line(self) -> int:
        return self.sources[0].header_line

    @property
    def staged_columns(self) -> list[str]:
        return self.sources[0].staged_columns

    @property
    def delimiter(self) -> str:
        return self.sources[0].delimiter

    @property
    def encoding(self) -> str:
        """The rejects file's: the inputs' own when they share one, else UTF-8."""
        encodings = {s.encoding for s in self.sources}
        return encodings.pop() if len(encodings) == 1 else "utf-8-sig"

    def place(self, line: int) -> str:
        return self.sources[0].place(line)

    def find_keys(self, key: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
        """Source.find_keys() of every input: one without its key fails before csvload
        connects.  The first input's."""
        found = [s.find_keys(key) for s in self.sources]
        return found[0]

    def listing(self, rows_read: int) -> list[dict]:
        return [
            {"file": s.name, "size": s.size, "rows_read": rows}
            for s, rows in zip(self.sources, self._rows, strict=True)
        ]

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        """Every input's chunks in turn, numbered in its own lines (chunk.origin), with
        the bytes of the inputs before it counted as done."""
        before = 0
        for i, source in enumerate(self.sources):
            if self._read_twice[i]:
                source.reopen()
            try:
                for chunk in source.chunks(batch_size):
                    self._rows[i] += chunk.rows + len(chunk.rejects) + chunk.skipped
                    chunk.origin = chunk.origin or source.origin
                    chunk.bytes_done += before
                    yield chunk
            finally:
                source.close()
            before += source.size or 0
