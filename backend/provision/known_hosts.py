"""Host keys of the machines tokenmill provisions, kept in its own known_hosts file.

The file lives under the data directory (`<data_dir>/ssh/known_hosts`, OpenSSH's format), never
in ~/.ssh. A host whose key is not there is refused, and the refusal is remembered as a pending
confirmation (host, port, key type, fingerprint); once the operator has compared the fingerprint
with the machine's own (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on it, or the GPU
cloud's console) and confirms it, the key is added and the next connection goes through.

A host that presents a different key than the one on file is always refused, whatever was
confirmed before: confirming cannot replace a key. If the machine really was reinstalled, the
operator forgets the old key first (`forget`), and the new one goes through confirmation.

These functions do small blocking file I/O; async callers run them in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import paramiko

from backend.runtime.clock import now_us

SSH_PORT = 22


class HostKeyError(Exception):
    """The host's key is not trusted; the connection was refused before authenticating."""


class HostKeyUnknown(HostKeyError):
    def __init__(self, pending: PendingHostKey) -> None:
        self.pending = pending
        super().__init__(
            f"{pending.host}:{pending.port} presented a host key tokenmill does not know: {pending.key_type} "
            f"{pending.fingerprint}. Refused. Compare it with the machine's own fingerprint (ssh-keygen -lf "
            "/etc/ssh/ssh_host_*_key.pub on the machine, or the provider's console), then confirm it.")


class HostKeyChanged(HostKeyError):
    def __init__(self, host: str, port: int, known: str, presented: str) -> None:
        self.host, self.port, self.known, self.presented = host, port, known, presented
        super().__init__(
            f"HOST KEY CHANGED for {host}:{port}: tokenmill knows {known}, the host now presents {presented}. "
            "Refused: someone may be intercepting the connection. If the machine was reinstalled, forget the "
            "old key and confirm the new one.")


@dataclass(frozen=True, slots=True)
class PendingHostKey:
    host: str
    port: int
    key_type: str
    fingerprint: str  # SHA256:..., as OpenSSH prints it
    key_base64: str
    seen_us: int


