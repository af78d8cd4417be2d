"""pricing and autoscaler: price history, the operator's pins and ranges, per-model scaling limits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('price_change',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('at_us', sa.BigInteger(), nullable=False),
    sa.Column('prompt_per_mtok', sa.BigInteger(), nullable=False),
    sa.Column('completion_per_mtok', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('explanation', sa.Text(), server_default='', nullable=False),
    sa.Column('factors', sa.Text(), server_default='[]', nullable=False),
    sa.CheckConstraint('prompt_per_mtok >= 0 AND completion_per_mtok >= 0', name='ck_price_change_nonneg'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_price_change_model_at', 'price_change', ['model', 'at_us'], unique=False)
    op.create_table('model_pricing',
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('pinned', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('pin_prompt_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('pin_completion_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('floor_prompt_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('floor_completion_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('ceiling_prompt_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('ceiling_completion_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('model')
    )
    op.create_table('model_scaling',
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('min_replicas', sa.Integer(), nullable=True),
    sa.Column('max_replicas', sa.Integer(), nullable=True),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('min_replicas IS NULL OR min_replicas >= 0', name='ck_model_scaling_min'),
    sa.CheckConstraint('max_replicas IS NULL OR max_replicas >= 1', name='ck_model_scaling_max'),
    sa.PrimaryKeyConstraint('model')
    )


def downgrade() -> None:
    op.drop_table('model_scaling')
    op.drop_table('model_pricing')
    op.drop_index('ix_price_change_model_at', table_name='price_change')
    op.drop_table('price_change')
