"""What a person sees: the rich progress bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading

from helpers.cli import csvload_cmd
from helpers.db import fetch_products


def _on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run argv with stderr on a pseudo-terminal: (exit code, stdout, the terminal's text)."""
    master, slave = pty.openpty()
    seen: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child and we have closed the slave
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, timeout=120)
    finally:
        os.close(slave)
        reader.join()
        os.close(master)
    return done.returncode, done.stdout.decode(), b"".join(seen).decode("utf-8", "replace")


def test_progress_bar_on_a_terminal(products, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\n" + "".join(f"S-{i},n{i}\n" for i in range(50_000)))
    code, stdout, screen = _on_a_terminal(
        csvload_cmd("import", str(path), "--dsn", products, "--json")
    )
    assert code == 0, screen
    assert json.loads(stdout)["inserted"] == 50_000  # stdout stays machine-readable
    assert "done" in screen and "50,000 rows" in screen  # the bar's last state
    assert f"{path}: imported: 50,000 rows read" in screen  # then the summary line
    assert "Traceback" not in screen
    assert len(fetch_products(products)) == 50_000


def test_plain_lines_when_stderr_is_not_a_terminal(products, tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("sku,name\nA,a\n")
    done = subprocess.run(
        csvload_cmd("import", str(path), "--dsn", products), capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "\x1b[" not in done.stderr  # no escape sequences in a log
    assert done.stderr.splitlines()[-1].startswith(f"{path}: imported: 1 rows read")


def test_failed_import_on_a_terminal_leaves_one_error_line(dsn, tmp_path):
    """No products table: the import fails after reading, whether or not the bar (whose
    rich import runs on a thread) has appeared yet; the terminal shows the error, no
    traceback."""
    path = tmp_path / "p.csv"
    path.write_text("sku,name\n" + "".join(f"S-{i},n{i}\n" for i in range(20_000)))
    code, stdout, screen = _on_a_terminal(csvload_cmd("import", str(path), "--dsn", dsn))
    assert code == 1, screen
    assert "run 'csvload init' first" in screen
    assert "Traceback" not in screen
