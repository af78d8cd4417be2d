"""provisioning: every playbook run and its steps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provision_run',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('host_id', sa.Text(), nullable=True),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('playbook', sa.Text(), nullable=False),
    sa.Column('variables', sa.Text(), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=False),
    sa.Column('finished_us', sa.BigInteger(), nullable=True),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('failed_step', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.CheckConstraint("outcome IN ('running', 'succeeded', 'failed', 'cancelled')", name='ck_provision_run_outcome'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_provision_run_host_id'), 'provision_run', ['host_id'], unique=False)
    op.create_index(op.f('ix_provision_run_started_us'), 'provision_run', ['started_us'], unique=False)
    op.create_table('provision_step',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Text(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('exit_status', sa.Integer(), nullable=True),
    sa.Column('started_us', sa.BigInteger(), nullable=False),
    sa.Column('finished_us', sa.BigInteger(), nullable=False),
    sa.Column('output', sa.Text(), server_default='', nullable=False),
    sa.Column('output_dropped_bytes', sa.BigInteger(), server_default='0', nullable=False),
    sa.CheckConstraint("status IN ('ok', 'skipped', 'failed')", name='ck_provision_step_status'),
    sa.ForeignKeyConstraint(['run_id'], ['provision_run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'position', name='uq_provision_step_position')
    )
    op.create_index(op.f('ix_provision_step_run_id'), 'provision_step', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_provision_step_run_id'), table_name='provision_step')
    op.drop_table('provision_step')
    op.drop_index(op.f('ix_provision_run_started_us'), table_name='provision_run')
    op.drop_index(op.f('ix_provision_run_host_id'), table_name='provision_run')
    op.drop_table('provision_run')
