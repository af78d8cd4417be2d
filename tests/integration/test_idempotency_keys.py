"""Idempotency keys of the admin API's grants: a bad key is a 400 naming the field; a key reused
with other content is a 409 that names the key and says what differs, in words."""

from __future__ import annotations

import pytest

from backend.ledger import chart
from backend.ledger.errors import IdempotencyConflict
from backend.ledger.service import Ledger
from backend.money import NANO_PER_USD
from tests.router_harness import router_settings, running_router


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


async def grant(router, client_id: str, amount: str, key: str, **extra):
    return await router.http.post(f"/admin/clients/{client_id}/credit",
                                  json={"amount_usd": amount, "idempotency_key": key, **extra}, headers=router.admin)


@pytest.mark.parametrize("key", ["", "   ", "k" * 201])
async def test_an_empty_blank_or_overlong_key_is_400(router, key):
    client_id, _ = await router.client_with_key(credit_usd="0")
    r = await grant(router, client_id, "5.00", key)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "idempotency_key"
    assert r.json()["error"]["message"].startswith("idempotency_key")


async def test_a_key_reused_with_other_content_is_409_naming_the_key(router):
    client_id, _ = await router.client_with_key(credit_usd="0")
    assert (await grant(router, client_id, "5.00", "promo-42")).status_code == 200
    again = await grant(router, client_id, "5.00", "promo-42")
    assert again.status_code == 200 and again.json()["replayed"] is True

    r = await grant(router, client_id, "6.00", "promo-42", source="payment")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == ("idempotency_key_reused", "idempotency_key")
    assert "'promo-42'" in error["message"]
    assert "amount: $5.000000 before, $6.000000 now" in error["message"]
    assert "debit account: 'promotions' before, 'payment_clearing' now" in error["message"]
    assert "('posted'" not in error["message"]  # never the internal tuple
    client = (await router.http.get("/admin/clients", headers=router.admin)).json()[0]
    assert client["balance_nano"] == 5 * NANO_PER_USD


async def test_the_ledger_says_what_differs(ledger: Ledger):
    client = chart.client_account("acme")
    await ledger.open_account(client, chart.Kind.CLIENT_PREPAID, owner="acme")
    await ledger.transfer("evt-1", chart.PROMOTIONS, client, NANO_PER_USD, code="grant", ref="spring")
    with pytest.raises(IdempotencyConflict) as caught:
        await ledger.transfer("evt-1", chart.PROMOTIONS, client, NANO_PER_USD, code="grant", ref="summer")
    assert caught.value.key == "evt-1"
    assert caught.value.differences == ["reference: 'spring' before, 'summer' now"]


@pytest.mark.parametrize(("path", "body"), [
    ("/admin/clients", {"name": "acme", "id": "acme"}),
    ("/admin/hosts", {"name": "box", "id": "box-1", "provider": "owned", "cost_per_hour_usd": "0"}),
])
async def test_an_id_taken_is_409_naming_the_id(router, path, body):
    """Chosen by the refusal's type: an id in use conflicts with what exists (it used to be a 400
    whose `param` was the whole message, cut at its first colon)."""
    assert (await router.http.post(path, json=body, headers=router.admin)).status_code == 201
    r = await router.http.post(path, json=body, headers=router.admin)
    assert r.status_code == 409, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("id_taken", "id")
    assert "is taken" in r.json()["error"]["message"]


async def test_a_field_a_service_refuses_is_named_as_the_api_names_it(router):
    r = await router.http.post("/admin/hosts", json={"name": " ", "provider": "owned"}, headers=router.admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "name"
