"""licence acknowledgements: each client's acceptance of a version of a model's licence, and the
operator's word on which models need one

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('licence_acceptance',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('licence', sa.Text(), nullable=False),
    sa.Column('version', sa.Text(), nullable=False),
    sa.Column('accepted_us', sa.BigInteger(), nullable=False),
    sa.Column('accepted_by', sa.Text(), nullable=False),
    sa.Column('key_id', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'model', 'version', name='uq_licence_acceptance')
    )
    with op.batch_alter_table('licence_acceptance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_licence_acceptance_client_id'), ['client_id'], unique=False)
    op.create_table('licence_policy',
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('requires_acceptance', sa.Boolean(), nullable=False),
    sa.Column('set_by', sa.Text(), nullable=False),
    sa.Column('set_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('model')
    )


def downgrade() -> None:
    op.drop_table('licence_policy')
    with op.batch_alter_table('licence_acceptance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_licence_acceptance_client_id'))
    op.drop_table('licence_acceptance')
