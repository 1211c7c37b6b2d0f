"""The drop folder on disk (dropfolder/folder.py): which files are complete, oldest first,
filing away without overwriting, and the lock."""

from __future__ import annotations

import os

import pytest
from helpers.watch import drop_file

from csvload.dropfolder.folder import DONE, FAILED, DropFolder
from csvload.errors import DropFolderError

CSV = "sku,name\nA-1,Lamp\n"


def test_only_complete_files_count(drop):
    """A .part or .tmp name, a dotfile, a folder and a file still growing are left alone."""
    drop_file(drop, "ready.csv", CSV)
    (drop / "coming.csv.part").write_text(CSV)
    (drop / "coming.TMP").write_text(CSV)
    (drop / ".hidden.csv").write_text(CSV)
    (drop / "sub").mkdir()
    growing = drop / "growing.csv"
    growing.write_text(CSV)

    def sleep(seconds):  # the sender writes on while the watcher waits
        with open(growing, "a") as f:
            f.write("A-2,Chair\n")

    found = DropFolder(drop).complete(1.0, sleep)
    assert [a.name for a in found] == ["ready.csv"]
    # Once it stops changing, it counts.
    found = DropFolder(drop).complete(0.0, lambda s: None)
    assert [a.name for a in found] == ["ready.csv", "growing.csv"]


def test_oldest_first_by_time_then_name(drop):
    drop_file(drop, "a.csv", CSV, age=10)
    drop_file(drop, "z.csv", CSV, age=100)
    b = drop_file(drop, "b.csv", CSV, age=10)
    os.utime(b, ns=((drop / "a.csv").stat().st_mtime_ns,) * 2)
    found = DropFolder(drop).complete(0.0, lambda s: None)
    assert [a.name for a in found] == ["z.csv", "a.csv", "b.csv"]


def test_file_away_never_overwrites(drop):
    """A name taken in done/ gets -1, -2 before its extension; rejects and .error go
    beside the file under its new name."""
    folder = DropFolder(drop)
    (drop / DONE).mkdir()
    (drop / DONE / "p.csv").write_text("earlier")
    (drop / DONE / "p-1.csv.error").write_text("earlier")
    drop_file(drop, "p.csv", CSV)
    (arrival,) = folder.complete(0.0, lambda s: None)
    with folder.locked():
        folder.rejects_path(arrival).write_text("line,reason,record\n")
        moved = folder.file_away(arrival, DONE)
    assert moved == drop / DONE / "p-2.csv"
    assert moved.read_text() == CSV
    assert (drop / DONE / "p-2.csv.rejects.csv").read_text() == "line,reason,record\n"
    assert (drop / DONE / "p.csv").read_text() == "earlier"
    assert not (drop / "p.csv").exists()

    drop_file(drop, "p.csv.gz", "not really gzip")
    (drop / FAILED).mkdir()
    (drop / FAILED / "p.csv.gz").write_text("earlier")
    (arrival,) = folder.complete(0.0, lambda s: None)
    moved = folder.file_away(arrival, FAILED, "p.csv.gz: not a CSV\n(second line)")
    assert moved == drop / FAILED / "p-1.csv.gz"
    assert (drop / FAILED / "p-1.csv.gz.error").read_text() == (
        "p.csv.gz: not a CSV (second line)\n"
    )


def test_a_second_lock_is_refused(drop):
    with DropFolder(drop).locked(), pytest.raises(DropFolderError) as e, DropFolder(drop).locked():
        pass
    assert str(e.value) == (
        f"{drop.resolve()}: another csvload watch holds this folder (pid {os.getpid()} on "
        f"{os.uname().nodename}); nothing was done (one watcher per folder)"
    )
    with DropFolder(drop).locked():  # released
        pass
