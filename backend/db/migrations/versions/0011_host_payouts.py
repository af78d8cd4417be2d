"""host payouts: each host's payout threshold and destination (a Stripe Connect account or
"manual"), and every payout asked for (at most one pending per host)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('host_payout_settings',
    sa.Column('host_id', sa.Text(), nullable=False),
    sa.Column('threshold', sa.BigInteger(), nullable=True),
    sa.Column('method', sa.Text(), server_default='none', nullable=False),
    sa.Column('stripe_account', sa.Text(), nullable=True),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_us', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.Text(), server_default='', nullable=False),
    sa.CheckConstraint("method IN ('none', 'stripe', 'manual')", name='ck_host_payout_settings_method'),
    sa.CheckConstraint("method != 'stripe' OR stripe_account IS NOT NULL", name='ck_host_payout_settings_account'),
    sa.CheckConstraint('threshold IS NULL OR threshold > 0', name='ck_host_payout_settings_threshold'),
    sa.CheckConstraint('failures >= 0', name='ck_host_payout_settings_failures'),
    sa.ForeignKeyConstraint(['host_id'], ['host.id'], ),
    sa.PrimaryKeyConstraint('host_id')
    )
    op.create_table('host_payout',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('host_id', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('destination', sa.Text(), server_default='', nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('stripe_transfer_id', sa.Text(), nullable=True),
    sa.Column('reference', sa.Text(), server_default='', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failure', sa.Text(), server_default='', nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.Column('paid_us', sa.BigInteger(), nullable=True),
    sa.Column('paid_by', sa.Text(), server_default='', nullable=False),
    sa.CheckConstraint("method IN ('stripe', 'manual')", name='ck_host_payout_method'),
    sa.CheckConstraint("state IN ('pending', 'paid', 'failed', 'canceled')", name='ck_host_payout_state'),
    sa.CheckConstraint('amount > 0', name='ck_host_payout_amount_positive'),
    sa.CheckConstraint('attempts >= 0', name='ck_host_payout_attempts'),
    sa.ForeignKeyConstraint(['host_id'], ['host.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('stripe_transfer_id')
    )
    with op.batch_alter_table('host_payout', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_payout_host_id'), ['host_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_payout_created_us'), ['created_us'], unique=False)
        # Never two payouts in flight for one host, whatever process claims them.
        batch_op.create_index('uq_host_payout_one_pending', ['host_id'], unique=True,
                              sqlite_where=sa.text("state = 'pending'"),
                              postgresql_where=sa.text("state = 'pending'"))


def downgrade() -> None:
    with op.batch_alter_table('host_payout', schema=None) as batch_op:
        batch_op.drop_index('uq_host_payout_one_pending')
        batch_op.drop_index(batch_op.f('ix_host_payout_created_us'))
        batch_op.drop_index(batch_op.f('ix_host_payout_host_id'))
    op.drop_table('host_payout')
    op.drop_table('host_payout_settings')
