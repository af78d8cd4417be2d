"""Invoices on the API: the operator's (/admin/invoicing/generate, /admin/invoices) and each client's
own (/v1/me/invoices, with its API key). Thin handlers over the InvoiceService
(backend/billing/invoices/); documents are rendered off the event loop (fpdf2 is CPU work)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Literal

from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Schema
from litestar.params import FromPath, QueryParameter

from backend.api.admin_api import admin_guard
from backend.api.error_responses import ADMIN, ADMIN_ID, errors
from backend.api.openai_schema import API_KEY
from backend.billing.invoices import InvoiceService, Period
from backend.billing.invoices.out import ADMIN_BASE, CLIENT_BASE, invoice_out, run_out, summary_out
from backend.billing.invoices.render_csv import render_csv
from backend.billing.invoices.render_pdf import render_pdf
from backend.field_errors import FieldError
from backend.wire.errors import ApiError
from backend.wire.invoices import InvoiceOut, InvoiceSummaryOut, InvoicingRunOut, MyInvoicesOut

DRY_RUN = ("all: nothing is written, every invoice is computed and shown as it would be issued; validate: only "
           "looks for invoices already issued for the month and lists the clients a full run would invoice; "
           "none: the full run, issuing what is missing")
DATE = "Any ISO 8601 date or time in the month to bill (or YYYY-MM); default: the previous month (UTC)"
_MEDIA = {"pdf": "application/pdf", "csv": "text/csv; charset=utf-8"}


# One route answers JSON, PDF or CSV by the name's suffix: the schema states all three.
DOCUMENT = {200: ResponseSpec(data_container=InvoiceOut, generate_examples=False,
                              description="The invoice (JSON); NUMBER.pdf: its PDF; NUMBER.csv: its lines as CSV")}


@dataclass
class _DocumentOperation(Operation):
    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if ok is not None and not isinstance(ok, dict) and getattr(ok, "content", None) is not None:
            ok.content["application/pdf"] = OpenAPIMediaType(schema=Schema(type="string", format="binary"))
            ok.content["text/csv"] = OpenAPIMediaType(schema=Schema(type="string"))


def _invoices(request: Request) -> InvoiceService:
    return request.app.state.services.invoices


def _refused(exc: FieldError) -> ApiError:
    return ApiError(400, str(exc), code="invalid_value", param=exc.field)


def _period(text: str | None, field: str, default: Period | None = None) -> Period | None:
    if text is None or not text.strip():
        return default
    try:
        return Period.parse(text, field=field)
    except FieldError as exc:
        raise _refused(exc) from None


async def _document(service: InvoiceService, name: str, *, client_id: str | None, base: str) -> Response:
    """The invoice `name` names (NUMBER, NUMBER.pdf or NUMBER.csv); only `client_id`'s when given."""
    number, _, suffix = name.rpartition(".") if name.endswith((".pdf", ".csv")) else (name, "", "")
    inv = await service.invoice(number, client_id)
    if inv is None:
        raise ApiError(404, f"No invoice {number!r}.", code="invoice_not_found", param="number")
    if not suffix:
        return Response(invoice_out(inv, base), media_type="application/json")
    render = render_pdf if suffix == "pdf" else render_csv
    body = await asyncio.to_thread(render, inv)
    return Response(body, media_type=_MEDIA[suffix],
                    headers={"Content-Disposition": f'inline; filename="{inv.head.number}.{suffix}"'})


class InvoicesController(Controller):
    path = "/admin"
    guards = [admin_guard]
    tags = ["invoices"]
    security = [{"admin_token": []}]

    @post("/invoicing/generate", status_code=200, responses=errors(400, *ADMIN))
    async def generate(
        self, request: Request,
        date: Annotated[str | None, QueryParameter(description=DATE)] = None,
        dry_run: Annotated[Literal["all", "validate", "none"], QueryParameter(description=DRY_RUN)] = "none",
    ) -> InvoicingRunOut:
        """Generate the invoices of a finished calendar month (UTC): one per client with activity in
        it or a balance other than zero, numbered from one gapless sequence. Answers what was (or
        would be) issued, the invoices already there (duplicates) and any client whose month could
        not be stated. A month not yet over is refused."""
        service = _invoices(request)
        period = _period(date, "date", service.default_period())
        try:
            result = await service.generate(period, dry_run)
        except FieldError as exc:
            raise _refused(exc) from None
        return run_out(result)

    @get("/invoices", responses=errors(400, *ADMIN))
    async def list_invoices(
        self, request: Request,
        month: Annotated[str | None, QueryParameter(description="The month billed, YYYY-MM (or any ISO date in "
                                                                "it); default: every month")] = None,
        client_id: Annotated[str | None, QueryParameter(description="Only this client's")] = None,
    ) -> list[InvoiceSummaryOut]:
        """Issued invoices, newest first (at most 500)."""
        heads = await _invoices(request).invoices(period=_period(month, "month"), client_id=client_id)
        return [summary_out(h) for h in heads]

    @get("/invoices/{name:str}", responses={**DOCUMENT, **errors(*ADMIN_ID)}, operation_class=_DocumentOperation)
    async def invoice(self, request: Request, name: FromPath[str]) -> Response:
        """An invoice with its lines (JSON, InvoiceOut), or its PDF (`.pdf`) or CSV (`.csv`): `name` is
        the number, or the number followed by .pdf or .csv."""
        return await _document(_invoices(request), name, client_id=None, base=ADMIN_BASE)


def _client_id(request: Request) -> str:
    return request.app.state.services.proxy.authenticate(request.headers.get("authorization")).client_id


@get("/v1/me/invoices", tags=["client"], security=API_KEY, responses=errors(401))
async def my_invoices(request: Request) -> MyInvoicesOut:
    """The calling client's invoices, newest first, each with its PDF and CSV links."""
    client_id = _client_id(request)
    heads = await _invoices(request).invoices(client_id=client_id)
    return MyInvoicesOut(data=[summary_out(h, CLIENT_BASE) for h in heads])


@get("/v1/me/invoices/{name:str}", tags=["client"], security=API_KEY, responses={**DOCUMENT, **errors(400, 401, 404)},
     operation_class=_DocumentOperation)
async def my_invoice(request: Request, name: FromPath[str]) -> Response:
    """One of the calling client's invoices: JSON (InvoiceOut), `.pdf` or `.csv` after the number. Another
    client's invoice is not found (404), as if it did not exist."""
    client_id = _client_id(request)
    return await _document(_invoices(request), name, client_id=client_id, base=CLIENT_BASE)


ROUTES = [InvoicesController, my_invoices, my_invoice]
__all__ = ["ROUTES", "InvoiceOut"]
