"""The public pricing sheet (GET /pricing, no key) against a real router on loopback: it agrees with
/v1/models (read through the openai SDK) on prices and context, follows a pinned price and a
disabled model, and carries each model's licence from the catalogue."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import openai
import pytest

from tests.router_harness import openai_client, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-0.5b-instruct"


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL, OTHER])
        yield r


async def sheet(router) -> dict:
    r = await router.http.get("/pricing")  # no Authorization header at all
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


async def test_every_enabled_model_with_its_licence_and_whether_it_is_served(router):
    body = await sheet(router)
    catalogue = router.services.catalogue
    assert (body["currency"], body["unit"]) == ("USD", "1M tokens")
    assert [m["id"] for m in body["models"]] == [m.id for m in catalogue.models]
    rows = {m["id"]: m for m in body["models"]}
    assert {i for i, m in rows.items() if m["serving"]} == {MODEL, OTHER}
    for entry in catalogue.models:
        row, lic = rows[entry.id], entry.licence
        base = lic.base and {"model": lic.base.model, "licence": lic.base.name, "url": lic.base.url}
        assert row["licence"] == {"name": lic.name, "url": lic.url, "version": lic.version,
                                  "commercial_use": lic.commercial_use, "restrictions": lic.restrictions,
                                  "attribution": lic.attribution, "notice": lic.notice, "base": base,
                                  "requires_acceptance": lic.requires_acknowledgement}
        assert row["licence"]["url"].startswith("https://")
        assert (row["name"], row["hugging_face_id"], row["max_output_tokens"]) == (
            entry.name, entry.hf_id, entry.max_output_tokens)
        assert Decimal(row["prompt_per_mtok_usd"]) * 10**9 == row["prompt_per_mtok_nano"] > 0
        assert Decimal(row["completion_per_mtok_usd"]) * 10**9 == row["completion_per_mtok_nano"] > 0
    assert (rows[MODEL]["prompt_per_mtok_usd"], rows[MODEL]["completion_per_mtok_usd"]) == ("0.14", "0.28")
    assert any(r["licence"]["commercial_use"] != "allowed" or r["licence"]["attribution"] for r in rows.values())
    assert (rows[MODEL]["licence"]["notice"], rows[MODEL]["licence"]["requires_acceptance"]) == (
        "Built with Llama", True)
    assert rows[OTHER]["licence"]["requires_acceptance"] is False  # Apache-2.0
    assert rows["deepseek-r1-distill-qwen-1.5b"]["licence"]["base"] == {
        "model": "Qwen/Qwen2.5-Math-1.5B", "licence": "Apache License 2.0",
        "url": "https://huggingface.co/Qwen/Qwen2.5-Math-1.5B/blob/main/LICENSE"}


async def test_whether_acknowledgement_is_required_follows_the_operator(router):
    r = await router.http.put(f"/admin/models/{MODEL}/licence", headers=router.admin,
                              json={"requires_acceptance": False})
    assert r.status_code == 200, r.text
    rows = {m["id"]: m for m in (await sheet(router))["models"]}
    assert rows[MODEL]["licence"]["requires_acceptance"] is False
    r = await router.http.get("/pricing", params={"format": "csv"})
    row = next(t for t in csv.DictReader(io.StringIO(r.text)) if t["id"] == MODEL)
    assert (row["requires_acceptance"], row["licence_version"], row["notice"]) == ("no", "llama3.1",
                                                                                   "Built with Llama")


async def agrees_with_v1_models(router, sdk: openai.AsyncOpenAI) -> dict:
    rows = {m["id"]: m for m in (await sheet(router))["models"]}
    cards = (await sdk.models.list()).data
    assert {c.id for c in cards} == {i for i, m in rows.items() if m["serving"]}
    for card in cards:
        row = rows[card.id]
        # /v1/models: USD per token; the sheet: USD per million tokens. The same quote.
        assert Decimal(card.pricing["prompt"]) * 1_000_000 == Decimal(row["prompt_per_mtok_usd"])
        assert Decimal(card.pricing["completion"]) * 1_000_000 == Decimal(row["completion_per_mtok_usd"])
        assert card.context_length == row["context_length"]
    return rows


async def test_agrees_with_v1_models_and_follows_a_price_change_and_a_disabled_model(router):
    async with openai_client(router) as sdk:
        await agrees_with_v1_models(router, sdk)
        r = await router.http.put(f"/admin/models/{MODEL}/pricing", headers=router.admin,
                                  json={"pinned": True, "prompt_usd": "0.21", "completion_usd": "0.123456789"})
        assert r.status_code == 200, r.text
        rows = await agrees_with_v1_models(router, sdk)
        assert (rows[MODEL]["prompt_per_mtok_nano"], rows[MODEL]["completion_per_mtok_usd"]) == (
            210_000_000, "0.123456789")
        r = await router.http.post(f"/admin/models/{OTHER}/disable", headers=router.admin)
        assert r.status_code == 200, r.text
        rows = await agrees_with_v1_models(router, sdk)
        assert OTHER not in rows and MODEL in rows


async def test_the_context_length_is_what_the_fleet_serves(router):
    router.hosts[0].max_model_len = 4096  # its engine was started with a shorter context
    await router.hosts[0].register()
    rows = {m["id"]: m for m in (await sheet(router))["models"]}
    assert rows[MODEL]["context_length"] == 4096
    not_served = next(m for m in router.services.catalogue.models if m.id not in (MODEL, OTHER))
    assert rows[not_served.id]["context_length"] == not_served.context_length
    assert rows[not_served.id]["serving"] is False


async def test_csv_has_the_same_rows(router):
    rows = {m["id"]: m for m in (await sheet(router))["models"]}
    r = await router.http.get("/pricing", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [t["id"] for t in table] == list(rows)
    for t in table:
        row = rows[t["id"]]
        assert (t["prompt_per_mtok_usd"], t["completion_per_mtok_usd"], int(t["context_length"])) == (
            row["prompt_per_mtok_usd"], row["completion_per_mtok_usd"], row["context_length"])
        lic, base = row["licence"], row["licence"]["base"] or {}
        assert (t["licence"], t["licence_url"], t["serving"]) == (lic["name"], lic["url"],
                                                                  "yes" if row["serving"] else "no")
        assert (t["licence_version"], t["notice"], t["requires_acceptance"]) == (
            lic["version"], lic["notice"], "yes" if lic["requires_acceptance"] else "no")
        assert (t["base_model"], t["base_licence"], t["base_licence_url"]) == (
            base.get("model", ""), base.get("licence", ""), base.get("url", ""))


async def test_an_unknown_format_names_the_parameter(router):
    r = await router.http.get("/pricing", params={"format": "xml"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "format"
