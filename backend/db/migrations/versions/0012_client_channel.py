"""client.channel: how a client reaches us ("direct", or "openrouter": OpenRouter calling with the key
of a client the operator made for it); usage_event.fee: what that channel keeps of the request's
charge (OpenRouter's fee), posted fees -> the channel's payable in the same transaction

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN with its CHECK, which both SQLite and PostgreSQL take: a batch
    # (copy and swap) would drop usage_event's immutability triggers (see 0008).
    op.execute("ALTER TABLE client ADD COLUMN channel TEXT NOT NULL DEFAULT 'direct' "
               "CONSTRAINT ck_client_channel CHECK (channel IN ('direct', 'openrouter'))")
    op.execute("ALTER TABLE usage_event ADD COLUMN fee BIGINT NOT NULL DEFAULT 0 "
               "CONSTRAINT ck_usage_fee_within_charge CHECK (fee >= 0 AND fee <= charged)")


def downgrade() -> None:
    op.execute("ALTER TABLE usage_event DROP COLUMN fee")
    op.execute("ALTER TABLE client DROP COLUMN channel")
