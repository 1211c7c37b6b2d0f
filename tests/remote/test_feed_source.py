"""A feed in csvload.toml names its source (`source = "https://…"`) and its headers, as
env: references only: a secret written in the file, in a header or in the URL, is refused in
one line, exit 2."""

from __future__ import annotations

import json

from helpers.cli import only_line, quiet_cli
from helpers.db import query
from helpers.files import write_toml

CSV = b"sku,name\nF-1,one\nF-2,two\n"


def test_a_feed_with_its_source_headers_and_if_changed(products, feed_server, tmp_path,
                                                         monkeypatch):  # fmt: skip
    url = feed_server.serve("/feed.csv", body=CSV, etag='"e1"',
                            require={"X-Api-Secret": "s3cr3t"})  # fmt: skip
    config = write_toml(
        tmp_path,
        f"""
[feeds.supplier]
source = "{url}"
header = {{ X-Api-Secret = "env:SUPPLIER_TOKEN" }}
if_changed = true
fetch_retries = 1
""",
    )
    monkeypatch.chdir(tmp_path)
    env = {"SUPPLIER_TOKEN": "s3cr3t"}
    first = quiet_cli(products, "import", "--feed", "supplier", "--json", env=env)
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout)["inserted"] == 2
    again = quiet_cli(products, "import", "--feed", "supplier", "--config", str(config),
                      "--json", env=env)  # fmt: skip
    assert json.loads(again.stdout)["status"] == "unchanged_feed"
    assert feed_server.seen[-1].headers["x-api-secret"] == "s3cr3t"
    assert query(products, "SELECT count(*) FROM csvload_runs WHERE source = %s", (url,)) == [(2,)]


def error(dsn, tmp_path, monkeypatch, text: str) -> tuple[int, str]:
    write_toml(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    result = quiet_cli(dsn, "import", "--feed", "f")
    return result.exit_code, only_line(result.stderr)


def test_a_header_value_written_in_the_file_is_refused(products, tmp_path, monkeypatch):
    code, line = error(products, tmp_path, monkeypatch,
                       '[feeds.f]\nsource = "https://example.invalid/x.csv"\n'
                       'header = { Authorization = "Bearer abc123" }\n')  # fmt: skip
    assert code == 2
    assert line == (
        "Error: csvload.toml line 3: feed 'f': header.Authorization must be \"env:VARIABLE\":"
        " secrets are never read from the config file (set the value in the environment and"
        " name it here)"
    )
    assert "abc123" not in line


def test_a_url_with_credentials_in_the_file_is_refused(products, tmp_path, monkeypatch):
    for url, shown in (
        ("https://me:pw123@example.invalid/x.csv", "https://***@example.invalid/x.csv"),
        ("https://example.invalid/x.csv?token=tk123", "https://example.invalid/x.csv?token=***"),
    ):
        code, line = error(products, tmp_path, monkeypatch, f'[feeds.f]\nsource = "{url}"\n')
        assert code == 2
        assert line.startswith(
            f"Error: csvload.toml line 2: feed 'f': source {shown} has credentials in it, and"
            " secrets are never read from the config file"
        )


def test_no_path_and_no_source_is_a_usage_error(products, tmp_path, monkeypatch):
    write_toml(tmp_path, '[feeds.f]\ntable = "products"\n')
    monkeypatch.chdir(tmp_path)
    result = quiet_cli(products, "import", "--feed", "f")
    assert result.exit_code == 2
    assert "give PATH (a file, - for stdin, or a URL), or a --feed whose config sets source" in (
        result.stderr
    )
