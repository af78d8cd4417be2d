"""The client's self-service API with its own key (GET /v1/me, POST/DELETE /v1/me/keys) against a
real router on loopback (real HTTP, real SQLite), the official openai SDK where a key is used."""

from __future__ import annotations

import asyncio

import openai
import pytest
from sqlalchemy import insert

from backend.billing.tables import ClientBilling, Payment
from backend.ledger import chart
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
USD = 1_000_000_000


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        await r.add_host("rig-a", [MODEL])
        yield r


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def me(router, secret: str) -> dict:
    r = await router.http.get("/v1/me", headers=bearer(secret))
    assert r.status_code == 200, r.text
    return r.json()


def sdk(router, secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)


async def test_me_shows_credit_recharge_defaults_and_keys_without_secrets(router):
    client_id, secret = await router.client_with_key("acme", credit_usd="12.50")
    body = await me(router, secret)
    assert (body["client_id"], body["name"]) == (client_id, "acme")
    assert (body["balance_nano"], body["balance_usd"]) == (12_500_000_000, "12.50")
    assert (body["available_nano"], body["holds_nano"], body["owed_nano"]) == (12_500_000_000, 0, 0)
    assert (body["available_usd"], body["holds_usd"], body["owed_usd"]) == ("12.50", "0.00", "0.00")
    assert body["auto_recharge"] == {
        "enabled": False, "threshold_nano": 0, "threshold_usd": "0.00", "amount_nano": 0, "amount_usd": "0.00",
        "monthly_cap_nano": None, "monthly_cap_usd": None, "card_saved": False, "in_flight": False,
        "failures_in_a_row": 0, "disabled_reason": ""}
    assert body["payments"] == []
    (key,) = body["keys"]
    assert key["prefix"] == secret[:10] and key["calling"] is True and key["revoked"] is False
    assert set(key) == {"id", "name", "prefix", "created_us", "revoked_us", "revoked", "calling"}
    r = await router.http.get("/v1/me", headers=bearer(secret))
    assert secret not in r.text and secret[10:20] not in r.text  # the secret never comes back


async def test_holds_and_owed_come_from_the_ledger(router):
    client_id, secret = await router.client_with_key(credit_usd="10")
    led = router.services.ledger
    hold = await led.hold(chart.client_account(client_id), chart.REVENUE, 3 * USD, code="usage")
    # What a refund the credit could not cover leaves: the client's receivable account, debited.
    await led.open_account(chart.receivable_account(client_id), chart.Kind.RECEIVABLE, owner=client_id)
    await led.transfer("test-owed", chart.receivable_account(client_id), chart.PAYMENT_CLEARING, 1_250_000_000,
                       code="receivable")
    body = await me(router, secret)
    assert (body["balance_nano"], body["holds_nano"], body["available_nano"]) == (10 * USD, 3 * USD, 7 * USD)
    assert (body["available_usd"], body["holds_usd"]) == ("7.00", "3.00")
    assert (body["owed_nano"], body["owed_usd"]) == (1_250_000_000, "1.25")
    await led.void(hold.key)
    body = await me(router, secret)
    assert (body["holds_nano"], body["available_nano"]) == (0, 10 * USD)


