"""The OS account the local server runs as, and running its programs as that account.

PostgreSQL refuses to run as root, so when csvload runs as root the server runs as an
existing unprivileged user (``postgres`` if it exists, else ``nobody``); csvload never adds
users and never changes the mode of folders it did not create.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from csvload.errors import ServerError

# Root's own data folder lives under /root (mode 0700), which the server uid cannot enter.
ROOT_HOME = Path("/var/lib/csvload")
# Unprivileged users csvload may run the server as when it is root, best first.
_ROOT_RUN_AS = ("postgres", "nobody")
# A fixed environment: the caller's PG* variables (PGDATA, PGPORT...) must not steer
# initdb or pg_ctl, and C messages keep the log greppable.
CHILD_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
RUN_TIMEOUT = 120  # twice the server's start timeout: pg_ctl start -w waits that long


@dataclass(frozen=True)
class Account:
    """The OS account that runs the server; ``switch`` means csvload must change uid."""

    name: str
    uid: int
    gid: int
    switch: bool


def server_account(server_dir: Path, run_as: str | None) -> Account:
    """Who runs the server kept in server_dir: the folder's owner when it exists, else
    csvload's own user, or (when csvload is root) ``run_as`` or the first of
    _ROOT_RUN_AS that exists."""
    me = os.geteuid()
    if server_dir.exists():
        # The existing server folder's owner is the truth: its data files are theirs.
        owner = server_dir.stat().st_uid
        if me == 0 and owner == 0:
            raise ServerError(
                f"{server_dir} is owned by root and PostgreSQL refuses to run as "
                "root (remove that folder)"
            )
        if me not in (0, owner):
            raise ServerError(
                f"{server_dir} belongs to {user_name(owner)} "
                "(run csvload as that user, or set CSVLOAD_HOME to your own folder)"
            )
        if me == owner:
            return _self_account()
        entry = _getpwuid(owner)
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)
    if me != 0:
        mine = _self_account()
        if run_as not in (None, mine.name):
            raise ServerError(f"cannot run the local server as {run_as} without being root")
        return mine
    names = (run_as,) if run_as else _ROOT_RUN_AS
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise ServerError(f"cannot run the local server as {name}: it is root")
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=True)
    raise ServerError(
        f"no unprivileged user ({' or '.join(names)}) to run the local server as root "
        "(set DATABASE_URL, or run csvload as a normal user)"
    )


def check_reachable(home: Path, account: Account) -> None:
    """Refuse a home the account cannot walk into (only when csvload switches uid)."""
    if not account.switch:
        return
    # Only the primary group counts: the server runs with extra_groups=[].
    groups = {account.gid}
    for folder in reversed([home, *home.parents]):
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


def run_program(
    argv: list[str],
    account: Account,
    *,
    cwd: Path,
    stdin: str | None = None,
    stderr: object = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """Run a program as the account, in the fixed environment, its stdout captured."""
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
        env=CHILD_ENV,
        timeout=RUN_TIMEOUT,
        check=False,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        **as_user,
    )


def user_name(uid: int) -> str:
    """The user's name, or "uid N" when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _self_account() -> Account:
    entry = _getpwuid(os.geteuid())
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=False)


def _getpwuid(uid: int) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(uid)
    except KeyError as e:
        raise ServerError(f"uid {uid} has no entry in the user database") from e
