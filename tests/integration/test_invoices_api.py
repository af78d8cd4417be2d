"""Invoices over real HTTP: the operator's generation with seed 003's dry runs, the listing and the
documents (/admin), each client's own invoices with its API key (/v1/me/invoices), and `tokenmill
invoices` end to end against a real backend on loopback.

The backend's clock is the wall clock fixed by the test (backend.runtime.clock.set_fixed_clock): the
month is seeded in November 2026 and invoiced on December 2nd."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sys
from pathlib import Path

import pypdf
import pytest

from backend.ledger import chart
from backend.ledger.service import Usage
from backend.money import cost_of_tokens
from backend.runtime.clock import set_fixed_clock
from tests.integration.test_invoices import MODEL, PRICE_A, PRICE_B, utc
from tests.router_harness import Router, router_settings, running_router

USD = 10**9


@pytest.fixture
async def router(tmp_path):
    set_fixed_clock(utc(2026, 11, 1))
    try:
        async with running_router(router_settings(tmp_path)) as r:
            yield r
    finally:
        set_fixed_clock(None)


async def spend(router: Router, client_id: str, price: tuple[int, int], prompt: int, completion: int) -> int:
    ledger = router.services.ledger
    charged = cost_of_tokens(prompt, price[0]) + cost_of_tokens(completion, price[1])
    hold, durable = ledger.reserve(chart.client_account(client_id), chart.REVENUE, charged, code="usage")
    await durable
    now = ledger.clock.now_us()
    await ledger.settle(hold.key, charged=charged, usage=Usage(ledger.mint_key("req"), client_id, MODEL, prompt,
                                                               completion, price[0], price[1], now, now))
    return charged


async def seed(router: Router) -> dict[str, str]:
    """Two clients with a November each; returns their API keys."""
    set_fixed_clock(utc(2026, 11, 2))
    acme, acme_key = await router.client_with_key("Acme", credit_usd="10.00")
    other, other_key = await router.client_with_key("Other", credit_usd="3.00")
    set_fixed_clock(utc(2026, 11, 5))
    await spend(router, acme, PRICE_A, 100_000, 50_000)
    set_fixed_clock(utc(2026, 11, 20))
    await spend(router, acme, PRICE_B, 100_000, 50_000)
    await spend(router, other, PRICE_B, 10_000, 5_000)
    set_fixed_clock(utc(2026, 12, 2))
    return {"acme": acme, "acme_key": acme_key, "other": other, "other_key": other_key}


async def test_the_operator_generates_lists_and_downloads_invoices(router):
    ids = await seed(router)
    http, admin = router.http, router.admin
    r = await http.post("/admin/invoicing/generate", params={"date": "2026-11-15", "dry_run": "all"}, headers=admin)
    assert r.status_code == 200, r.text
    preview = r.json()
    assert (preview["period"], preview["period_title"], preview["dry_run"], preview["written"]) == (
        "2026-11", "November 2026", "all", False)
    in_order = sorted((ids["acme"], ids["other"]))  # numbered in the order of the clients' ids
    assert [(i["number"], i["client_id"]) for i in preview["issued"]] == [
        ("TM-2026-000001", in_order[0]), ("TM-2026-000002", in_order[1])]
    assert (await http.get("/admin/invoices", headers=admin)).json() == []  # nothing written
    r = await http.post("/admin/invoicing/generate", params={"date": "2026-11", "dry_run": "validate"}, headers=admin)
    assert sorted(p["client_name"] for p in r.json()["pending"]) == ["Acme", "Other"] and r.json()["issued"] == []

    r = await http.post("/admin/invoicing/generate", params={"date": "2026-11-30T23:00:00-05:00"}, headers=admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "date"  # that is December in UTC: not over
    r = await http.post("/admin/invoicing/generate", params={"date": "2026-11-30"}, headers=admin)  # dry_run none
    run = r.json()
    assert run["written"] is True and run["dry_run"] == "none" and run["failed"] == []
    by_client = {i["client_id"]: i for i in run["issued"]}
    acme = by_client[ids["acme"]]
    assert acme["number"] in ("TM-2026-000001", "TM-2026-000002")
    assert [(x["kind"], x["price_prompt_per_mtok_nano"], x["requests"]) for x in acme["lines"]] == [
        ("usage", PRICE_A[0], 1), ("usage", PRICE_B[0], 1), ("grant", None, None)]
    assert acme["opening_balance_nano"] == 0 and acme["grants_total_nano"] == 10 * USD
    assert acme["closing_balance_nano"] == 10 * USD - acme["usage_total_nano"]
    assert acme["closing_balance_nano"] == router.services.ledger.account(chart.client_account(ids["acme"])).balance
    assert acme["pdf_url"] == f"/admin/invoices/{acme['number']}.pdf" and "half-even" in acme["rounding"]
    r = await http.post("/admin/invoicing/generate", headers=admin)  # default: the previous month, November
    assert r.json()["period"] == "2026-11" and r.json()["issued"] == []
    assert sorted(d["number"] for d in r.json()["duplicates"]) == ["TM-2026-000001", "TM-2026-000002"]

    listed = (await http.get("/admin/invoices", params={"month": "2026-11"}, headers=admin)).json()
    assert [i["number"] for i in listed] == ["TM-2026-000002", "TM-2026-000001"] and "lines" not in listed[0]
    assert (await http.get("/admin/invoices", params={"month": "2026-10"}, headers=admin)).json() == []
    assert len((await http.get("/admin/invoices", params={"client_id": ids["acme"]}, headers=admin)).json()) == 1
    one = (await http.get(f"/admin/invoices/{acme['number']}", headers=admin)).json()
    assert one == acme
    pdf = await http.get(f"/admin/invoices/{acme['number']}.pdf", headers=admin)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert acme["number"] in text and "Acme" in text and "Total usage 2 " in text
    assert f"Usage charged (this invoice's total) - {acme['usage_total_usd']}" in text
    assert f"Closing balance (end of 30 Nov 2026) {acme['closing_balance_usd']}" in text
    got = await http.get(f"/admin/invoices/{acme['number']}.csv", headers=admin)
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert [r["kind"] for r in rows] == ["opening_balance", "usage", "usage", "grant", "closing_balance", "note"]
    assert int(rows[-2]["amount_nano"]) == acme["closing_balance_nano"]
    assert rows[-1]["description"] == acme["rounding"]

    for path, params, param in (("/admin/invoicing/generate", {"date": "soon"}, "date"),
                                ("/admin/invoicing/generate", {"date": "2026-11", "dry_run": "maybe"}, "dry_run"),
                                ("/admin/invoices", {"month": "2026-13"}, "month")):
        call = http.post if "generate" in path else http.get
        r = await call(path, params=params, headers=admin)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = await http.get("/admin/invoices/TM-2026-999999.pdf", headers=admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "invoice_not_found"
    r = await http.post("/admin/invoicing/generate", headers={"Authorization": f"Bearer {ids['acme_key']}"})
    assert r.status_code == 401


async def test_a_client_sees_only_its_own_invoices(router):
    ids = await seed(router)
    run = (await router.http.post("/admin/invoicing/generate", params={"date": "2026-11"}, headers=router.admin)).json()
    number = {i["client_id"]: i["number"] for i in run["issued"]}
    http = router.http
    mine = await http.get("/v1/me/invoices", headers={"Authorization": f"Bearer {ids['acme_key']}"})
    assert mine.status_code == 200
    body = mine.json()
    assert body["object"] == "list" and [i["number"] for i in body["data"]] == [number[ids["acme"]]]
    inv = body["data"][0]
    assert inv["pdf_url"] == f"/v1/me/invoices/{inv['number']}.pdf"
    assert inv["csv_url"] == f"/v1/me/invoices/{inv['number']}.csv"
    key = {"Authorization": f"Bearer {ids['acme_key']}"}
    pdf = await http.get(inv["pdf_url"], headers=key)
    assert pdf.headers["content-type"] == "application/pdf"
    assert inv["number"] in pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    # The heading, the opening balance, 3 lines, the closing balance and the rounding note.
    assert (await http.get(inv["csv_url"], headers=key)).text.count("\n") == 7
    assert (await http.get(f"/v1/me/invoices/{inv['number']}", headers=key)).json()["lines"][0]["kind"] == "usage"
    theirs = number[ids["other"]]
    for suffix in ("", ".pdf", ".csv"):
        r = await http.get(f"/v1/me/invoices/{theirs}{suffix}", headers=key)
        assert r.status_code == 404 and r.json()["error"]["code"] == "invoice_not_found"
    for headers in ({}, {"Authorization": "Bearer tm-nope"}, router.admin):
        r = await http.get("/v1/me/invoices", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")


async def tokenmill(router: Router, tmp_path: Path, *args: str) -> tuple[int, str]:
    """`tokenmill ARGS` as the operator runs it, in its own process, against the router."""
    exe = Path(sys.executable).with_name("tokenmill")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "console.cli"]
    env = {**os.environ, "TOKENMILL_ADMIN_HOST": "127.0.0.1", "TOKENMILL_ADMIN_PORT": router.url.rsplit(":", 1)[1],
           "TOKENMILL_ADMIN_TOKEN": router.services.admin_token, "TOKENMILL_DATA_DIR": str(tmp_path / "cli")}
    proc = await asyncio.create_subprocess_exec(*command, *args, env=env, cwd=tmp_path,
                                                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode()


async def test_tokenmill_invoices_end_to_end(router, tmp_path):
    ids = await seed(router)
    rc, out = await tokenmill(router, tmp_path, "invoices", "generate", "--month", "2026-11", "--dry-run", "all")
    assert rc == 0, out
    assert "November 2026 (2026-11): would issue (dry run: nothing written)" in out
    assert "TM-2026-000001" in out and "TM-2026-000002" in out and "Acme" in out
    assert (await router.http.get("/admin/invoices", headers=router.admin)).json() == []
    rc, out = await tokenmill(router, tmp_path, "invoices", "generate", "--month", "2026-11", "--dry-run", "validate")
    assert rc == 0 and "2 client(s) to invoice" in out, out
    rc, out = await tokenmill(router, tmp_path, "invoices", "generate", "--month", "2026-11")
    assert rc == 0 and "November 2026 (2026-11): issued" in out, out
    listed = (await router.http.get("/admin/invoices", headers=router.admin)).json()
    acme = next(i for i in listed if i["client_id"] == ids["acme"])
    assert acme["usage_total_usd"] in out and acme["closing_balance_usd"] in out
    rc, out = await tokenmill(router, tmp_path, "invoices", "generate", "--month", "2026-11")
    assert rc == 0 and f"already issued: {acme['number']} to Acme" in out
    rc, out = await tokenmill(router, tmp_path, "invoices", "list", "--month", "2026-11")
    assert rc == 0 and acme["number"] in out
    rc, out = await tokenmill(router, tmp_path, "invoices", "show", acme["number"])
    assert rc == 0 and "closing balance" in out and "rounded half-even" in out and "usage" in out, out
    rc, out = await tokenmill(router, tmp_path, "invoices", "download", acme["number"], "--format", "csv",
                              "-o", "nov.csv")
    assert rc == 0, out
    api = await router.http.get(f"/admin/invoices/{acme['number']}.csv", headers=router.admin)
    assert (tmp_path / "nov.csv").read_bytes() == api.content
    rc, out = await tokenmill(router, tmp_path, "invoices", "download", acme["number"])
    assert rc == 0 and (tmp_path / f"{acme['number']}.pdf").read_bytes().startswith(b"%PDF-")
    rc, out = await tokenmill(router, tmp_path, "invoices", "generate", "--month", "2026-12")
    assert rc == 1 and "December 2026 is not over yet" in out and "(400, invalid_value)" in out
