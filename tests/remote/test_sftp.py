"""sftp:// sources against a real OpenSSH server on 127.0.0.1 (helpers/sshd.py), with a
throwaway key pair and known_hosts: a good fetch, an unknown host key, a changed one, a
missing file, an unreachable host, and --if-changed by size and mtime.  Skipped, with the
reason, where Debian's openssh-server is not installed."""

from __future__ import annotations

import gzip
import json
import os

from helpers.cli import error_line, imported, quiet_cli
from helpers.db import query, table_checksum
from helpers.webhook import closed_port

CSV = "sku,name\nS-1,one\nS-2,two\n"


def ssh_args(sshd) -> list[str]:
    return ["--identity", str(sshd.identity), "--known-hosts", str(sshd.known_hosts)]


def test_a_good_fetch(products, sshd, tmp_path):
    (tmp_path / "feed.csv.gz").write_bytes(gzip.compress(CSV.encode() * 1))
    url = sshd.url(tmp_path / "feed.csv.gz")
    summary = imported(products, url, *ssh_args(sshd))
    assert (summary["inserted"], summary["source"]) == (2, url)
    assert dict(query(products, "SELECT sku, name FROM products")) == {"S-1": "one", "S-2": "two"}
    size, mtime = query(products, "SELECT size, remote_mtime FROM csvload_runs")[0]
    assert (size, mtime) == ((tmp_path / "feed.csv.gz").stat().st_size,
                             int((tmp_path / "feed.csv.gz").stat().st_mtime))  # fmt: skip


def test_a_bigger_file_streams_whole(products, sshd, tmp_path):
    rows = "".join(f"S-{i},name {i}\n" for i in range(60_000))  # several readv windows
    (tmp_path / "big.csv").write_text("sku,name\n" + rows)
    assert imported(products, sshd.url(tmp_path / "big.csv"), *ssh_args(sshd))["inserted"] == 60_000


def test_an_unknown_host_key_is_refused_with_how_to_trust_it(products, sshd, tmp_path):
    (tmp_path / "feed.csv").write_text(CSV)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    url = sshd.url(tmp_path / "feed.csv")
    result = quiet_cli(products, "import", url, "--identity", str(sshd.identity),
                       "--known-hosts", str(empty))  # fmt: skip
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {url}: the host key of [127.0.0.1]:{sshd.port} is not in known_hosts (check"
        " the key with the server's owner, then trust it: ssh-keyscan -p"
        f" {sshd.port} 127.0.0.1 >> ~/.ssh/known_hosts, or give --known-hosts FILE)"
    )
    assert empty.read_text() == ""  # nothing was added
    assert query(products, "SELECT count(*) FROM products") == [(0,)]


def test_a_changed_host_key_is_refused(products, sshd, tmp_path):
    (tmp_path / "feed.csv").write_text(CSV)
    other = tmp_path / "other_key"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    key_type, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    lying = tmp_path / "known_hosts"
    lying.write_text(f"[127.0.0.1]:{sshd.port} {key_type} {key}\n")
    url = sshd.url(tmp_path / "feed.csv")
    result = quiet_cli(products, "import", url, "--identity", str(sshd.identity),
                       "--known-hosts", str(lying))  # fmt: skip
    assert result.exit_code == 1
    assert error_line(result).startswith(
        f"Error: {url}: the host key of [127.0.0.1]:{sshd.port} has CHANGED since known_hosts"
        " recorded it, refused"
    )


def test_a_missing_file_and_an_unreachable_host(products, sshd, tmp_path):
    url = sshd.url(tmp_path / "nothing.csv")
    result = quiet_cli(products, "import", url, *ssh_args(sshd))
    assert error_line(result) == f"Error: {url}: no such file on the server (check the path)"
    port = closed_port()
    nowhere = f"sftp://{sshd.user}@127.0.0.1:{port}/x.csv"
    result = quiet_cli(products, "import", nowhere, *ssh_args(sshd), "--fetch-retries", "1")
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith(f"Error: {nowhere}: cannot connect to 127.0.0.1:{port} (")
    assert line.endswith(
        "after 2 attempt(s) (the host is unreachable: check the address and the port)"
    )


def test_if_changed_by_size_and_mtime(products, sshd, tmp_path):
    feed = tmp_path / "feed.csv"
    feed.write_text(CSV)
    url = sshd.url(feed)
    assert imported(products, url, *ssh_args(sshd), "--if-changed")["inserted"] == 2
    before = table_checksum(products)
    result = quiet_cli(products, "import", url, *ssh_args(sshd), "--if-changed", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "unchanged_feed"
    assert table_checksum(products) == before
    feed.write_text(CSV + "S-3,three\n")
    assert imported(products, url, *ssh_args(sshd), "--if-changed")["inserted"] == 1
    statuses = [
        s for (s,) in query(products, "SELECT status FROM csvload_runs ORDER BY started_at")
    ]
    assert statuses == ["succeeded", "unchanged_feed", "succeeded"]
