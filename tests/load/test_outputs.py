"""Issue 19, the files an import writes (--rejects, --changes): which paths are refused
before anything is read, and a write that fails (a full disk, a file size limit) rolls the
import back with one line, never leaving a truncated file in place or a temp file behind.

The write failures are real: a small tmpfs (skipped with the reason when mount is refused)
and a subprocess under RLIMIT_FSIZE, whose writes past the limit fail with EFBIG."""

from __future__ import annotations

import csv
import os
import resource
import signal
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers.cli import csvload_cmd, error_line, quiet_cli
from helpers.db import prefill, table_checksum
from helpers.files import temp_files, write_file
from helpers.library import import_file

from csvload.errors import OutputPathError

ROWS = b"sku,name\na,A\nb,B\n"
WITH_REJECTS = b"sku,name\na,A\nb,B,extra\nc,C\n"


def usage_error(result) -> str:
    """The error line under click's usage lines."""
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[-1]


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- the input file ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--changes", "--rejects"])
@pytest.mark.parametrize("spelling", ["same", "dot_slash", "symlink", "hard_link"])
def test_an_output_naming_the_input_is_refused(products, tmp_path, monkeypatch, option,
                                               spelling):
    before = prefill(products)
    monkeypatch.chdir(tmp_path)
    path = write_file(tmp_path, ROWS, "in.csv")
    other = {
        "same": lambda: path,
        "dot_slash": lambda: "./in.csv",
        "symlink": lambda: os.symlink(path, "link.csv") or "link.csv",
        "hard_link": lambda: os.link(path, "hard.csv") or "hard.csv",
    }[spelling]()
    result = quiet_cli(products, "import", path, option, other)
    assert usage_error(result) == f"Error: Invalid value for {option}: must not be the input file"
    assert Path(path).read_bytes() == ROWS
    assert table_checksum(products) == before
    assert temp_files(tmp_path) == []


def test_changes_naming_stdin_s_file_is_refused(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, ROWS, "in.csv")
    with open(path, "rb") as stdin:
        done = subprocess.run(
            csvload_cmd("import", "-", "--dsn", products, "--quiet", "--changes", path),
            stdin=stdin, capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "Error: Invalid value for --changes: must not be the input file"
    )
    assert Path(path).read_bytes() == ROWS
    assert table_checksum(products) == before


# -- two outputs of one run -------------------------------------------------------------------


@pytest.mark.parametrize("rejects", ["same", "dot_slash", "default"])
def test_changes_and_rejects_naming_one_file_are_refused(products, tmp_path, monkeypatch,
                                                         rejects):
    before = prefill(products)
    monkeypatch.chdir(tmp_path)
    path = write_file(tmp_path, WITH_REJECTS, "in.csv")
    changes = "in.csv.rejects.csv" if rejects == "default" else "out.csv"
    extra = {"same": ["--rejects", "out.csv"], "dot_slash": ["--rejects", "./out.csv"],
             "default": []}[rejects]
    result = quiet_cli(products, "import", path, "--max-errors", "5", "--changes", changes, *extra)
    assert usage_error(result) == (
        "Error: Invalid value for --changes: must not be the rejects file"
    )
    assert table_checksum(products) == before
    assert entries(tmp_path) == ["in.csv"]


# -- special files ----------------------------------------------------------------------------


def special(tmp_path: Path, kind: str) -> Path:
    """A real directory, FIFO, socket, device node or symlink at tmp_path/kind."""
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "device":
        # A node of its own with /dev/null's numbers: the real /dev/null is not put at risk.
        try:
            os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except PermissionError as e:
            pytest.skip(f"cannot make a device node here: {e}")
    elif kind == "symlink":
        (tmp_path / "pointed.csv").write_text("kept\n")
        path.symlink_to(tmp_path / "pointed.csv")
    return path


KINDS = {
    "directory": "a directory (give a regular file or a new path)",
    "fifo": "a FIFO (give a regular file or a new path)",
    "socket": "a socket (give a regular file or a new path)",
    "device": "a character device (give a regular file or a new path)",
    "symlink": "a symbolic link (give the file it points to, or another path)",
}


