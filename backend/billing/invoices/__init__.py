"""Monthly invoices: generation from the ledger (service.py), numbering and storage (store.py),
the PDF and CSV documents (render_pdf.py, render_csv.py). The public face is InvoiceService."""

from backend.billing.invoices.period import Period
from backend.billing.invoices.service import DRY_RUNS, InvoiceService, RunResult
from backend.billing.invoices.store import IssuedInvoice

__all__ = ["DRY_RUNS", "InvoiceService", "IssuedInvoice", "Period", "RunResult"]
