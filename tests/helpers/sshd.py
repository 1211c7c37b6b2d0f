"""A real OpenSSH server (Debian's openssh-server) on 127.0.0.1 for the sftp tests: its own
config, a throwaway host key, a throwaway client key pair and a known_hosts file, all in a
temporary directory.  It lets in the user the tests run as (root here), with
AuthorizedKeysFile pointed at the temporary directory and StrictModes off, so the user's
own ~/.ssh is never touched.  The `sshd` fixture in conftest.py starts one."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
INSTALL = "apt-get install openssh-server"


def missing() -> str | None:
    """Why an sshd cannot be started here, or None."""
    if not Path(SSHD).exists():
        return f"no {SSHD} (Debian's openssh-server: {INSTALL})"
    if shutil.which("ssh-keygen") is None:
        return f"no ssh-keygen ({INSTALL})"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip


class Sshd:
    """sshd -D on a free port of 127.0.0.1; .identity, .known_hosts, .user, .url(path)."""

    def __init__(self, home: Path):
        self.home = home
        self.user = getpass.getuser()
        self.port = _free_port()
        host_key = home / "host_key"
        self.identity = home / "id_ed25519"
        _keygen(host_key)
        _keygen(self.identity)
        (home / "authorized_keys").write_text((home / "id_ed25519.pub").read_text())
        self.known_hosts = home / "known_hosts"
        host_public = (home / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_public[0]} {host_public[1]}\n")
        config = home / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {home / 'sshd.pid'}\nAuthorizedKeysFile {home / 'authorized_keys'}\n"
            "StrictModes no\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            f"AllowUsers {self.user}\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation
        self._log = (home / "sshd.log").open("w")
        self._process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    log = (home / "sshd.log").read_text()
                    raise RuntimeError(f"sshd did not start: {log}") from None
                time.sleep(0.05)

    def url(self, path: Path | str) -> str:
        return f"sftp://{self.user}@127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        self._log.close()
