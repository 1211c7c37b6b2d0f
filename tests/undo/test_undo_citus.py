"""Issue 22 on Citus: an import into a table Citus manages keeps no undo record, and
`csvload undo` refuses it up front in one line, changing nothing (a real coordinator and
two workers; skipped, with the reason, where ../shared/citus is absent)."""

from __future__ import annotations

import json

import psycopg
from helpers.cli import cli, error_line, imported, quiet_cli
from helpers.files import write_file


def test_undo_on_a_distributed_table_is_refused_in_one_line(distributed, tmp_path):
    run = imported(distributed, write_file(tmp_path, "sku,name\nA-1,a\nA-2,b\n"))
    with psycopg.connect(distributed) as c:
        before = c.execute("SELECT count(*) FROM products").fetchone()[0]
    result = quiet_cli(distributed, "undo", "--last")
    assert result.exit_code == 1
    assert error_line(result) == (
        "Error: products: is a distributed table of Citus; undo does not work on tables"
        " Citus manages yet (imports into it keep no undo record)"
    )
    with psycopg.connect(distributed) as c:
        assert c.execute("SELECT count(*) FROM products").fetchone()[0] == before == 2
    listed = json.loads(cli(distributed, "runs", "--json").stdout)
    assert [(r["run_id"], r["undoable"]) for r in listed] == [(run["run_id"], False)]
