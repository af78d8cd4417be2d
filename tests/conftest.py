"""Shared fixtures: real SQLite files, and real PostgreSQL when TOKENMILL_TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from backend.db.engine import make_engine, migrate, normalise_url
from backend.ledger.service import Ledger

PG_URL = os.environ.get("TOKENMILL_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """No test reads the developer's config or writes into the checkout's data/."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("TOKENMILL_DATA_DIR", str(home / "data"))
    for var in [v for v in os.environ if v.startswith("TOKENMILL_") and v not in ("TOKENMILL_DATA_DIR",)]:
        if var != "TOKENMILL_TEST_DATABASE_URL":
            monkeypatch.delenv(var)


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """A CLI run in-process (hostkit's or the backend's) sets up the root logger for a process: its
    handlers would outlive the test, writing to a captured stderr pytest has since closed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx",)}
    yield
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
        h.close()
    for h in handlers:
        if h not in root.handlers:  # basicConfig(force=True) removed it
            root.addHandler(h)
    root.setLevel(level)
    for name, lv in levels.items():
        logging.getLogger(name).setLevel(lv)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    u = make_url(PG_URL)
    conn = await asyncpg.connect(
        user=u.username, password=u.password, host=u.host or "localhost", port=u.port or 5432,
        database=u.database or "postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
async def db_url(request, tmp_path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
        return
    name = f"tm_test_{secrets.token_hex(6)}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield normalise_url(make_url(PG_URL).set(database=name).render_as_string(hide_password=False))
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(db_url):
    eng = make_engine(db_url)
    await migrate(eng)
    yield eng
    await eng.dispose()


@pytest.fixture
async def ledger(engine) -> AsyncIterator[Ledger]:
    led = Ledger(engine, expiry_interval_s=0)
    await led.start()
    yield led
    await led.close()


@pytest.fixture
def run():
    """Run a coroutine to completion from sync code (hypothesis tests)."""
    return asyncio.run