async def test_recharge_settings_and_the_last_ten_payments_declines_included(router):
    client_id, secret = await router.client_with_key()
    other_id, _ = await router.client_with_key("other")
    async with router.services.engine.begin() as conn:
        await conn.execute(insert(ClientBilling.__table__).values(
            client_id=client_id, payment_method_id="pm_1", recharge_enabled=False, recharge_threshold=5 * USD,
            recharge_amount=20 * USD, recharge_monthly_cap=100 * USD, recharge_failures=3,
            recharge_disabled_reason="3 recharges failed in a row: turned off", updated_us=1))
        rows = []
        for i in range(12):
            status, failure = "succeeded", ""
            if i == 10:
                status, failure = "failed", "Your card was declined."
            if i == 11:
                status, failure = "requires_action", "This payment requires authentication."
            rows.append(dict(id=f"pay_{i:02d}", client_id=client_id, kind="recharge" if i else "checkout",
                             amount=(i + 1) * USD, status=status, idempotency_key=f"k{i}", failure=failure,
                             created_us=1_000 + i, updated_us=1_000 + i))
        rows.append(dict(id="pay_other", client_id=other_id, kind="checkout", amount=USD, status="succeeded",
                         idempotency_key="ko", failure="", created_us=5_000, updated_us=5_000))
        await conn.execute(insert(Payment.__table__), rows)
    body = await me(router, secret)
    assert body["auto_recharge"] == {
        "enabled": False, "threshold_nano": 5 * USD, "threshold_usd": "5.00", "amount_nano": 20 * USD,
        "amount_usd": "20.00", "monthly_cap_nano": 100 * USD, "monthly_cap_usd": "100.00", "card_saved": True,
        "in_flight": False, "failures_in_a_row": 3, "disabled_reason": "3 recharges failed in a row: turned off"}
    pays = body["payments"]
    assert [p["id"] for p in pays] == [f"pay_{i:02d}" for i in range(11, 1, -1)]  # newest ten; never another's
    assert pays[0] == {"id": "pay_11", "kind": "recharge", "amount_nano": 12 * USD, "amount_usd": "12.00",
                       "status": "requires_action", "failure": "This payment requires authentication.",
                       "created_us": 1_011}
    assert (pays[1]["status"], pays[1]["failure"]) == ("failed", "Your card was declined.")


@pytest.mark.parametrize("path", ["/v1/me", "/v1/usage"])
async def test_401s_are_those_of_v1(router, path):
    _, secret = await router.client_with_key()
    for headers in ({}, {"Authorization": "Bearer tm-nope"}, {"Authorization": "Basic xyz"}):
        mine = await router.http.get(path, headers=headers)
        theirs = await router.http.get("/v1/models", headers=headers)
        assert mine.status_code == theirs.status_code == 401
        assert mine.json() == theirs.json()
    # The key is checked before the body is read: a bad body from a caller without a key is a 401.
    r = await router.http.post("/v1/me/keys", content=b"{not json", headers={"Authorization": "Bearer tm-nope"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_key")
    assert (await router.http.get(path, headers=bearer(secret))).status_code == 200


async def test_a_new_key_is_shown_once_and_works_at_once(router):
    client_id, secret = await router.client_with_key()
    r = await router.http.post("/v1/me/keys", json={"name": "ci runner"}, headers=bearer(secret))
    assert r.status_code == 201, r.text
    made = r.json()
    new_secret = made["secret"]
    assert new_secret.startswith("tm-") and made["key"]["prefix"] == new_secret[:10]
    assert (made["key"]["name"], made["key"]["calling"], made["key"]["revoked"]) == ("ci runner", False, False)
    async with sdk(router, new_secret) as client:
        assert {m.id for m in (await client.models.list()).data} == {MODEL}
        r = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=3)
        assert r.usage.completion_tokens == 3
    body = await me(router, new_secret)
    assert [k["name"] for k in body["keys"]] == ["test", "ci runner"]
    assert [k["calling"] for k in body["keys"]] == [False, True]
    r = await router.http.get("/v1/me", headers=bearer(secret))
    assert new_secret not in r.text
    assert router.services.clients.key(made["key"]["id"]).client_id == client_id


@pytest.mark.parametrize(("body", "param"), [
    ({}, "name"), ({"name": ""}, "name"), ({"name": "   "}, "name"), ({"name": "x" * 101}, "name"),
    ({"name": 5}, "name"), ({"name": "ok", "admin": True}, "admin"), ([], None),
])
async def test_bad_key_requests_name_the_field(router, body, param):
    _, secret = await router.client_with_key()
    r = await router.http.post("/v1/me/keys", json=body, headers=bearer(secret))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    r = await router.http.post("/v1/me/keys", content=b"{", headers=bearer(secret))
    assert r.status_code == 400
    assert len((await me(router, secret))["keys"]) == 1  # nothing was created


async def test_a_revoked_key_is_refused_at_once(router):
    _, secret = await router.client_with_key()
    r = await router.http.post("/v1/me/keys", json={"name": "leaked"}, headers=bearer(secret))
    leaked = r.json()
    async with sdk(router, leaked["secret"]) as client:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        r = await router.http.delete(f"/v1/me/keys/{leaked['key']['id']}", headers=bearer(secret))
        assert r.status_code == 200, r.text
        assert r.json()["revoked"] is True and r.json()["revoked_us"] is not None
        with pytest.raises(openai.AuthenticationError) as e:
            await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=2)
        assert e.value.body["code"] == "revoked_api_key"
    r = await router.http.get("/v1/me", headers=bearer(leaked["secret"]))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "revoked_api_key")
    # Revoking it again answers the same key; the calling key still works.
    r = await router.http.delete(f"/v1/me/keys/{leaked['key']['id']}", headers=bearer(secret))
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert [k["revoked"] for k in (await me(router, secret))["keys"]] == [False, True]


