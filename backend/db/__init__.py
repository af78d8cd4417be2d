"""The database layer shared by every capability: engines (SQLite WAL or PostgreSQL by URL) and the
Alembic migrations of all tables. Each capability keeps its own tables."""
