"""Host keys against a real sshd: unknown keys wait for the operator's confirmation, changed keys
are always refused."""

from __future__ import annotations

import textwrap

import pytest

from backend.provision.known_hosts import HostKeyChanged, HostKeyUnknown, KnownHosts
from backend.provision.playbook import load_playbook
from backend.provision.runner import PlaybookRunner
from backend.provision.ssh import SshConnection
from tests.integration.provision.sshd import openssh_fingerprint


@pytest.fixture
def hello(tmp_path):
    path = tmp_path / "hello.yaml"
    path.write_text(textwrap.dedent("""
        name: hello
        description: says hello
        steps:
          - name: hello
            run: echo hello from $(hostname)
            always: true
        """))
    return load_playbook(path)


async def test_an_unknown_host_key_is_refused_until_its_fingerprint_is_confirmed(db, known_hosts, sshd, target,
                                                                                 hello):
    runner = PlaybookRunner(db, known_hosts)
    fp = openssh_fingerprint(sshd.host_key.with_suffix(".pub"))

    refused = await runner.run(hello, target, {})
    assert refused.outcome == "failed" and refused.failed_step is None
    assert f"127.0.0.1:{sshd.port} presented a host key tokenmill does not know: ssh-ed25519 {fp}" in refused.error
    assert "Accepted publickey" not in sshd.log()  # refused before authenticating
    (pending,) = known_hosts.pending()
    assert (pending.host, pending.port, pending.key_type, pending.fingerprint) == (
        "127.0.0.1", sshd.port, "ssh-ed25519", fp)
    assert known_hosts.known() == []
    assert (await runner.runs.get(refused.run_id)).outcome == "failed"

    with pytest.raises(LookupError, match="no pending host key SHA256:nope"):
        known_hosts.confirm("127.0.0.1", sshd.port, "SHA256:nope")
    confirmed = known_hosts.confirm("127.0.0.1", sshd.port, fp)
    assert (confirmed.key_type, confirmed.fingerprint) == ("ssh-ed25519", fp)
    assert known_hosts.pending() == []
    assert known_hosts.path.stat().st_mode & 0o777 == 0o600

    # A fresh store on the same directory (another process: the CLI, the admin API) agrees.
    accepted = await PlaybookRunner(db, KnownHosts(known_hosts.directory)).run(hello, target, {})
    assert accepted.outcome == "succeeded"
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in known_hosts.path.read_text()


async def test_a_changed_host_key_is_refused_even_after_an_earlier_confirmation(db, known_hosts, sshd, target,
                                                                                keys, hello):
    with pytest.raises(HostKeyUnknown) as unknown:
        await SshConnection.open(target, known_hosts)
    old_fp = unknown.value.pending.fingerprint
    known_hosts.confirm("127.0.0.1", sshd.port, old_fp)
    conn = await SshConnection.open(target, known_hosts)
    await conn.close()

    sshd.start(keys.host_b)  # same address, another key: a reinstalled machine, or an impostor
    new_fp = openssh_fingerprint(keys.host_b.with_suffix(".pub"))
    with pytest.raises(HostKeyChanged) as changed:
        await SshConnection.open(target, known_hosts)
    message = str(changed.value)
    assert f"HOST KEY CHANGED for 127.0.0.1:{sshd.port}" in message
    assert old_fp in message and new_fp in message
    # Nothing is offered for confirmation, and confirming cannot replace the key.
    assert known_hosts.pending() == []
    with pytest.raises(LookupError):
        known_hosts.confirm("127.0.0.1", sshd.port, new_fp)
    result = await PlaybookRunner(db, known_hosts).run(hello, target, {})
    assert result.outcome == "failed" and "HOST KEY CHANGED" in result.error

    # The operator, knowing the machine was reinstalled, forgets the old key: the new one then
    # goes through confirmation like any unknown key.
    assert known_hosts.forget("127.0.0.1", sshd.port)
    with pytest.raises(HostKeyUnknown):
        await SshConnection.open(target, known_hosts)
    known_hosts.confirm("127.0.0.1", sshd.port, new_fp)
    assert (await PlaybookRunner(db, known_hosts).run(hello, target, {})).outcome == "succeeded"


async def test_a_pending_key_cannot_be_confirmed_over_a_different_known_one(known_hosts, sshd, target, keys):
    with pytest.raises(HostKeyUnknown) as first:
        await SshConnection.open(target, known_hosts)
    sshd.start(keys.host_b)
    with pytest.raises(HostKeyUnknown) as second:
        await SshConnection.open(target, known_hosts)
    assert [p.fingerprint for p in known_hosts.pending()] == [first.value.pending.fingerprint,
                                                              second.value.pending.fingerprint]
    known_hosts.confirm("127.0.0.1", sshd.port, second.value.pending.fingerprint)
    # The other pending key went with the confirmation; the host's key is now the confirmed one.
    assert known_hosts.pending() == []
    with pytest.raises(LookupError):
        known_hosts.confirm("127.0.0.1", sshd.port, first.value.pending.fingerprint)
