"""The public pricing sheet (GET /pricing, no key): every enabled model's price now per million
prompt and completion tokens, its context length, licence, and whether a host serves it now.

The licence is what a client acknowledges (backend/clients/licences.py): the catalogue's terms with
its version, the base model's licence for a fine-tune, and whether acknowledgement is required now
(the operator's word where given, else the catalogue's).

The prices are the quotes /v1/models gives (services.pricer.quote: what a request made now would
be charged), the context length the one /v1/models advertises. JSON by default; `format=csv` for
a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

import msgspec
from litestar import Request, Response, get
from litestar.params import QueryParameter

from backend.api.error_responses import errors
from backend.clients.licences import Terms
from backend.wire.licences import BaseLicenceOut
from backend.wire.me import PricingSheet, SheetLicence, SheetModel, usd

CSV_COLUMNS = ("id", "name", "prompt_per_mtok_usd", "completion_per_mtok_usd", "context_length", "max_output_tokens",
               "serving", "licence", "licence_url", "commercial_use", "restrictions", "attribution", "licence_version",
               "notice", "base_model", "base_licence", "base_licence_url", "requires_acceptance")

SheetFormat = Annotated[Literal["json", "csv"], QueryParameter(description="json (default) or csv")]


def sheet_licence(t: Terms) -> SheetLicence:
    base = None if t.base is None else BaseLicenceOut(t.base.model, t.base.name, t.base.url)
    return SheetLicence(t.licence, t.url, t.version, t.commercial_use, t.restrictions, t.attribution, t.notice, base,
                        t.requires_acceptance)


def pricing_sheet(s) -> PricingSheet:
    served = s.fleet.served_models()
    models = []
    for m in s.models.catalogue.models:
        if not s.models.enabled(m.id):
            continue
        q = s.pricer.quote(m)
        models.append(SheetModel(
            m.id, m.name, m.hf_id, q.prompt_per_mtok, usd(q.prompt_per_mtok), q.completion_per_mtok,
            usd(q.completion_per_mtok), s.fleet.advertised_context(m.id) or m.context_length, m.max_output_tokens,
            m.id in served, sheet_licence(s.licences.terms(m.id))))
    return PricingSheet("USD", "1M tokens", s.clock.now_us(), models)


def _csv(sheet: PricingSheet) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    w.writerow(CSV_COLUMNS)
    for m in sheet.models:
        lic, base = m.licence, m.licence.base
        w.writerow((m.id, m.name, m.prompt_per_mtok_usd, m.completion_per_mtok_usd, m.context_length,
                    m.max_output_tokens, "yes" if m.serving else "no", lic.name, lic.url, lic.commercial_use,
                    lic.restrictions, lic.attribution, lic.version, lic.notice, base.model if base else "",
                    base.licence if base else "", base.url if base else "", "yes" if lic.requires_acceptance else "no"))
    return out.getvalue()


@get("/pricing", tags=["public"], responses=errors(400),
     response_description="The pricing sheet (JSON), or the same as CSV with format=csv.")
async def public_pricing(request: Request, format: SheetFormat = "json") -> Response[PricingSheet]:
    """Every enabled model's current price per million prompt and completion tokens (USD), its
    context length, its licence (name, link, version, commercial use, restrictions, attribution, the
    notice to show, the base model's licence for a fine-tune, and whether a client must accept it
    with POST /v1/me/licences/{model} before its first request), and whether it is being served
    now. Public: no key."""
    sheet = pricing_sheet(request.app.state.services)
    if format == "csv":
        return Response(_csv(sheet), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'inline; filename="tokenmill-pricing.csv"'})
    return Response(msgspec.json.encode(sheet), media_type="application/json")


ROUTES = [public_pricing]
