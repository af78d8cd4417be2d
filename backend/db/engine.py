"""Database engines and migrations. SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from backend.private_files import FILE_MODE, private_dir, private_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Execution option that makes a SQLite transaction take the write lock at BEGIN, so the ledger
# writer never has to upgrade a read lock (which can fail with SQLITE_BUSY mid-batch).
IMMEDIATE = {"tokenmill_begin_immediate": True}


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def mask_url(url: str) -> str:
    """The database URL with its password hidden, for logs and `tokenmill info`."""
    return make_url(url).render_as_string(hide_password=True)


def normalise_url(url: str) -> str:
    """Pick the async driver for the URL's database: aiosqlite or asyncpg."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite" and u.drivername != "sqlite+aiosqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql" and u.drivername != "postgresql+asyncpg":
        u = u.set(drivername="postgresql+asyncpg")
    elif backend not in ("sqlite", "postgresql"):
        raise ValueError(f"database URL {mask_url(url)!r}: only sqlite and postgresql are supported")
    return u.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    """The same database through a blocking driver (the ledger writer's thread)."""
    u = make_url(normalise_url(url))
    driver = "sqlite+pysqlite" if u.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return u.set(drivername=driver).render_as_string(hide_password=False)


def make_engine(url: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> AsyncEngine:
    url = normalise_url(url)
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    _make_parent(url)
    engine = create_async_engine(url, connect_args={"timeout": 30})
    _sqlite_setup(engine.sync_engine, synchronous)
    return engine


def make_sync_engine(url: str, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL") -> Engine:
    """A blocking engine on the same database, positional paramstyle, no pooling (one writer)."""
    url = sync_url(url)
    if not is_sqlite(url):
        return create_engine(url, poolclass=NullPool, paramstyle="format")
    _make_parent(url)
    engine = create_engine(url, poolclass=NullPool, paramstyle="qmark",
                           connect_args={"timeout": 30, "check_same_thread": False})
    _sqlite_setup(engine, synchronous)
    return engine


def _make_parent(url: str) -> None:
    """The SQLite file's directory, and the file itself, private (0700, 0600) before SQLite
    creates it; SQLite gives its -wal and -shm files the database file's mode."""
    db_path = make_url(url).database
    if db_path and db_path != ":memory:" and not db_path.startswith("file:"):
        path = Path(db_path)
        private_dir(path.parent)
        private_file(path)
        for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if side.exists():
                side.chmod(FILE_MODE)


def _sqlite_setup(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("tokenmill_begin_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision`. The only way tables are created outside tests."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**IMMEDIATE)
        await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
        await conn.commit()


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def migrate_blocking(url: str) -> None:
    async def run() -> None:
        engine = make_engine(url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
