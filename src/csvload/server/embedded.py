"""The managed local PostgreSQL server csvload uses when it is given no DSN: its files
and its lifecycle (initialise, start, stop, status).  Who runs it is account.py's business,
which programs binaries.py's.

Layout of the home folder (the caller chooses it, see ``default_home``)::

    HOME/server.lock     flock lock, so two csvload processes never start two servers
    HOME/server/         owned by the uid that runs PostgreSQL, mode 0700
        data/            the cluster (initdb'ed as data.init, then renamed into place)
        run/             the unix socket; its 0700 mode is what guards trust auth
        server.log       the server's log

The server listens on the unix socket only (``listen_addresses = ''``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from csvload.errors import ServerError
from csvload.server.account import (
    ROOT_HOME,
    Account,
    check_reachable,
    run_program,
    server_account,
    user_name,
)
from csvload.server.binaries import Binaries, ServerPrograms, find_bindir, find_bindirs

__all__ = [
    "DATABASE", "PORT", "ROOT_HOME", "SUPERUSER", "Binaries", "LocalServer", "ServerStatus",
    "default_home", "find_bindir", "find_bindirs",
]  # fmt: skip

# The port only names the socket file (.s.PGSQL.<port>) because nothing listens on TCP;
# an unusual number keeps a DSN that lost its host= from reaching a system server on 5432.
PORT = 54329
SUPERUSER = "postgres"
DATABASE = "csvload"

# sun_path is 108 bytes on Linux including the NUL; PostgreSQL refuses longer socket paths.
_SOCKET_PATH_MAX = 107
_START_TIMEOUT = 60
_STOP_TIMEOUT = 60
_LOCK_TIMEOUT = 120
_LOG_PROBLEM = re.compile(r"(?:FATAL|PANIC|ERROR):\s.*")
_SERVER_SETTINGS = """
# Added by csvload. The server is private to its home folder: no TCP, and a socket
# directory only its owner can enter, which is what makes trust auth safe.
listen_addresses = ''
unix_socket_permissions = 0700
# Bulk loads write a lot of WAL; fewer forced checkpoints without giving up fsync.
max_wal_size = '1GB'
checkpoint_timeout = '15min'
log_line_prefix = '%m [%p] '
"""


def default_home(env: Mapping[str, str], is_root: bool) -> Path:
    """The home folder for the managed server, from an environment mapping.

    ``CSVLOAD_HOME`` wins.  Root gets ``/var/lib/csvload``: root's own data folder
    lives under /root (mode 0700), which the unprivileged server uid cannot enter, and
    csvload will not loosen folders it does not own.  Everyone else gets
    ``$XDG_DATA_HOME/csvload``, else ``~/.local/share/csvload``.
    """
    if env.get("CSVLOAD_HOME"):
        return Path(env["CSVLOAD_HOME"])
    if is_root:
        return ROOT_HOME
    xdg = env.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative XDG_DATA_HOME is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "csvload"
    if env.get("HOME"):
        return Path(env["HOME"]) / ".local" / "share" / "csvload"
    raise ServerError("cannot tell where to keep the local server (set CSVLOAD_HOME)")


@dataclass(frozen=True)
class ServerStatus:
    """What ``LocalServer.status`` found; ``binaries``/``version`` are None if unknown."""

    running: bool
    pid: int | None
    initialized: bool
    home: Path
    data_dir: Path
    socket_dir: Path
    log_file: Path
    user: str
    binaries: Path | None
    version: str | None
    url: str


class LocalServer:
    """A PostgreSQL server that csvload initialises, starts and stops in ``home``.

    ``bindirs`` overrides where to look for server binaries (default ``find_bindirs()``);
    an empty list means none.  ``run_as`` names the existing unprivileged user to run the
    server as when csvload is root (default: ``postgres`` if it exists, else ``nobody``).
    """

    def __init__(
        self, home: Path, *, bindirs: Sequence[Path] | None = None, run_as: str | None = None
    ) -> None:
        self.home = Path(home).absolute()
        self.server_dir = self.home / "server"
        self.data_dir = self.server_dir / "data"
        self.socket_dir = self.server_dir / "run"
        self.log_file = self.server_dir / "server.log"
        self._lock_file = self.home / "server.lock"
        self._pid_file = self.data_dir / "postmaster.pid"
        self._socket = self.socket_dir / f".s.PGSQL.{PORT}"
        self._programs = ServerPrograms(bindirs)
        self._run_as = run_as

    # ----------------------------------------------------------------- public API

    def url(self) -> str:
        """A libpq DSN for the ``csvload`` database; ``psql "$(csvload db url)"`` takes it."""
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql:///{DATABASE}?host={host}&port={PORT}&user={SUPERUSER}"

    def ensure(self) -> str:
        """Initialise the cluster if needed, start the server if it is not running.

        Returns the DSN.  When the server already runs this costs a lock and a socket
        connect, no subprocess.
        """
        self._check_socket_path()
        self._make_home()
        with self._locked():
            if self._accepting():
                return self.url()
            account = self._account()
            self._init_cluster(account)
            self._start(account)
        return self.url()

    def start(self) -> str:
        """Same as ``ensure``: starting a running server is not an error."""
        return self.ensure()

    def stop(self) -> bool:
        """Stop the server (fast shutdown); returns False if it was not running."""
        if not self.home.is_dir():
            return False
        with self._locked():
            pid = self._postmaster_pid()
            if pid is None:
                return False
            try:
                # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint.
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                return False
            except PermissionError as e:
                raise ServerError(
                    f"cannot stop the local server (pid {pid}) owned by another user "
                    f"(run as {user_name(self.server_dir.stat().st_uid)} or root)"
                ) from e
            deadline = time.monotonic() + _STOP_TIMEOUT
            while self._pid_file.exists() and _pid_state(pid) == "postgres":
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the local server (pid {pid}) did not stop within {_STOP_TIMEOUT} s "
                        f"(see {self.log_file})"
                    )
                time.sleep(0.05)
            return True

    def status(self) -> ServerStatus:
        """Whether the server runs, where its files are, and which binaries serve it."""
        pid = self._postmaster_pid() if self.data_dir.is_dir() else None
        running = pid is not None and self._accepting()
        initialized = (self.data_dir / "PG_VERSION").is_file()
        user = self._owner_name()
        binaries: Binaries | None = None
        exe = _process_exe(pid) if pid is not None else None
        with contextlib.suppress(ServerError):
            if exe is not None:
                probed = self._programs.probe(exe.parent, self._account())
                binaries = probed if isinstance(probed, Binaries) else None
            elif pid is None:
                binaries = self._pick_binaries(self._account(), self._data_major())
        return ServerStatus(
            running=running,
            pid=pid,
            initialized=initialized,
            home=self.home,
            data_dir=self.data_dir,
            socket_dir=self.socket_dir,
            log_file=self.log_file,
            user=user,
            binaries=binaries.bindir if binaries else None,
            version=binaries.version if binaries else None,
            url=self.url(),
        )

    # ------------------------------------------------------------- who runs it

    def _account(self) -> Account:
        return server_account(self.server_dir, self._run_as)

    def _pick_binaries(self, account: Account, major: str | None) -> Binaries:
        return self._programs.pick(account, major, self.data_dir)

    def _owner_name(self) -> str:
        try:
            return self._account().name
        except ServerError:
            return "?"

    # ------------------------------------------------------------- init and start

    def _make_home(self) -> None:
        try:
            if os.geteuid() != 0:
                self.home.mkdir(parents=True, exist_ok=True)
                return
            # Folders csvload creates itself get 0755 whatever the umask, so the server
            # uid can walk through them; folders that already exist are left as they are.
            missing = [p for p in (self.home, *self.home.parents) if not p.exists()]
            for folder in reversed(missing):
                with contextlib.suppress(FileExistsError):
                    folder.mkdir(mode=0o755)
                    folder.chmod(0o755)
        except OSError as e:
            raise ServerError(
                f"cannot create {self.home}: {e.strerror} (set CSVLOAD_HOME to a folder you "
                "can write)"
            ) from e

    def _make_server_dir(self, account: Account) -> None:
        check_reachable(self.home, account)
        if not self.server_dir.exists():
            self.server_dir.mkdir(mode=0o700)
            if account.switch:
                os.chown(self.server_dir, account.uid, account.gid)
        if not self.socket_dir.exists():
            self.socket_dir.mkdir(mode=0o700)
            if account.switch:
                os.chown(self.socket_dir, account.uid, account.gid)

    def _data_major(self) -> str | None:
        try:
            return (self.data_dir / "PG_VERSION").read_text().strip()
        except FileNotFoundError:
            return None

    def _init_cluster(self, account: Account) -> None:
        if self._data_major() is not None:
            return
        if self.data_dir.exists():
            raise ServerError(
                f"{self.data_dir} exists but is not a PostgreSQL data folder (remove it)"
            )
        binaries = self._pick_binaries(account, None)
        self._make_server_dir(account)
        # Build the cluster beside its final place and rename it in, so a run killed
        # half-way through initdb leaves nothing that looks like a cluster.
        staging = self.server_dir / "data.init"
        if staging.exists():
            shutil.rmtree(staging)
        self._checked(
            [
                str(binaries.bindir / "initdb"),
                "-D",
                str(staging),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
            account,
            "initdb",
        )
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write(_SERVER_SETTINGS)
        # Single-user mode creates the database before the server ever listens, so the
        # URL's database exists from the first start; exit_on_error makes a failed
        # statement a non-zero exit instead of a line on stderr.
        self._checked(
            [
                str(binaries.bindir / "postgres"),
                "--single",
                "-D",
                str(staging),
                "-c",
                "exit_on_error=on",
                "postgres",
            ],
            account,
            "creating the csvload database",
            stdin=f"CREATE DATABASE {DATABASE};\n",
        )
        staging.rename(self.data_dir)

    def _start(self, account: Account) -> None:
        self._make_server_dir(account)
        self._clear_stale()
        if self._accepting():
            return
        binaries = self._pick_binaries(account, self._data_major())
        options = f"-p {PORT} -k {shlex.quote(str(self.socket_dir))}"
        argv = [
            str(binaries.bindir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(_START_TIMEOUT),
            "-s",
            "-o",
            options,
        ]
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        # pg_ctl's daemonised postmaster must not inherit a pipe we read to EOF, so
        # pg_ctl's own output goes to a temporary file.
        with tempfile.TemporaryFile("w+") as err:
            try:
                done = run_program(argv, account, cwd=self.server_dir, stderr=err)
            except OSError as e:
                raise ServerError(f"cannot run {argv[0]}: {e.strerror}") from e
            except subprocess.TimeoutExpired as e:
                raise ServerError(f"pg_ctl start hung (see {self.log_file})") from e
            err.seek(0)
            message = err.read()
        if done.returncode != 0 or not self._accepting():
            reason = self._log_problem(log_start) or _last_line(message)
            raise ServerError(f"the local server did not start: {reason} (see {self.log_file})")

    def _clear_stale(self) -> None:
        """Make way after a crash: drop lock files whose postmaster is gone.

        PostgreSQL itself ignores a postmaster.pid whose pid is dead, but a reused pid
        (after a reboot, or a zombie that nobody reaped) makes it refuse to start.
        """
        pid = _read_pid(self._pid_file)
        if pid is None:
            return
        if _pid_state(pid) == "postgres":
            # A live postmaster still owns the data folder: it is starting, recovering
            # or shutting down. Give it the start timeout to settle either way.
            deadline = time.monotonic() + _START_TIMEOUT
            while _pid_state(pid) == "postgres" and not self._accepting():
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"postgres pid {pid} holds {self.data_dir} but accepts no "
                        f"connections (see {self.log_file})"
                    )
                time.sleep(0.1)
            if self._accepting():
                return
        for stale in (self._pid_file, self._socket, Path(f"{self._socket}.lock")):
            stale.unlink(missing_ok=True)

    # ------------------------------------------------------------- helpers

    def _check_socket_path(self) -> None:
        size = len(os.fsencode(self._socket))
        if size > _SOCKET_PATH_MAX:
            raise ServerError(
                f"socket path {self._socket} is {size} bytes, more than the "
                f"{_SOCKET_PATH_MAX} a unix socket allows (set CSVLOAD_HOME to a shorter path)"
            )

    def _postmaster_pid(self) -> int | None:
        pid = _read_pid(self._pid_file)
        return pid if pid is not None and _pid_state(pid) == "postgres" else None

    def _accepting(self) -> bool:
        """True if a server answers on our socket (a stale socket file refuses)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(os.fsencode(self._socket))
            except OSError:
                return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ServerError(
                f"cannot open {self._lock_file}: {e.strerror} (set CSVLOAD_HOME to a folder "
                "you own)"
            ) from e
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServerError(
                            f"another csvload process has held {self._lock_file} for "
                            f"{_LOCK_TIMEOUT} s (is it stuck?)"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def _checked(
        self, argv: list[str], account: Account, what: str, *, stdin: str | None = None
    ) -> None:
        try:
            done = run_program(argv, account, cwd=self.server_dir, stdin=stdin)
        except (OSError, subprocess.SubprocessError) as e:
            raise ServerError(f"{what} failed: {e}") from e
        if done.returncode != 0:
            detail = _last_line(done.stderr or done.stdout or f"exit status {done.returncode}")
            raise ServerError(f"{what} failed: {detail}")

    def _log_problem(self, since: int) -> str:
        """The last FATAL/ERROR line the server logged after byte ``since``."""
        try:
            with self.log_file.open("rb") as f:
                f.seek(max(since, f.seek(0, os.SEEK_END) - 65536))
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        # The log's own prefix (time and pid) is noise in a one-line message.
        found = [m.group(0) for m in map(_LOG_PROBLEM.search, lines) if m]
        return found[-1] if found else ""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "pg_ctl gave no reason"


def _read_pid(pid_file: Path) -> int | None:
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(first) if first.isdigit() else None


def _pid_state(pid: int) -> str:
    """'postgres' for a live postgres process, 'other' for another live one, else 'gone'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    except OSError:
        # No /proc (not Linux): signal 0 tells only whether the pid exists.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            return "postgres"
        return "postgres"
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    state = raw[raw.rindex(")") + 2 :][:1]
    if state in ("Z", "X"):
        return "gone"  # a killed postmaster that no one has reaped yet
    return "postgres" if comm == "postgres" else "other"


def _process_exe(pid: int) -> Path | None:
    """The postmaster's program path, from argv[0] (readable without ptrace rights)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return None
    path = Path(os.fsdecode(argv0))
    return path if path.is_absolute() else None
