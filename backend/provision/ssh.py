"""One SSH connection to a host being provisioned: commands with streamed output, and SFTP.

Authentication is by private key only: no password, no keyboard-interactive, no agent, and no
agent forwarding (paramiko forwards nothing unless asked), so the key never leaves the
operator's machine. Host keys are checked against tokenmill's own known_hosts (known_hosts.py).

paramiko is blocking: connecting and file transfers run in worker threads (asyncio.to_thread);
each command's output is read by a dedicated thread and handed to the event loop line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shlex
import stat
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from paramiko.auth_strategy import AuthStrategy, InMemoryPrivateKey
from paramiko.config import SSHConfig

from backend.provision.known_hosts import HostKeyError, KnownHosts, fingerprint

log = logging.getLogger(__name__)

# The first line every command prints: its process id, which is also its process group (sshd
# starts each session in a new session and group), so a timed-out command can be killed whole.
_PID_MARKER = "__tokenmill_pid__"
MAX_LINE_CHARS = 8192
KILL_GRACE_S = 2.0


# TERM to the command's whole process group, a short grace, then KILL to what is left. A zombie
# is not left: where init is slow to reap orphans (containers), kill -0 would still see them, so
# ps decides when it is there. (dash's kill takes no `--`: -PGID alone names the group.)
_KILL_GROUP = """
alive() {
    if command -v ps >/dev/null 2>&1; then
        ps -e -o pgid=,stat= | awk '$1 == PGID && $2 !~ /^Z/ { found = 1 } END { exit !found }'
    else
        kill -0 -PGID 2>/dev/null
    fi
}
kill -TERM -PGID 2>/dev/null || exit 0
for i in $(seq TICKS); do alive || exit 0; sleep 0.1; done
kill -KILL -PGID 2>/dev/null
exit 0
"""


class SshError(Exception):
    """The host could not be reached, refused the key, or the connection broke."""


@dataclass(frozen=True)
class SshTarget:
    host: str
    key_file: Path  # the operator's private key (OpenSSH format)
    user: str = "root"
    port: int = 22
    key_passphrase: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 15.0

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int | None  # None when it timed out or the connection dropped
    timed_out: bool = False


LineSink = Callable[[str], Awaitable[None]]


class _KeyOnly(AuthStrategy):
    """Offer exactly one private key; paramiko then tries nothing else."""

    def __init__(self, username: str, pkey: paramiko.PKey) -> None:
        super().__init__(ssh_config=SSHConfig())
        self._username, self._pkey = username, pkey

    def get_sources(self):
        yield InMemoryPrivateKey(self._username, self._pkey)


class SshConnection:
    def __init__(self, target: SshTarget, client: paramiko.SSHClient) -> None:
        self.target = target
        self._client = client
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()

    @classmethod
    async def open(cls, target: SshTarget, known_hosts: KnownHosts) -> SshConnection:
        """Connect and authenticate. Raises HostKeyError (unknown or changed key) or SshError."""
        client = await asyncio.to_thread(_connect, target, known_hosts)
        return cls(target, client)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        self._client.close()

    # ---------------------------------------------------------------- commands
    async def execute(self, script: str, *, timeout_s: float, on_line: LineSink | None = None) -> CommandResult:
        """Run `script` with `sh -e`, stderr merged into stdout, each line handed to on_line as it
        arrives. Past timeout_s (or when cancelled) the command's whole process group is killed."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | _Exit] = asyncio.Queue()
        wrapped = f"echo {_PID_MARKER} $$; exec /bin/sh -ec {shlex.quote(script)}"
        channel = await asyncio.to_thread(self._start, wrapped)
        reader = _Reader(channel, loop, lines)
        reader.start()
        pid: int | None = None
        deadline = loop.time() + timeout_s  # real I/O: a command over SSH
        try:
            while True:
                remaining = deadline - loop.time()  # real I/O
                if remaining <= 0:
                    raise TimeoutError
                item = await asyncio.wait_for(lines.get(), remaining)  # real I/O
                if isinstance(item, _Exit):
                    return CommandResult(item.status)
                if pid is None and item.startswith(_PID_MARKER + " "):
                    with contextlib.suppress(ValueError):
                        pid = int(item.split()[1])
                    continue
                if on_line is not None:
                    await on_line(item)
        except TimeoutError:
            await self._kill(pid)
            return CommandResult(None, timed_out=True)
        except BaseException:  # cancelled, or on_line failed: the command must not run on unattended
            await asyncio.shield(self._kill(pid))
            raise
        finally:
            reader.stop()
            await asyncio.to_thread(channel.close)

    async def capture(self, script: str, *, timeout_s: float) -> tuple[CommandResult, list[str]]:
        """Run `script` and return its output instead of streaming it."""
        out: list[str] = []

        async def keep(line: str) -> None:
            out.append(line)

        return await self.execute(script, timeout_s=timeout_s, on_line=keep), out

    def _start(self, command: str) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError(f"{self.target.address}: the connection is closed")
        channel = transport.open_session(timeout=self.target.connect_timeout_s)
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        channel.shutdown_write()  # no stdin: a command that reads it sees end of file, not a hang
        return channel

    async def _kill(self, pid: int | None) -> None:
        if pid is None:  # it never started; closing the channel is all there is to do
            return
        script = _KILL_GROUP.replace("PGID", str(pid)).replace("TICKS", str(int(KILL_GRACE_S * 10)))
        try:
            channel = await asyncio.to_thread(self._start, script)
            await asyncio.to_thread(_wait_exit, channel, KILL_GRACE_S + 5)
            await asyncio.to_thread(channel.close)
        except (SshError, paramiko.SSHException, OSError) as exc:
            log.warning("%s: could not stop process group %d: %s", self.target.address, pid, exc)

    # ---------------------------------------------------------------- files
    async def upload(self, local: Path, remote: str, mode: int) -> int:
        """Copy a local file to `remote` (atomically: a temporary name, then rename); its size."""
        return await asyncio.to_thread(self._upload, local, remote, mode)

    async def write_file(self, remote: str, data: bytes, mode: int) -> None:
        """Write `data` to `remote` with `mode`. The file has its mode before any byte is written,
        so a secret never sits in a file others can read, and it replaces the old one atomically."""
        await asyncio.to_thread(self._write_file, remote, data, mode)

    async def same_file(self, remote: str, data: bytes | None, mode: int, *, local: Path | None = None) -> bool:
        """Whether `remote` exists with this mode and the content of `data` (or of the local file)."""
        return await asyncio.to_thread(self._same_file, remote, data, mode, local)

    def _sftp_client(self) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None:
                self._sftp = self._client.open_sftp()
            return self._sftp

    def _upload(self, local: Path, remote: str, mode: int) -> int:
        sftp = self._sftp_client()
        tmp = _temporary_name(remote)
        try:
            with local.open("rb") as src, _naming(remote), sftp.open(tmp, "wbx") as dst:
                dst.chmod(mode)
                dst.set_pipelined(True)
                size = 0
                while chunk := src.read(256 * 1024):
                    dst.write(chunk)
                    size += len(chunk)
            with _naming(remote):
                sftp.posix_rename(tmp, remote)
        except BaseException:
            _remove_quietly(sftp, tmp)
            raise
        return size

    def _write_file(self, remote: str, data: bytes, mode: int) -> None:
        sftp = self._sftp_client()
        tmp = _temporary_name(remote)
        try:
            with _naming(remote), sftp.open(tmp, "wbx") as dst:
                dst.chmod(mode)
                dst.write(data)
            with _naming(remote):
                sftp.posix_rename(tmp, remote)
        except BaseException:
            _remove_quietly(sftp, tmp)
            raise

    def _same_file(self, remote: str, data: bytes | None, mode: int, local: Path | None) -> bool:
        sftp = self._sftp_client()
        try:
            st = sftp.stat(remote)
        except FileNotFoundError:
            return False
        if st.st_mode is None or stat.S_IMODE(st.st_mode) != mode or not stat.S_ISREG(st.st_mode):
            return False
        if data is None:
            assert local is not None
            if st.st_size != local.stat().st_size:
                return False
            return _sha256_remote(sftp, remote) == _sha256_local(local)
        if st.st_size != len(data):
            return False
        return _sha256_remote(sftp, remote) == hashlib.sha256(data).hexdigest()


