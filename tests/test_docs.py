"""The docs name tests and link pages: every test they name exists, every relative link
resolves."""

from __future__ import annotations

import re

from helpers.files import PROJECT

DOCS = [PROJECT / "README.md", PROJECT / "CONTRIBUTING.md",
        *sorted((PROJECT / "docs").glob("*.md"))]


def _named_tests(text: str) -> list[tuple[str, str]]:
    """(test file, test name) for every `tests/x.py::name`, `x.py::name` and `::name` (in
    the file named last before it) in text."""
    named, current = [], None
    for file, name in re.findall(r"`(?:tests/)?(test_\w+\.py)?(?:::(\w+))?", text):
        if file:
            current = file
        if name and current:
            named.append((current, name))
    return named


def test_every_test_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for file, name in _named_tests(doc.read_text(encoding="utf-8")):
            path = PROJECT / "tests" / file
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
