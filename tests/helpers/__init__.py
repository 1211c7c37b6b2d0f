"""What the tests share besides fixtures (those are in tests/conftest.py): running the CLI,
writing input files, reading the database back, and the servers the tests talk to.

tests/ is on sys.path (pyproject.toml's pytest `pythonpath`), so a test imports these as
``from helpers.cli import cli``; the benchmarks in tests/bench/ put tests/ on sys.path
themselves.
"""
