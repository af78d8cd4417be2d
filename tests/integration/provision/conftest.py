"""Fixtures for the playbook tests: a real sshd on loopback, keys, the host-key store, a runner
recording into a real SQLite file, and (once per session) the tokenmill wheel to install."""

from __future__ import annotations

import asyncio
import getpass
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.db.engine import make_engine, migrate_blocking
from backend.provision.known_hosts import KnownHosts, entry_name
from backend.provision.runner import PlaybookRunner
from backend.provision.ssh import SshTarget
from backend.provision.wheel import build_wheel, source_checkout
from tests.integration.provision.sshd import SSHD, Sshd, keygen
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Keys:
    client: Path  # the operator's private key, authorised by the sshd
    host_a: Path  # host keys (private; .pub beside them)
    host_b: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    return Keys(keygen(d / "operator"), keygen(d / "host_a"), keygen(d / "host_b"))


@pytest.fixture
def sshd(tmp_path, keys) -> Sshd:
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is not installed (apt-get install openssh-server; CI installs it)")
    d = tmp_path / "sshd"
    d.mkdir()
    server = Sshd(d, free_port(), keys.client)
    server.start(keys.host_a)
    yield server
    server.stop()


@pytest.fixture
def target(sshd, keys) -> SshTarget:
    return SshTarget(host="127.0.0.1", port=sshd.port, user=getpass.getuser(), key_file=keys.client)


@pytest.fixture
def known_hosts(tmp_path) -> KnownHosts:
    return KnownHosts(tmp_path / "ssh")


def trust(known_hosts: KnownHosts, sshd: Sshd) -> None:
    """Put the sshd's current host key in the known_hosts file, as a confirmed key would be."""
    key_type, b64 = sshd.host_key.with_suffix(".pub").read_text().split()[:2]
    known_hosts.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    known_hosts.path.write_text(f"{entry_name('127.0.0.1', sshd.port)} {key_type} {b64}\n")


@pytest.fixture
def trusted(known_hosts, sshd) -> KnownHosts:
    trust(known_hosts, sshd)
    return known_hosts


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """An empty database at the head revision, made once: each test gets a copy."""
    path = tmp_path_factory.mktemp("db") / "provision.db"
    migrate_blocking(f"sqlite:///{path}")
    return path


@pytest.fixture
async def db(tmp_path, migrated_db):
    path = tmp_path / "provision.db"
    shutil.copy(migrated_db, path)  # WAL checkpointed: the engine that migrated it is disposed
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    yield engine
    await engine.dispose()


@pytest.fixture
def runner(db, trusted) -> PlaybookRunner:
    return PlaybookRunner(db, trusted)


@pytest.fixture(scope="session")
def tokenmill_wheel(tmp_path_factory) -> Path:
    """The tokenmill wheel of this checkout, built once per session, as the backend builds it for hosts."""
    out = tmp_path_factory.mktemp("wheel")
    assert source_checkout() == ROOT
    wheel = asyncio.run(build_wheel(ROOT, out))
    assert list(out.glob("*.whl")) == [wheel]
    return wheel


@pytest.fixture(scope="session")
def shared_site_packages(tmp_path_factory) -> Path:
    """tokenmill's dependencies (and pip) as this test environment has them installed, without
    tokenmill itself: the "host" venv uses them (the shared_site_packages variable), so that its
    pip install of the wheel is real but needs neither the network nor time for dependencies."""
    site = Path(sysconfig.get_path("purelib"))
    out = tmp_path_factory.mktemp("shared-site")
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("tokenmill", "_editable_impl_tokenmill", "__editable__")) or name.endswith(".pth"):
            continue
        if name in ("backend", "console", "hostkit"):
            continue  # tokenmill's own packages
        (out / entry.name).symlink_to(entry)
    return out
