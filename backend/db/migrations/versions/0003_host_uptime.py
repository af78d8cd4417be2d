"""host uptime stretches (what the GPUs cost over any window)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('host_uptime',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('host_id', sa.Text(), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=False),
    sa.Column('ended_us', sa.BigInteger(), nullable=False),
    sa.Column('cost_per_hour', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('ended_us >= started_us', name='ck_host_uptime_order'),
    sa.ForeignKeyConstraint(['host_id'], ['host.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_host_uptime_host_id'), 'host_uptime', ['host_id'], unique=False)
    op.create_index(op.f('ix_host_uptime_ended_us'), 'host_uptime', ['ended_us'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_host_uptime_ended_us'), table_name='host_uptime')
    op.drop_index(op.f('ix_host_uptime_host_id'), table_name='host_uptime')
    op.drop_table('host_uptime')