@pytest.mark.parametrize("option", ["--rejects", "--changes"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_special_file_as_an_output_is_refused_and_left_alone(products, tmp_path, option,
                                                               kind):
    before = prefill(products)
    path = write_file(tmp_path, WITH_REJECTS, "in.csv")
    target = special(tmp_path, kind)
    mode = os.lstat(target).st_mode
    result = quiet_cli(products, "import", path, "--max-errors", "5", option, str(target))
    if kind == "directory":  # click.Path(dir_okay=False) says it first, for a flag
        assert result.exit_code == 2
        assert "is a directory" in result.stderr
    else:
        assert usage_error(result) == (
            f"Error: Invalid value for {option}: {target} is {KINDS[kind]}"
        )
    assert table_checksum(products) == before
    assert os.lstat(target).st_mode == mode
    if kind == "symlink":
        assert (tmp_path / "pointed.csv").read_text() == "kept\n"
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("key", ["changes", "rejects"])
def test_a_folder_named_in_the_config_file_is_refused_before_the_import(products, tmp_path,
                                                                        key):
    before = prefill(products)
    (tmp_path / "out").mkdir()
    (tmp_path / "feeds.toml").write_text(f'[feeds.shop]\nmax_errors = 5\n{key} = "out"\n')
    path = write_file(tmp_path, WITH_REJECTS, "in.csv")
    result = quiet_cli(products, "import", "--feed", "shop", "--config",
                       str(tmp_path / "feeds.toml"), path)
    assert usage_error(result) == (
        f"Error: Invalid value for --{key}: {tmp_path / 'out'} is a directory"
        " (give a regular file or a new path)"
    )
    assert table_checksum(products) == before
    assert entries(tmp_path / "out") == []


def test_the_library_refuses_an_output_naming_the_input(products, tmp_path):
    before = prefill(products)
    path = write_file(tmp_path, ROWS, "in.csv")
    with pytest.raises(OutputPathError) as raised:
        import_file(products, path, changes_path=Path(path))
    assert str(raised.value) == "--changes: must not be the input file"
    assert Path(path).read_bytes() == ROWS
    assert table_checksum(products) == before


# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 64 kB tmpfs: writing more fails with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def many(n: int, bad: bool = False) -> bytes:
    """n rows; with `bad`, every row has a field too many (a reject)."""
    extra = ",x" if bad else ""
    return b"sku,name\n" + "".join(f"k{i:06d},name {i}{extra}\n" for i in range(n)).encode()


def test_changes_on_a_full_disk_roll_the_import_back(products, tmp_path, small_disk):
    before = prefill(products)
    changes = small_disk / "changes.csv"
    path = write_file(tmp_path, many(20_000))
    result = quiet_cli(products, "import", path, "--changes", str(changes))
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {changes}: cannot write the changes file: No space left on device;"
        " nothing was imported"
    )
    assert table_checksum(products) == before
    assert entries(small_disk) == []


def test_rejects_on_a_full_disk_roll_the_import_back(products, tmp_path, small_disk):
    before = prefill(products)
    rejects = small_disk / "rejects.csv"
    path = write_file(tmp_path, many(5) + many(20_000, bad=True)[len(b"sku,name\n"):])
    result = quiet_cli(products, "import", path, "--max-errors", "100000", "--rejects",
                       str(rejects))
    assert result.exit_code == 1
    assert error_line(result) == (
        f"Error: {rejects}: cannot write the rejects file: No space left on device;"
        " nothing was imported"
    )
    assert table_checksum(products) == before
    assert entries(small_disk) == []


# -- a file size limit (RLIMIT_FSIZE): EFBIG, also where the buffer is flushed -----------------


def limited(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def run_limited(dsn: str, path: str, limit: int, *extra: str):
    return subprocess.run(
        csvload_cmd("import", path, "--dsn", dsn, "--quiet", *extra),
        capture_output=True, text=True, timeout=120, preexec_fn=limited(limit),
    )


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


FILE_TOO_LARGE = os.strerror(27)  # EFBIG


@pytest.mark.parametrize("rows", [200, 20_000], ids=["at_the_flush", "mid_copy"])
def test_changes_past_the_size_limit_roll_the_import_back(products, tmp_path, rows):
    """200 rows of changes (3 kB) sit in the file's buffer until the flush before COMMIT;
    20,000 overflow it while the merge's COPY runs."""
    before = prefill(products)
    out = tmp_path / "out"
    out.mkdir()
    changes = out / "changes.csv"
    done = run_limited(products, write_file(tmp_path, many(rows)), 1000, "--changes", str(changes))
    assert done.returncode == 1, done.stderr
    assert one_line(done.stderr) == (
        f"Error: {changes}: cannot write the changes file: {FILE_TOO_LARGE};"
        " nothing was imported"
    )
    assert table_checksum(products) == before
    assert entries(out) == []


@pytest.mark.parametrize("max_errors", ["1000", "0"], ids=["import_ok", "import_failed"])
def test_rejects_past_the_size_limit_roll_back_and_are_not_put_in_place(products, tmp_path,
                                                                        max_errors):
    """100 rejects (2 kB) fail only when flushed: before COMMIT for an import that would
    have succeeded, in the rejects' own ending for one that failed anyway."""
    before = prefill(products)
    out = tmp_path / "out"
    out.mkdir()
    rejects = out / "rejects.csv"
    path = write_file(tmp_path, many(5) + many(100, bad=True)[len(b"sku,name\n"):])
    done = run_limited(products, path, 1000, "--max-errors", max_errors, "--rejects",
                       str(rejects))
    assert done.returncode == 1, done.stderr
    assert one_line(done.stderr) == (
        f"Error: {rejects}: cannot write the rejects file: {FILE_TOO_LARGE};"
        " nothing was imported"
    )
    assert table_checksum(products) == before
    assert entries(out) == []


def test_an_earlier_changes_file_is_kept_when_the_new_one_cannot_be_written(products,
                                                                            tmp_path):
    before = prefill(products)
    out = tmp_path / "out"
    out.mkdir()
    changes = out / "changes.csv"
    earlier = f"sku,change,columns\n{uuid.uuid4()},inserted,\n"
    changes.write_text(earlier)
    done = run_limited(products, write_file(tmp_path, many(200)), 1000, "--changes", str(changes))
    assert done.returncode == 1, done.stderr
    assert table_checksum(products) == before
    assert changes.read_text() == earlier
    assert entries(out) == ["changes.csv"]


def test_outputs_within_the_limit_are_put_in_place(products, tmp_path):
    """The same limit, files that fit: the import commits and both files are whole."""
    out = tmp_path / "out"
    out.mkdir()
    path = write_file(tmp_path, many(3) + many(2, bad=True)[len(b"sku,name\n"):])
    done = run_limited(products, path, 1000, "--max-errors", "5", "--rejects",
                       str(out / "rejects.csv"), "--changes", str(out / "changes.csv"))
    assert done.returncode == 3, done.stderr
    assert entries(out) == ["changes.csv", "rejects.csv"]
    assert (out / "changes.csv").read_text().count("inserted") == 3
    assert (out / "rejects.csv").read_bytes().count(b"\r\n") == 3
    with psycopg.connect(products) as c:
        assert c.execute("SELECT count(*) FROM products").fetchone()[0] == 3


# -- the rejects file is data, not a spreadsheet ----------------------------------------------


def test_formula_like_cells_are_kept_verbatim_in_the_rejects_file(products, tmp_path):
    """Decision (docs/guarantees.md): cells starting with =, +, - or @ are written as they
    were read, so the record can be fixed and fed back; the rejects file is CSV data, to be
    opened as text, never as a spreadsheet."""
    rows = ['=HYPERLINK("http://x","y"),a,b', "+1+2,a,b", "-3,a,b", "@SUM(A1),a,b"]
    path = write_file(tmp_path, ("sku,name\nok,fine\n" + "\n".join(rows) + "\n").encode())
    result = quiet_cli(products, "import", path, "--max-errors", "10", "--quiet")
    assert result.exit_code == 3, result.stderr
    with open(path + ".rejects.csv", newline="", encoding="utf-8") as f:
        records = [r["record"] for r in csv.DictReader(f)]
    assert records == rows
