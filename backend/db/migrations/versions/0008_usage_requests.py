"""usage_event.requests: how many requests a usage event stands for (1 in production)

A simulation (`tokenmill simulate`) settles a replica's requests of an hour at one price as one
usage event, so that 30 days of a fleet fit in a ledger; every report counts requests by summing
this column, so production rows (1 each) and simulated ones read the same way.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One statement both SQLite and PostgreSQL take: SQLite cannot add a CHECK to an existing table
    # except with the column, and recreating usage_event would drop its immutability triggers.
    op.execute("ALTER TABLE usage_event ADD COLUMN requests INTEGER NOT NULL DEFAULT 1 "
               "CONSTRAINT ck_usage_requests_positive CHECK (requests >= 1)")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_event DROP COLUMN requests")
