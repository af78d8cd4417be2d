"""provisioning: the hosts tokenmill set up, and the cloud instances that bill for them

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('provisioned_host',
    sa.Column('host_id', sa.Text(), nullable=False),
    sa.Column('provider', sa.Text(), nullable=False),
    sa.Column('instance_name', sa.Text(), nullable=False),
    sa.Column('instance_id', sa.Text(), nullable=True),
    sa.Column('ssh_host', sa.Text(), nullable=True),
    sa.Column('ssh_port', sa.Integer(), server_default='22', nullable=False),
    sa.Column('ssh_user', sa.Text(), server_default='root', nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('teardown_variables', sa.Text(), server_default='{}', nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.CheckConstraint("state IN ('provisioning', 'serving', 'failed', 'interrupted', 'tearing_down', 'removed')", name='ck_provisioned_host_state'),
    sa.ForeignKeyConstraint(['host_id'], ['host.id'], ),
    sa.PrimaryKeyConstraint('host_id')
    )


def downgrade() -> None:
    op.drop_table('provisioned_host')