def _connect(target: SshTarget, known_hosts: KnownHosts) -> paramiko.SSHClient:
    address = target.address
    try:
        pkey = paramiko.PKey.from_path(target.key_file, target.key_passphrase)
    except FileNotFoundError:
        raise SshError(f"{address}: private key {target.key_file} not found") from None
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise SshError(f"{address}: cannot load private key {target.key_file}: {exc}") from None
    client = paramiko.SSHClient()
    known_hosts.attach(client)
    try:
        client.connect(target.host, port=target.port, username=target.user, timeout=target.connect_timeout_s,
                       banner_timeout=target.connect_timeout_s, auth_timeout=target.connect_timeout_s,
                       auth_strategy=_KeyOnly(target.user, pkey))
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise known_hosts.changed(target.host, target.port, exc) from None
    except HostKeyError:
        client.close()
        raise
    except paramiko.AuthenticationException:
        client.close()
        raise SshError(f"{address}: the host refused the key {target.key_file} "
                       f"({fingerprint(pkey)}) for user {target.user}") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise SshError(f"{address}: cannot connect: {exc or type(exc).__name__}") from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(30)  # a long pip install must not look like a dead connection to NATs
    return client


@dataclass(frozen=True, slots=True)
class _Exit:
    status: int | None


class _Reader(threading.Thread):
    """Reads a channel until it ends, handing complete lines (then the exit status) to the loop."""

    def __init__(self, channel: paramiko.Channel, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue[str | _Exit]) -> None:
        super().__init__(name="ssh-reader", daemon=True)
        self._channel, self._loop, self._queue = channel, loop, queue
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _emit(self, item: str | _Exit) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _emit_line(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        self._emit(line[:MAX_LINE_CHARS])

    def run(self) -> None:
        buf = b""
        self._channel.settimeout(0.25)  # wake up now and then to notice stop()
        while not self._stop.is_set():
            try:
                data = self._channel.recv(65536)
            except TimeoutError:
                continue
            except (OSError, paramiko.SSHException):
                break
            if not data:
                break
            buf += data
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                self._emit_line(raw)
            if len(buf) > MAX_LINE_CHARS * 4:  # a very long line without a newline: pass it on in pieces
                self._emit_line(buf)
                buf = b""
        if buf:
            self._emit_line(buf)
        if self._stop.is_set():
            return
        self._emit(_Exit(_wait_exit(self._channel, None, self._stop)))


def _wait_exit(channel: paramiko.Channel, timeout_s: float | None,
               stop: threading.Event | None = None) -> int | None:
    """The command's exit status; None if the connection closed without one (or on timeout/stop)."""
    waited = 0.0
    while not channel.exit_status_ready():
        if channel.closed or (stop is not None and stop.is_set()):
            return None
        if timeout_s is not None and waited >= timeout_s:
            return None
        channel.status_event.wait(0.1)
        waited += 0.1
    status = channel.recv_exit_status()
    return None if status == -1 else status


@contextlib.contextmanager
def _naming(remote: str):
    """Report a remote file error under the file's own name, not its temporary one."""
    try:
        yield
    except OSError as exc:
        if exc.filename == remote:
            raise
        raise type(exc)(exc.errno, exc.strerror or str(exc), remote) from None


def _temporary_name(remote: str) -> str:
    return f"{remote}.tmp-{secrets.token_hex(4)}"


def _remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    with contextlib.suppress(OSError, paramiko.SSHException):
        sftp.remove(path)


def _sha256_local(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_remote(sftp: paramiko.SFTPClient, path: str) -> str:
    digest = hashlib.sha256()
    with sftp.open(path, "rb") as fh:
        fh.prefetch()
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()