async def test_another_clients_key_is_not_found_and_untouched(router):
    _, mine = await router.client_with_key("mine")
    other_id, theirs = await router.client_with_key("theirs")
    (their_key,) = router.services.clients.keys(other_id)
    r = await router.http.delete(f"/v1/me/keys/{their_key.id}", headers=bearer(mine))
    unknown = await router.http.delete("/v1/me/keys/key_000000000000", headers=bearer(mine))
    assert r.status_code == unknown.status_code == 404
    assert r.json()["error"]["code"] == unknown.json()["error"]["code"] == "key_not_found"
    # The same words as for a key that does not exist: nothing says it is someone's.
    assert r.json()["error"]["message"].replace(their_key.id, "X") == \
        unknown.json()["error"]["message"].replace("key_000000000000", "X")
    assert not router.services.clients.key(their_key.id).revoked
    assert (await router.http.get("/v1/me", headers=bearer(theirs))).status_code == 200


async def test_the_calling_key_may_be_revoked_but_never_the_last_active_one(router):
    _, first = await router.client_with_key()
    first_id = (await me(router, first))["keys"][0]["id"]
    r = await router.http.delete(f"/v1/me/keys/{first_id}", headers=bearer(first))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "last_active_key")
    assert "POST /v1/me/keys" in r.json()["error"]["message"]
    second = (await router.http.post("/v1/me/keys", json={"name": "second"}, headers=bearer(first))).json()
    r = await router.http.delete(f"/v1/me/keys/{first_id}", headers=bearer(first))  # the key making the call
    assert r.status_code == 200 and r.json()["calling"] is True and r.json()["revoked"] is True
    r = await router.http.get("/v1/me", headers=bearer(first))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "revoked_api_key")
    r = await router.http.delete(f"/v1/me/keys/{second['key']['id']}", headers=bearer(second["secret"]))
    assert r.status_code == 409


async def test_two_revocations_at_once_leave_one_active_key(router):
    _, first = await router.client_with_key()
    second = (await router.http.post("/v1/me/keys", json={"name": "b"}, headers=bearer(first))).json()
    ids = [k["id"] for k in (await me(router, first))["keys"]]
    answers = await asyncio.gather(*(router.http.delete(f"/v1/me/keys/{i}", headers=bearer(s))
                                     for i, s in zip(ids, [first, second["secret"]], strict=True)))
    assert sorted(a.status_code for a in answers) == [200, 409]
    keys = router.services.clients.keys(router.services.clients.key(ids[0]).client_id)
    assert sum(not k.revoked for k in keys) == 1


async def test_active_keys_are_capped(router, monkeypatch):
    from backend.clients import self_service

    monkeypatch.setattr(self_service, "MAX_ACTIVE_KEYS", 2)
    _, secret = await router.client_with_key()
    assert (await router.http.post("/v1/me/keys", json={"name": "b"}, headers=bearer(secret))).status_code == 201
    r = await router.http.post("/v1/me/keys", json={"name": "c"}, headers=bearer(secret))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "too_many_keys")
