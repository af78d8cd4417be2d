"""clients and API keys, enrolled hosts, per-model settings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('client',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('host',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('token_sha256', sa.Text(), nullable=False),
    sa.Column('provider', sa.Text(), server_default='ssh', nullable=False),
    sa.Column('payout_share_bps', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cost_per_hour', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('state', sa.Text(), server_default='active', nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("state IN ('active', 'draining', 'removed')", name='ck_host_state'),
    sa.CheckConstraint('payout_share_bps BETWEEN 0 AND 10000', name='ck_host_payout_share'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_sha256')
    )
    op.create_table('model_setting',
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('model')
    )
    op.create_table('api_key',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), server_default='', nullable=False),
    sa.Column('prefix', sa.Text(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('revoked_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_key_client_id'), ['client_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_key_client_id'))

    op.drop_table('api_key')
    op.drop_table('model_setting')
    op.drop_table('host')
    op.drop_table('client')
