"""`csvload watch` as real processes against a real server: a file arriving while another
is imported, two watchers on one folder, SIGTERM and SIGINT mid-import and while idle."""

from __future__ import annotations

import signal

import pytest
from helpers.db import execute, query, table_checksum
from helpers.watch import (
    WAIT,
    drop_file,
    runs,
    sleeping_in_trigger,
    slow_imports,
    start_watch,
    stop,
    wait_until,
    watch_once,
)
from helpers.webhook import Reply

POLL = ("--interval", "0.1", "--settle", "0.2")


def test_a_file_arriving_while_another_is_imported(products, drop):
    """The second file waits for the first import, then is imported on its own."""
    slow_imports(products, 1.5)
    proc = start_watch(products, drop, *POLL)
    drop_file(drop, "first.csv", "sku,name\nA-1,First\n")
    wait_until(lambda: sleeping_in_trigger(products), "the first import", proc)
    drop_file(drop, "second.csv", "sku,name\nA-1,Second\nA-2,Other\n")
    done = drop / "done"
    wait_until(lambda: (done / "second.csv").exists(), "the second file in done/", proc)
    code, _, err = stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert runs(products) == [("first.csv", "succeeded"), ("second.csv", "succeeded")]
    # One after the other: the second import started once the first had finished.
    (overlap,) = query(
        products,
        "SELECT a.finished_at <= b.started_at FROM csvload_runs a, csvload_runs b"
        " WHERE a.file LIKE '%first.csv' AND b.file LIKE '%second.csv'",
    )[0]
    assert overlap
    assert query(products, "SELECT sku, name FROM products ORDER BY sku") == [
        ("A-1", "Second"),
        ("A-2", "Other"),
    ]
    assert sorted(p.name for p in done.iterdir()) == ["first.csv", "second.csv"]
    assert [line for line in err.splitlines() if "moved to done/" in line] == [
        line for line in err.splitlines() if ": imported: " in line
    ]


def test_a_second_watcher_is_refused(products, drop):
    """While one watcher holds the folder, another exits 1 with one line, doing nothing."""
    proc = start_watch(products, drop, *POLL)
    lock = drop / ".csvload-watch.lock"
    wait_until(lambda: lock.exists() and lock.read_text().startswith("pid"), "the lock", proc)
    drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    second = watch_once(products, drop)
    assert second.returncode == 1
    assert second.stderr == (
        f"Error: {drop}: another csvload watch holds this folder (pid {proc.pid} on "
        f"{lock.read_text().split(' on ')[1].strip()}); nothing was done (one watcher per"
        " folder)\n"
    )
    wait_until(lambda: (drop / "done" / "p.csv").exists(), "the first watcher's import", proc)
    assert stop(proc, signal.SIGTERM)[0] == 0
    assert runs(products) == [("p.csv", "succeeded")]


def test_two_watchers_started_together_import_each_file_once(products, drop):
    names = [f"f{i}.csv" for i in range(4)]
    for i, name in enumerate(names):
        drop_file(drop, name, f"sku,name\nA-{i},Item {i}\n", age=10 - i)
    procs = [start_watch(products, drop, "--once", "--settle", "0.2") for _ in range(2)]
    results = [(p.wait(timeout=WAIT), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 1], [0, 0]), results  # [0, 0]: the first was done before the second
    for code, err in results:
        if code == 1:
            assert "another csvload watch holds this folder" in err
    assert sorted(runs(products)) == [(name, "succeeded") for name in names]
    assert sorted(p.name for p in (drop / "done").iterdir()) == names


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_mid_import_rolls_back_and_leaves_the_file(products, drop, signum, code, word):
    """The import rolls back, the watcher exits with the signal's code, and the file is
    where it was (not half-moved, no rejects left); the next run imports it."""
    before = table_checksum(products)
    slow_imports(products, 30)
    path = drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    proc = start_watch(products, drop, *POLL, "--quiet")
    wait_until(lambda: sleeping_in_trigger(products), "the import", proc)
    exit_code, out, err = stop(proc, signum)
    assert exit_code == code, err
    assert err == (
        f"Error: {path}: {word}: rolled back, nothing was written; p.csv stays in the"
        " folder, to be imported next time\n"
    )
    assert table_checksum(products) == before
    assert sorted(p.name for p in drop.iterdir()) == [".csvload", ".csvload-watch.lock", "p.csv"]
    assert list((drop / ".csvload").iterdir()) == []
    assert runs(products) == [("p.csv", "interrupted")]

    execute(products, "DROP TRIGGER slowly ON products")
    again = watch_once(products, drop, "-q")
    assert again.returncode == 0, again.stderr
    assert (drop / "done" / "p.csv").exists()
    assert query(products, "SELECT sku, name FROM products") == [("A-1", "Lamp")]


def test_sigterm_while_idle_exits_0(products, drop):
    """Between files (here, after one was imported) a signal ends the wait at once."""
    proc = start_watch(products, drop, "--interval", "600", "--settle", "0.2", "--quiet")
    drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    wait_until(lambda: (drop / "done" / "p.csv").exists(), "the import", proc)
    assert stop(proc, signal.SIGTERM) == (0, "", "")


def test_killed_between_the_commit_and_the_move(products, drop, receiver):
    """kill -9 while the webhook after the commit is on its way: the file is imported but
    still in the folder.  The next watcher moves it to done/ without importing it again."""
    receiver.script(Reply(delay=30))
    path = drop_file(drop, "p.csv", "sku,name\nA-1,Lamp\n")
    proc = start_watch(products, drop, *POLL, "--quiet", "--webhook", receiver.url)
    wait_until(lambda: bool(receiver.requests), "the webhook", proc)
    proc.kill()
    proc.wait(timeout=WAIT)
    assert path.exists() and not (drop / "done").exists()
    assert runs(products) == [("p.csv", "succeeded")]
    checksum = table_checksum(products)
    (run_id,) = query(products, "SELECT run_id::text FROM csvload_runs")[0]

    again = watch_once(products, drop)
    assert again.returncode == 0, again.stderr
    assert again.stderr == f"{path}: imported already by run {run_id}; moved to done/p.csv\n"
    assert not path.exists() and (drop / "done" / "p.csv").exists()
    assert table_checksum(products) == checksum
    assert runs(products) == [("p.csv", "succeeded")]
