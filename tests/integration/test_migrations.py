"""Migrations are the only way the schema is made, and they match the table definitions."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import backend.tables  # noqa: F401
from backend.db.engine import current_revision, make_engine, migrate

HEAD = "0013"


async def test_migrated_schema_matches_the_tables(engine):
    assert await current_revision(engine) == HEAD
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), SQLModel.metadata)
        )
    assert diff == []


async def test_migrating_twice_is_harmless(db_url):
    eng = make_engine(db_url)
    try:
        await migrate(eng)
        await migrate(eng)
        assert await current_revision(eng) == HEAD
    finally:
        await eng.dispose()


async def test_downgrade_removes_everything(db_url):
    eng = make_engine(db_url)
    try:
        await migrate(eng)
        from alembic import command

        from backend.db.engine import alembic_config

        async with eng.connect() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), "base"))
            await conn.commit()
        async with eng.connect() as conn:
            tables = await conn.run_sync(lambda sync: sync.dialect.get_table_names(sync))
        assert set(tables) <= {"alembic_version"}
    finally:
        await eng.dispose()


async def test_sqlite_runs_in_wal_mode(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'x.db'}", synchronous="FULL")
    try:
        async with eng.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await eng.dispose()
