"""Licences acknowledged by clients, against a real router on loopback (real HTTP, real SQLite,
simulated engines) with the official openai SDK as the client: 403 until the client accepts the
model's current licence version, the operator's exemption and acceptance, restarts."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import openai
import pytest

from backend.catalogue import shipped_dir
from tests.router_harness import Router, router_settings, running_router

LLAMA = "llama-3.1-8b-instruct"  # Llama 3.1 Community License: needs acknowledging
QWEN = "qwen2.5-0.5b-instruct"  # Apache-2.0: does not
LLAMA_LICENCE = "Llama 3.1 Community License Agreement"
LLAMA_URL = "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@contextlib.asynccontextmanager
async def router_on(tmp_path: Path, catalogue: Path | None = None):
    """A router on `tmp_path`'s data (a second one on the same path: the first restarted)."""
    settings = router_settings(tmp_path / "data", **({"catalogue_dir": catalogue} if catalogue else {}))
    async with running_router(settings) as r:
        await r.add_host("rig", [LLAMA, QWEN])
        yield r


@pytest.fixture
async def router(tmp_path):
    async with router_on(tmp_path) as r:
        yield r


async def chat(router: Router, secret: str, model: str = LLAMA):
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    try:
        return await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=3)
    finally:
        await sdk.close()


async def refused(router: Router, secret: str, model: str = LLAMA) -> dict:
    with pytest.raises(openai.PermissionDeniedError) as err:
        await chat(router, secret, model)
    assert err.value.status_code == 403
    body = err.value.response.json()["error"]
    assert (body["type"], body["code"], body["param"]) == ("permission_error", "licence_not_accepted", "model")
    return body


async def model_licence(router: Router, model: str) -> dict:
    r = await router.http.get(f"/admin/models/{model}/licence", headers=router.admin)
    assert r.status_code == 200, r.text
    return r.json()


async def mine(router: Router, secret: str) -> dict:
    r = await router.http.get("/v1/me/licences", headers=bearer(secret))
    assert r.status_code == 200, r.text
    return r.json()


async def test_403_names_the_licence_and_how_to_accept_and_charges_nothing(router):
    _, secret = await router.client_with_key(accept_licences=False)
    body = await refused(router, secret)
    for part in (LLAMA_LICENCE, "version llama3.1", LLAMA_URL, f"POST /v1/me/licences/{LLAMA}"):
        assert part in body["message"], body["message"]
    assert (await chat(router, secret, QWEN)).choices  # Apache-2.0: no acknowledgement needed
    await router.services.ledger.flush()
    usage = (await router.http.get("/v1/usage", headers=bearer(secret))).json()
    assert [g["group"] for g in usage["data"]] == [QWEN]  # the refused request was never metered
    needed = {t["model"]: t for t in (await mine(router, secret))["needed"]}
    assert needed[LLAMA] == {
        "model": LLAMA, "licence": LLAMA_LICENCE, "url": LLAMA_URL, "version": "llama3.1",
        "commercial_use": "restricted", "restrictions": needed[LLAMA]["restrictions"],
        "attribution": needed[LLAMA]["attribution"], "requires_acceptance": True,
        "accept": f"POST /v1/me/licences/{LLAMA}", "notice": "Built with Llama", "base": None}
    assert "Built with Llama" in needed[LLAMA]["attribution"]
    # The catalogue's default: restricted use or attribution needs it; Apache-2.0 and MIT do not.
    assert {"gemma-2-9b-it", "qwen2.5-72b-instruct", "llama-3.1-405b-instruct"} <= set(needed)
    assert not {QWEN, "phi-4", "mistral-7b-instruct-v0.3"} & set(needed)


async def test_accepting_serves_the_model_and_is_recorded_with_version_and_time(router):
    _, secret = await router.client_with_key(accept_licences=False)
    await refused(router, secret)
    r = await router.http.post(f"/v1/me/licences/{LLAMA}", headers=bearer(secret))
    assert r.status_code == 200, r.text
    first = r.json()
    assert {k: first[k] for k in ("model", "licence", "version", "accepted_by", "current")} == {
        "model": LLAMA, "licence": LLAMA_LICENCE, "version": "llama3.1", "accepted_by": "client", "current": True}
    assert abs(first["accepted_us"] - router.services.clock.now_us()) < 60_000_000
    reply = await chat(router, secret)
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 3
    licences = await mine(router, secret)
    assert licences["accepted"] == [first]
    assert LLAMA not in {t["model"] for t in licences["needed"]}
    # Accepting again (with the right version) answers the first record; another client is unaffected.
    again = await router.http.post(f"/v1/me/licences/{LLAMA}", json={"version": "llama3.1"}, headers=bearer(secret))
    assert again.status_code == 200 and again.json() == first
    _, other = await router.client_with_key("other", accept_licences=False)
    await refused(router, other)


async def test_a_wrong_version_or_body_is_refused_naming_the_field(router):
    _, secret = await router.client_with_key(accept_licences=False)
    r = await router.http.post(f"/v1/me/licences/{LLAMA}", json={"version": "llama3"}, headers=bearer(secret))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == ("version", "licence_version_mismatch")
    assert "llama3.1" in err["message"] and "'llama3'" in err["message"]
    r = await router.http.post(f"/v1/me/licences/{LLAMA}", json={"versoin": "llama3.1"}, headers=bearer(secret))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "versoin")
    r = await router.http.post(f"/v1/me/licences/{LLAMA}", json={"version": 3}, headers=bearer(secret))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "version")
    r = await router.http.post("/v1/me/licences/no-such-model", headers=bearer(secret))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    r = await router.http.post(f"/v1/me/licences/{LLAMA}", headers=bearer("tm-nope"))
    assert r.status_code == 401
    await refused(router, secret)  # nothing was recorded


