"""The public pricing sheet (GET /pricing, no key): every enabled model's price now per million
prompt and completion tokens, its context length, licence, and whether a host serves it now.

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
from backend.wire.me import PricingSheet, SheetLicence, SheetModel, usd

CSV_COLUMNS = ("id", "name", "prompt_per_mtok_usd", "completion_per_mtok_usd", "context_length", "max_output_tokens",
               "serving", "licence", "licence_url", "commercial_use", "restrictions", "attribution")

SheetFormat = Annotated[Literal["json", "csv"], QueryParameter(description="json (default) or csv")]


def pricing_sheet(s) -> PricingSheet:
    served = s.fleet.served_models()
    models = []
    for m in s.models.catalogue.models:
        if not s.models.enabled(m.id):
            continue
        q = s.pricer.quote(m)
        lic = m.licence
        models.append(SheetModel(
            m.id, m.name, m.hf_id, q.prompt_per_mtok, usd(q.prompt_per_mtok), q.completion_per_mtok,
            usd(q.completion_per_mtok), s.fleet.advertised_context(m.id) or m.context_length, m.max_output_tokens,
            m.id in served, SheetLicence(lic.name, lic.url, lic.commercial_use, lic.restrictions, lic.attribution)))
    return PricingSheet("USD", "1M tokens", s.clock.now_us(), models)


def _csv(sheet: PricingSheet) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    w.writerow(CSV_COLUMNS)
    for m in sheet.models:
        lic = m.licence
        w.writerow((m.id, m.name, m.prompt_per_mtok_usd, m.completion_per_mtok_usd, m.context_length,
                    m.max_output_tokens, "yes" if m.serving else "no", lic.name, lic.url, lic.commercial_use,
                    lic.restrictions, lic.attribution))
    return out.getvalue()


@get("/pricing", tags=["public"], responses=errors(400),
     response_description="The pricing sheet (JSON), or the same as CSV with format=csv.")
async def public_pricing(request: Request, format: SheetFormat = "json") -> Response[PricingSheet]:
    """Every enabled model's current price per million prompt and completion tokens (USD), its
    context length, its licence (name, link, commercial use, restrictions, attribution), and whether
    it is being served now. Public: no key."""
    sheet = pricing_sheet(request.app.state.services)
    if format == "csv":
        return Response(_csv(sheet), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'inline; filename="tokenmill-pricing.csv"'})
    return Response(msgspec.json.encode(sheet), media_type="application/json")


ROUTES = [public_pricing]
