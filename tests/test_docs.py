"""The docs name tests and link pages: every test they name exists, every relative link
resolves."""

from __future__ import annotations

import re

from helpers.files import PROJECT

DOCS = [PROJECT / "README.md", PROJECT / "CONTRIBUTING.md",
        *sorted((PROJECT / "docs").glob("*.md"))]


def _named_tests(text: str) -> list[tuple[str, str]]:
    """(test file, test name) for every `tests/area/x.py::name`, `x.py::name` and `::name`
    (in the file named last before it) in text.  The file is a path under tests/ when the
    doc writes one, else a bare file name."""
    named, current = [], None
    pattern = r"`(tests/(?:\w+/)*)?(test_\w+\.py)?(?:::(\w+))?"
    for folder, file, name in re.findall(pattern, text):
        if file:
            current = folder + file
        if name and current:
            named.append((current, name))
    return named


def _test_file(file: str):
    """FILE when the doc gave a path (tests/...), else the one file of that name under tests/."""
    if file.startswith("tests/"):
        return PROJECT / file
    found = list((PROJECT / "tests").rglob(file))
    return found[0] if len(found) == 1 else PROJECT / "tests" / file


def test_every_test_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for file, name in _named_tests(doc.read_text(encoding="utf-8")):
            path = _test_file(file)
            if not path.exists() or not re.search(
                rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M
            ):
                missing.append(f"{doc.name}: {file}::{name}")
    assert missing == []


def test_every_relative_link_resolves():
    broken = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.name}: {target}")
    assert broken == []