@dataclass(frozen=True, slots=True)
class KnownHostKey:
    host: str
    port: int
    key_type: str
    fingerprint: str


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint: unpadded base64 of the SHA-256 of the key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def entry_name(host: str, port: int) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts."""
    return host if port == SSH_PORT else f"[{host}]:{port}"


def _split_entry(name: str) -> tuple[str, int]:
    if name.startswith("[") and "]:" in name:
        host, port = name[1:].split("]:", 1)
        return host, int(port)
    return name, SSH_PORT


def _describe(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {fingerprint(key)}"


class KnownHosts:
    """The known_hosts file and the pending confirmations beside it, in `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "known_hosts"
        self.pending_path = self.directory / "pending_host_keys.json"
        self._lock = threading.RLock()  # paramiko calls the policy from its own threads

    @classmethod
    def in_data_dir(cls, data_dir: str | Path) -> KnownHosts:
        return cls(Path(data_dir) / "ssh")

    # -------------------------------------------------------------------- for the operator
    def pending(self) -> list[PendingHostKey]:
        """Keys that were refused as unknown and wait for the operator's confirmation, oldest first."""
        with self._lock:
            return sorted(self._read_pending(), key=lambda p: p.seen_us)

    def known(self) -> list[KnownHostKey]:
        with self._lock:
            keys = self._read_known()
        out = []
        for name in keys.keys():
            host, port = _split_entry(name)
            for key_type, key in keys.lookup(name).items():
                out.append(KnownHostKey(host, port, key_type, fingerprint(key)))
        return out

    def confirm(self, host: str, port: int, fingerprint_: str) -> KnownHostKey:
        """Trust the pending key of host:port with this fingerprint (as OpenSSH prints it, SHA256:...).

        Raises LookupError when no such key is pending, and HostKeyChanged when the host already has
        another key on file (forget that one first, if the machine was really reinstalled)."""
        wanted = fingerprint_.strip()
        if not wanted.startswith("SHA256:"):
            wanted = "SHA256:" + wanted
        with self._lock:
            pending = self._read_pending()
            match = next((p for p in pending if p.host == host and p.port == port and p.fingerprint == wanted), None)
            if match is None:
                waiting = [p.fingerprint for p in pending if p.host == host and p.port == port]
                detail = f"pending for it: {', '.join(waiting)}" if waiting else "nothing is pending for it"
                raise LookupError(f"no pending host key {wanted} for {host}:{port} ({detail}); "
                                  "connect once so that its key is recorded, then confirm")
            key = paramiko.PKey.from_type_string(match.key_type, base64.b64decode(match.key_base64))
            keys = self._read_known()
            name = entry_name(host, port)
            on_file = keys.lookup(name) or {}
            if on_file and any(k != key for k in on_file.values()):
                known = ", ".join(_describe(k) for k in on_file.values())
                raise HostKeyChanged(host, port, known, _describe(key))
            keys.add(name, key.get_name(), key)
            self._write_known(keys)
            self._write_pending([p for p in pending if (p.host, p.port) != (host, port)])
        return KnownHostKey(host, port, key.get_name(), fingerprint(key))

    def forget(self, host: str, port: int = SSH_PORT) -> bool:
        """Drop every key of host:port (known and pending); True if there was one."""
        with self._lock:
            keys = self._read_known()
            name = entry_name(host, port)
            had = name in keys
            if had:
                del keys[name]
                self._write_known(keys)
            pending = self._read_pending()
            rest = [p for p in pending if (p.host, p.port) != (host, port)]
            if len(rest) != len(pending):
                self._write_pending(rest)
                had = True
        return had

    # -------------------------------------------------------------------- for the SSH client
    def attach(self, client: paramiko.SSHClient) -> None:
        """Make `client` trust exactly this file: known keys pass, others are refused (and recorded)."""
        with self._lock:
            keys = self._read_known()
        store = client.get_host_keys()
        store.clear()
        for name in keys.keys():
            for key_type, key in keys.lookup(name).items():
                store.add(name, key_type, key)
        client.set_missing_host_key_policy(_RecordAndRefuse(self))

    def changed(self, host: str, port: int, exc: paramiko.BadHostKeyException) -> HostKeyChanged:
        """paramiko's refusal of a different key, with both fingerprints."""
        return HostKeyChanged(host, port, _describe(exc.expected_key), _describe(exc.key))

    def record_unknown(self, name: str, key: paramiko.PKey) -> PendingHostKey:
        host, port = _split_entry(name)
        entry = PendingHostKey(host, port, key.get_name(), fingerprint(key), key.get_base64(), now_us())
        with self._lock:
            pending = [p for p in self._read_pending()
                       if (p.host, p.port, p.fingerprint) != (host, port, entry.fingerprint)]
            self._write_pending([*pending, entry])
        return entry

    # -------------------------------------------------------------------- files
    def _read_known(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.path.is_file():
            keys.load(str(self.path))
        return keys

    def _write_known(self, keys: paramiko.HostKeys) -> None:
        lines = []
        for name in keys.keys():
            for key_type, key in keys.lookup(name).items():
                lines.append(f"{name} {key_type} {key.get_base64()}\n")
        self._write(self.path, "".join(lines))

    def _read_pending(self) -> list[PendingHostKey]:
        try:
            raw = json.loads(self.pending_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise HostKeyError(f"{self.pending_path}: unreadable ({exc}); remove it to start afresh") from None
        return [PendingHostKey(**item) for item in raw]

    def _write_pending(self, pending: list[PendingHostKey]) -> None:
        self._write(self.pending_path, json.dumps([asdict(p) for p in pending], indent=1) + "\n")

    def _write(self, path: Path, text: str) -> None:
        # Written whole and renamed into place, 0600 in a 0700 directory: a crash never leaves half
        # a file, and other local users cannot add keys.
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class _RecordAndRefuse(paramiko.MissingHostKeyPolicy):
    """paramiko asks this only for a host with no key on file: remember the key, refuse the connection."""

    def __init__(self, known_hosts: KnownHosts) -> None:
        self._known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyUnknown(self._known_hosts.record_unknown(hostname, key))
