"""billing and invoices: each client's Stripe customer and auto-recharge settings, payments,
Stripe events received; invoices (immutable: the database refuses UPDATE and DELETE) and their
gapless counter

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# An issued invoice is a document sent to a client: the database itself refuses to rewrite it.
IMMUTABLE = ("invoice", "invoice_line")


def _refuse_changes(tables: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The function is 0001's (the ledger's history); made again here in case it is missing.
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
    postgres = op.get_bind().dialect.name == "postgresql"
    for t in tables:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_immutable ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_delete")


def upgrade() -> None:
    op.create_table('invoice_counter',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('last', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('stripe_event',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('received_us', sa.BigInteger(), nullable=False),
    sa.Column('outcome', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('stripe_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_event_received_us'), ['received_us'], unique=False)

    op.create_table('client_billing',
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('stripe_customer_id', sa.Text(), nullable=True),
    sa.Column('payment_method_id', sa.Text(), nullable=True),
    sa.Column('recharge_enabled', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('recharge_threshold', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('recharge_amount', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('recharge_monthly_cap', sa.BigInteger(), nullable=True),
    sa.Column('recharge_seq', sa.Integer(), server_default='0', nullable=False),
    sa.Column('recharge_in_flight', sa.Text(), nullable=True),
    sa.Column('recharge_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('recharge_disabled_reason', sa.Text(), server_default='', nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('recharge_failures >= 0 AND recharge_seq >= 0', name='ck_client_billing_counters'),
    sa.CheckConstraint('recharge_monthly_cap IS NULL OR recharge_monthly_cap > 0', name='ck_client_billing_cap'),
    sa.CheckConstraint('recharge_threshold >= 0 AND recharge_amount >= 0', name='ck_client_billing_amounts'),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], ),
    sa.PrimaryKeyConstraint('client_id'),
    sa.UniqueConstraint('stripe_customer_id')
    )
    op.create_table('invoice',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('number', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('client_name', sa.Text(), nullable=False),
    sa.Column('period', sa.Text(), nullable=False),
    sa.Column('period_start_us', sa.BigInteger(), nullable=False),
    sa.Column('period_end_us', sa.BigInteger(), nullable=False),
    sa.Column('issued_us', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.Text(), server_default='usd', nullable=False),
    sa.Column('opening_balance', sa.BigInteger(), nullable=False),
    sa.Column('closing_balance', sa.BigInteger(), nullable=False),
    sa.Column('usage_total', sa.BigInteger(), nullable=False),
    sa.Column('payments_total', sa.BigInteger(), nullable=False),
    sa.Column('grants_total', sa.BigInteger(), nullable=False),
    sa.Column('refunds_total', sa.BigInteger(), nullable=False),
    sa.Column('business_name', sa.Text(), nullable=False),
    sa.Column('business_address', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id', 'period', name='uq_invoice_client_period'),
    sa.UniqueConstraint('number'),
    sa.UniqueConstraint('seq')
    )
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_client_id'), ['client_id'], unique=False)

    op.create_table('payment',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('idempotency_key', sa.Text(), nullable=False),
    sa.Column('checkout_session_id', sa.Text(), nullable=True),
    sa.Column('payment_intent_id', sa.Text(), nullable=True),
    sa.Column('charge_id', sa.Text(), nullable=True),
    sa.Column('credited', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('refunded', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('disputed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('failure', sa.Text(), server_default='', nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("kind IN ('checkout', 'recharge')", name='ck_payment_kind'),
    sa.CheckConstraint("status IN ('open', 'succeeded', 'failed', 'requires_action', 'canceled')", name='ck_payment_status'),
    sa.CheckConstraint('amount > 0', name='ck_payment_amount_positive'),
    sa.CheckConstraint('credited >= 0 AND refunded >= 0 AND disputed >= 0', name='ck_payment_sums'),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('checkout_session_id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('payment_intent_id')
    )
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_charge_id'), ['charge_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_created_us'), ['created_us'], unique=False)

    op.create_table('invoice_line',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('invoice_id', sa.BigInteger(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('price_prompt_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('price_completion_per_mtok', sa.BigInteger(), nullable=True),
    sa.Column('requests', sa.BigInteger(), nullable=True),
    sa.Column('prompt_tokens', sa.BigInteger(), nullable=True),
    sa.Column('completion_tokens', sa.BigInteger(), nullable=True),
    sa.Column('occurred_us', sa.BigInteger(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("kind IN ('usage', 'payment', 'grant', 'refund', 'dispute', 'adjustment')", name='ck_invoice_line_kind'),
    sa.CheckConstraint('amount >= 0', name='ck_invoice_line_amount'),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('invoice_id', 'position', name='uq_invoice_line_position')
    )
    with op.batch_alter_table('invoice_line', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_line_invoice_id'), ['invoice_id'], unique=False)

    _refuse_changes(IMMUTABLE)


def downgrade() -> None:
    _allow_changes(IMMUTABLE)
    with op.batch_alter_table('invoice_line', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_line_invoice_id'))

    op.drop_table('invoice_line')
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_created_us'))
        batch_op.drop_index(batch_op.f('ix_payment_client_id'))
        batch_op.drop_index(batch_op.f('ix_payment_charge_id'))

    op.drop_table('payment')
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_client_id'))

    op.drop_table('invoice')
    op.drop_table('client_billing')
    with op.batch_alter_table('stripe_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_event_received_us'))

    op.drop_table('stripe_event')
    op.drop_table('invoice_counter')