async def test_operator_exemption_and_acceptance_recorded_as_the_operator(router):
    client_id, secret = await router.client_with_key(accept_licences=False)
    h = router.admin
    before = await model_licence(router, LLAMA)
    # Accept on the client's behalf.
    r = await router.http.post(f"/admin/clients/{client_id}/licences/{LLAMA}", headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["accepted_by"], r.json()["version"]) == ("operator", "llama3.1")
    assert (await chat(router, secret)).choices
    assert [a["accepted_by"] for a in (await mine(router, secret))["accepted"]] == ["operator"]
    after = await model_licence(router, LLAMA)
    assert (after["accepted_current"], after["accepted_older_only"]) == (before["accepted_current"] + 1, 0)
    r = await router.http.post(f"/admin/clients/nobody/licences/{LLAMA}", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "client_not_found")
    r = await router.http.post(f"/admin/clients/{client_id}/licences/{LLAMA}", headers=bearer(secret))
    assert r.status_code == 401  # a client key is not the admin token

    # Exempt the licence: another client is served without accepting; then require it again.
    _, other = await router.client_with_key("other", accept_licences=False)
    await refused(router, other)
    r = await router.http.put(f"/admin/models/{LLAMA}/licence", json={"requires_acceptance": False}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json() | {"set_us": 0} == {"model": LLAMA, "licence": LLAMA_LICENCE, "version": "llama3.1",
                                        "requires_acceptance": False, "catalogue_default": True,
                                        "set_by": "operator", "set_us": 0}
    assert (await chat(router, other)).choices
    assert LLAMA not in {t["model"] for t in (await mine(router, other))["needed"]}
    assert (await model_licence(router, LLAMA))["requires_acceptance"] is False
    r = await router.http.put(f"/admin/models/{LLAMA}/licence", json={"requires_acceptance": True}, headers=h)
    assert r.status_code == 200 and r.json()["requires_acceptance"] is True
    await refused(router, other)
    assert (await chat(router, secret)).choices  # the operator's acceptance still holds

    r = await router.http.put(f"/admin/models/{LLAMA}/licence", json={"requires_acceptance": "no"}, headers=h)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "requires_acceptance")
    r = await router.http.put("/admin/models/nope/licence", json={"requires_acceptance": False}, headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    r = await router.http.get("/admin/models/nope/licence", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "model_not_found")
    assert (await router.http.get(f"/admin/models/{LLAMA}/licence", headers=bearer(secret))).status_code == 401
    events = [e["kind"] for e in (await router.http.get("/admin/events", headers=h)).json()]
    assert "client.licence_accepted" in events and "model.licence_policy" in events


def catalogue_with_llama_version(tmp_path: Path, version: str) -> Path:
    """The shipped catalogue with the Llama 3.1 licence at another version."""
    out = tmp_path / f"catalogue-{version}"
    shutil.copytree(shipped_dir(), out)
    models = out / "models.toml"
    text = models.read_text()
    assert text.count('version = "llama3.1"') == 3
    models.write_text(text.replace('version = "llama3.1"', f'version = "{version}"'))
    return out


async def test_acceptances_and_exemptions_survive_a_restart_and_a_new_version_needs_a_new_one(tmp_path):
    async with router_on(tmp_path) as router:
        _, secret = await router.client_with_key(accept_licences=False)
        assert (await router.http.post(f"/v1/me/licences/{LLAMA}", headers=bearer(secret))).status_code == 200
        assert (await router.http.put("/admin/models/gemma-2-9b-it/licence", json={"requires_acceptance": False},
                                      headers=router.admin)).status_code == 200
    async with router_on(tmp_path) as router:  # restarted on the same database
        assert (await chat(router, secret)).choices
        licences = await mine(router, secret)
        assert [(a["model"], a["version"], a["current"]) for a in licences["accepted"]] == [(LLAMA, "llama3.1", True)]
        assert "gemma-2-9b-it" not in {t["model"] for t in licences["needed"]}  # the exemption was kept
    new = catalogue_with_llama_version(tmp_path, "2026-12-01")
    async with router_on(tmp_path, new) as router:  # the catalogue now has a new version of the licence
        body = await refused(router, secret)
        assert "accepted version llama3.1" in body["message"] and "now version 2026-12-01" in body["message"]
        licences = await mine(router, secret)
        assert licences["accepted"][0]["current"] is False
        assert {t["model"]: t["version"] for t in licences["needed"]}[LLAMA] == "2026-12-01"
        r = await router.http.post(f"/v1/me/licences/{LLAMA}", json={"version": "llama3.1"}, headers=bearer(secret))
        assert (r.status_code, r.json()["error"]["param"]) == (400, "version")
        # The client accepted only the older version: counted apart until it accepts this one.
        before = await model_licence(router, LLAMA)
        assert (before["version"], before["accepted_older_only"]) == ("2026-12-01", 1)
        r = await router.http.post(f"/v1/me/licences/{LLAMA}", json={"version": "2026-12-01"}, headers=bearer(secret))
        assert r.status_code == 200 and r.json()["current"] is True
        assert (await chat(router, secret)).choices
        after = await model_licence(router, LLAMA)
        assert (after["accepted_current"], after["accepted_older_only"]) == (
            before["accepted_current"] + 1, before["accepted_older_only"] - 1)
        assert [a["version"] for a in (await mine(router, secret))["accepted"]] == ["llama3.1", "2026-12-01"]
