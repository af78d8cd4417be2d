"""Getting to a machine before a playbook runs: its SSH port open, its host key trusted.

An unknown host key puts the job in `waiting_host_key` until the operator confirms the
fingerprint (the confirm endpoint wakes the job; a confirmation made by another backend replica
is seen within a second). A changed key, or no confirmation in time, fails the job.

With `trust_new` (ProvisionRequest.trust_new_host_key, for an instance the job itself just
created at a provider) the unknown key is accepted on first sight instead: recorded as confirmed,
and told as a warning event. Nobody has compared it with the machine's own, so a
machine-in-the-middle between us and the new instance would go unnoticed; a changed key still fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from backend.provision.jobs import Job
from backend.provision.known_hosts import HostKeyChanged, HostKeyUnknown, KnownHosts
from backend.provision.ssh import SshConnection, SshError, SshTarget
from backend.runtime.bus import EventBus
from backend.wire.provision import HostKeyOut

PORT_RETRY_S = 2.0  # between attempts to reach a booting machine's SSH port
KEY_POLL_S = 1.0  # between looks at the known_hosts file while waiting for a confirmation


class ProvisionError(Exception):
    """A job cannot go on; the message is what the operator reads."""


class KeyWaiters:
    """Wakes jobs waiting for a host key confirmation as soon as one is confirmed here."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)  # real I/O: the operator's answer


async def wait_for_port(job: Job, host: str, port: int, deadline: float) -> None:
    """Until something accepts TCP connections on host:port (sshd of a booting machine)."""
    attempts = 0
    while True:
        attempts += 1
        try:
            # real I/O, as every wait here: a real machine's sshd (the deadline is on the same clock)
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PORT_RETRY_S * 2)  # real I/O
        except (OSError, TimeoutError) as exc:
            if time.monotonic() + PORT_RETRY_S > deadline:  # real I/O
                raise ProvisionError(f"{host}:{port} did not accept SSH connections in time ({attempts} attempts, "
                                     f"the last: {exc or type(exc).__name__})") from None
            if attempts == 1:
                job.add("phase", f"{host}:{port} does not accept connections yet; trying every {PORT_RETRY_S:g} s")
            await asyncio.sleep(PORT_RETRY_S)  # real I/O
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def ensure_trusted(job: Job, target: SshTarget, known_hosts: KnownHosts, waiters: KeyWaiters, *,
                         key_timeout_s: float, login_deadline: float, trust_new: bool = False,
                         events: EventBus | None = None) -> None:
    """Log in once: returns when the host key is trusted and our key accepted.

    Logins refused before `login_deadline` are retried (a rented machine's sshd may answer
    before our public key is installed); an unknown key waits for the operator up to
    key_timeout_s, or with `trust_new` is trusted at once (a `host_key.trusted` warning on
    `events`); a changed key fails at once.
    """
    key_deadline: float | None = None
    while True:
        try:
            conn = await SshConnection.open(target, known_hosts)
        except HostKeyChanged as exc:
            raise ProvisionError(str(exc)) from None
        except HostKeyUnknown as exc:
            if trust_new:
                await _trust_on_first_sight(job, exc, known_hosts, events)
                continue
            key_deadline = key_deadline or time.monotonic() + key_timeout_s  # real I/O: the operator's answer
            await _wait_for_confirmation(job, exc, known_hosts, waiters, key_deadline, key_timeout_s)
            continue
        except SshError as exc:
            if time.monotonic() + PORT_RETRY_S > login_deadline:  # real I/O: a machine's sshd
                raise ProvisionError(str(exc)) from None
            job.add("phase", f"SSH not ready yet ({exc}); retrying")
            await asyncio.sleep(PORT_RETRY_S)  # real I/O
            continue
        await conn.close()
        return


async def _trust_on_first_sight(job: Job, exc: HostKeyUnknown, known_hosts: KnownHosts,
                                events: EventBus | None) -> None:
    p = exc.pending
    try:
        await asyncio.to_thread(known_hosts.confirm, p.host, p.port, p.fingerprint)
    except HostKeyChanged as changed:  # another key was put on file meanwhile: never replaced
        raise ProvisionError(str(changed)) from None
    text = (f"host key {p.key_type} {p.fingerprint} of {p.host}:{p.port} trusted on first sight: the instance was "
            "just created for this job (trust_new_host_key; nobody compared it with the machine's own)")
    job.add("host_key", text)
    if events is not None:
        events.add("host_key.trusted", f"{p.host}:{p.port}", text, "warning")


async def _wait_for_confirmation(job: Job, exc: HostKeyUnknown, known_hosts: KnownHosts, waiters: KeyWaiters,
                                 deadline: float, timeout_s: float) -> None:
    p = exc.pending
    job.state = "waiting_host_key"
    job.host_key = HostKeyOut(p.host, p.port, p.key_type, p.fingerprint, p.seen_us)
    job.phase = "waiting for the host key to be confirmed" + (f" because {job.reason}" if job.reason else "")
    job.add("host_key", f"{p.host}:{p.port} presented a host key tokenmill does not know: {p.key_type} "
                        f"{p.fingerprint}. Compare it with the machine's own (ssh-keygen -lf "
                        f"/etc/ssh/ssh_host_*_key.pub on it, or the provider's console), then confirm it "
                        f"(tokenmill host-keys confirm {p.host} {p.port} {p.fingerprint})."
                        + (f" Asked because: {job.reason}" if job.reason else ""))
    try:
        while True:
            known = await asyncio.to_thread(known_hosts.known)
            if any(k.host == p.host and k.port == p.port for k in known):
                job.add("phase", f"host key of {p.host}:{p.port} confirmed")
                return
            remaining = deadline - time.monotonic()  # real I/O
            if remaining <= 0:
                raise ProvisionError(f"nobody confirmed the host key {p.fingerprint} of {p.host}:{p.port} "
                                     f"within {timeout_s:g} s (host_key_timeout_s)")
            await waiters.wait(min(KEY_POLL_S, remaining))
    finally:
        if job.state == "waiting_host_key":
            job.state, job.host_key = "running", None
