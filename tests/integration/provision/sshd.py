"""A real OpenSSH server on loopback for the playbook tests: its own host key, config and
authorized_keys in a temporary directory, logging in as the user the tests run as."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
# Where a root sshd insists on its privilege separation directory (the Debian service makes it
# at start; here nothing has).
PRIVSEP_DIR = Path("/run/sshd")


def keygen(path: Path, comment: str = "tokenmill-test") -> Path:
    """A new ed25519 key pair at path (private) and path.pub; returns the private key's path."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def openssh_fingerprint(public_key: Path) -> str:
    """The SHA256:... fingerprint as `ssh-keygen -l` prints it (an independent computation)."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


class Sshd:
    def __init__(self, directory: Path, port: int, authorized_key: Path) -> None:
        self.directory = directory
        self.port = port
        self.authorized_key = authorized_key
        self.proc: subprocess.Popen | None = None
        self.host_key: Path | None = None

    def start(self, host_key: Path) -> None:
        """Serve with `host_key` (restarting on the same port if running)."""
        self.stop()
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.host_key = host_key
        shutil.copy(self.authorized_key.with_suffix(".pub"), self.directory / "authorized_keys")
        config = self.directory / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {self.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.directory / 'authorized_keys'}",
            "StrictModes no",  # the temporary directory's modes are not sshd's business here
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowAgentForwarding no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            "LogLevel VERBOSE",
        ]) + "\n")
        log = (self.directory / "sshd.log").open("ab")
        # -D: stay in the foreground (a child we can stop); -e: log to stderr (the log file).
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with status {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port} within 10 s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.directory / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""
