"""invoice.line_count: how many lines an invoice was issued with, set in the transaction that issues
it; the database refuses an invoice_line beyond it, so an issued invoice cannot gain lines (0009
refuses UPDATE and DELETE, not INSERT)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

REFUSED = "invoice_line rows are immutable (INSERT into an issued invoice refused)"
# SQLite: the invoice's own line_count (NULL for an invoice that does not exist: refused too).
_SQLITE_LIMIT = "(SELECT line_count FROM invoice WHERE id = NEW.invoice_id)"


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _refuse_invoice_update(on: bool) -> None:
    """0009's trigger refusing UPDATE (and DELETE) of an invoice: lifted to fill in line_count for the
    invoices already issued, then put back as it was."""
    if _postgres():
        op.execute("CREATE TRIGGER invoice_immutable BEFORE UPDATE OR DELETE ON invoice "
                   "FOR EACH ROW EXECUTE FUNCTION tokenmill_refuse_change()" if on
                   else "DROP TRIGGER IF EXISTS invoice_immutable ON invoice")
    else:
        op.execute("CREATE TRIGGER invoice_no_update BEFORE UPDATE ON invoice "
                   "BEGIN SELECT RAISE(ABORT, 'invoice rows are immutable (UPDATE refused)'); END" if on
                   else "DROP TRIGGER IF EXISTS invoice_no_update")


def upgrade() -> None:
    # Plain ALTER TABLE ... ADD COLUMN with its CHECK, which both SQLite and PostgreSQL take: a batch
    # (copy and swap) would drop the invoice's immutability triggers (see 0009).
    op.execute("ALTER TABLE invoice ADD COLUMN line_count INTEGER NOT NULL DEFAULT 0 "
               "CONSTRAINT ck_invoice_line_count CHECK (line_count >= 0)")
    _refuse_invoice_update(False)
    op.execute("UPDATE invoice SET line_count = "
               "(SELECT count(*) FROM invoice_line WHERE invoice_line.invoice_id = invoice.id)")
    _refuse_invoice_update(True)
    # A line fits only in a position 1..line_count not yet taken (UNIQUE (invoice_id, position)) and
    # while the invoice has fewer lines than line_count: the lines inserted with the invoice fill it.
    if _postgres():
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION tokenmill_invoice_line_sealed() RETURNS trigger AS $$
            DECLARE
                n integer;
            BEGIN
                SELECT line_count INTO n FROM invoice WHERE id = NEW.invoice_id;
                IF n IS NULL OR NEW.position < 1 OR NEW.position > n
                   OR (SELECT count(*) FROM invoice_line WHERE invoice_id = NEW.invoice_id) >= n THEN
                    RAISE EXCEPTION '{REFUSED}';
                END IF;
                RETURN NEW;
            END
            $$ LANGUAGE plpgsql
            """
        )
        op.execute("CREATE TRIGGER invoice_line_sealed BEFORE INSERT ON invoice_line "
                   "FOR EACH ROW EXECUTE FUNCTION tokenmill_invoice_line_sealed()")
    else:
        op.execute(
            f"CREATE TRIGGER invoice_line_sealed BEFORE INSERT ON invoice_line "
            f"WHEN {_SQLITE_LIMIT} IS NULL OR NEW.position < 1 OR NEW.position > {_SQLITE_LIMIT} "
            f"OR (SELECT count(*) FROM invoice_line WHERE invoice_id = NEW.invoice_id) >= {_SQLITE_LIMIT} "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
        )


def downgrade() -> None:
    if _postgres():
        op.execute("DROP TRIGGER IF EXISTS invoice_line_sealed ON invoice_line")
        op.execute("DROP FUNCTION IF EXISTS tokenmill_invoice_line_sealed()")
    else:
        op.execute("DROP TRIGGER IF EXISTS invoice_line_sealed")
    op.execute("ALTER TABLE invoice DROP COLUMN line_count")
