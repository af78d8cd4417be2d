"""initial ledger: accounts, immutable transfers, open holds, usage events

Revision ID: 0001
Revises: 
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# Postings and usage events are history: the database itself refuses to rewrite them.
IMMUTABLE = ("ledger_transfer", "usage_event")


def _refuse_changes(tables: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION tokenmill_refuse_change() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% rows are immutable (% refused)', TG_TABLE_NAME, TG_OP;
            END
            $$ LANGUAGE plpgsql
            """
        )
        for t in tables:
            op.execute(
                f"CREATE TRIGGER {t}_immutable BEFORE UPDATE OR DELETE ON {t} "
                "FOR EACH ROW EXECUTE FUNCTION tokenmill_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                "FOR EACH STATEMENT EXECUTE FUNCTION tokenmill_refuse_change()"
            )
    else:
        for t in tables:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {t}_no_{action.lower()} BEFORE {action} ON {t} "
                    f"BEGIN SELECT RAISE(ABORT, '{t} rows are immutable ({action} refused)'); END"
                )


def _allow_changes(tables: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in tables:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_immutable ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        op.execute("DROP FUNCTION IF EXISTS tokenmill_refuse_change()")
    else:
        for t in tables:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")


def upgrade() -> None:
    op.create_table('ledger_account',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('owner', sa.Text(), nullable=True),
    sa.Column('debits_posted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('credits_posted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('debits_pending', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('credits_pending', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('debits_must_not_exceed_credits', sa.Boolean(), nullable=False),
    sa.Column('credits_must_not_exceed_debits', sa.Boolean(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('NOT credits_must_not_exceed_debits OR credits_posted + credits_pending <= debits_posted', name='ck_account_credit_cap'),
    sa.CheckConstraint('NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted', name='ck_account_debit_cap'),
    sa.CheckConstraint('debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0', name='ck_account_sums_non_negative'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code')
    )
    with op.batch_alter_table('ledger_account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_account_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_account_owner'), ['owner'], unique=False)

    op.create_table('usage_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('request_id', sa.Text(), nullable=False),
    sa.Column('hold_key', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('key_id', sa.Text(), nullable=True),
    sa.Column('model', sa.Text(), nullable=False),
    sa.Column('host_id', sa.Text(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=False),
    sa.Column('completion_tokens', sa.Integer(), nullable=False),
    sa.Column('price_prompt_per_mtok', sa.BigInteger(), nullable=False),
    sa.Column('price_completion_per_mtok', sa.BigInteger(), nullable=False),
    sa.Column('charged', sa.BigInteger(), nullable=False),
    sa.Column('host_share', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('started_us', sa.BigInteger(), nullable=False),
    sa.Column('first_byte_us', sa.BigInteger(), nullable=True),
    sa.Column('finished_us', sa.BigInteger(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("status IN ('ok', 'failed', 'cancelled')", name='ck_usage_status'),
    sa.CheckConstraint('host_share <= charged', name='ck_usage_host_share_within_charge'),
    sa.CheckConstraint('prompt_tokens >= 0 AND completion_tokens >= 0 AND charged >= 0 AND host_share >= 0', name='ck_usage_non_negative'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id')
    )
    with op.batch_alter_table('usage_event', schema=None) as batch_op:
        batch_op.create_index('ix_usage_time', ['created_us'], unique=False)

    op.create_table('ledger_transfer',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('debit_account_id', sa.BigInteger(), nullable=False),
    sa.Column('credit_account_id', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('pending_key', sa.Text(), nullable=True),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('ref', sa.Text(), nullable=True),
    sa.Column('expires_us', sa.BigInteger(), nullable=True),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("(kind IN ('posted', 'pending')) = (pending_key IS NULL)", name='ck_transfer_resolution_names_hold'),
    sa.CheckConstraint("kind IN ('posted', 'pending', 'post_pending', 'void_pending', 'expire_pending')", name='ck_transfer_kind'),
    sa.CheckConstraint('amount > 0', name='ck_transfer_amount_positive'),
    sa.CheckConstraint('debit_account_id <> credit_account_id', name='ck_transfer_two_accounts'),
    sa.ForeignKeyConstraint(['credit_account_id'], ['ledger_account.id'], ),
    sa.ForeignKeyConstraint(['debit_account_id'], ['ledger_account.id'], ),
    sa.ForeignKeyConstraint(['pending_key'], ['ledger_transfer.key'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key'),
    sa.UniqueConstraint('pending_key')
    )
    with op.batch_alter_table('ledger_transfer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_transfer_credit_account_id'), ['credit_account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transfer_debit_account_id'), ['debit_account_id'], unique=False)

    op.create_table('ledger_open_hold',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['key'], ['ledger_transfer.key'], ),
    sa.PrimaryKeyConstraint('key')
    )
    _refuse_changes(IMMUTABLE)


def downgrade() -> None:
    _allow_changes(IMMUTABLE)
    op.drop_table('ledger_open_hold')
    with op.batch_alter_table('ledger_transfer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_transfer_debit_account_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_transfer_credit_account_id'))

    op.drop_table('ledger_transfer')
    with op.batch_alter_table('usage_event', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_time')

    op.drop_table('usage_event')
    with op.batch_alter_table('ledger_account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_account_owner'))
        batch_op.drop_index(batch_op.f('ix_ledger_account_kind'))

    op.drop_table('ledger_account')
