"""The admin and host APIs over real HTTP: what the console and the agents are built on."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from backend.app import create_app
from backend.settings import Settings
from hostkit import protocol
from tests.router_harness import router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def router(tmp_path):
    async with running_router(router_settings(tmp_path)) as r:
        yield r


def test_committed_openapi_schema_is_current(tmp_path):
    schema = create_app(Settings(data_dir=tmp_path)).openapi_schema.to_schema()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(schema)), "run: tokenmill openapi > docs/openapi.json"


async def test_admin_needs_the_admin_token_not_a_client_key(router):
    _, secret = await router.client_with_key()
    for headers in ({}, {"Authorization": f"Bearer {secret}"}, {"Authorization": "Bearer tma-wrong"}):
        r = await router.http.get("/admin/clients", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_admin_token"


async def test_clients_credit_and_keys(router):
    h = router.admin
    r = await router.http.post("/admin/clients", json={"name": "Acme", "id": "acme"}, headers=h)
    assert r.status_code == 201 and r.json()["balance_nano"] == 0
    grant = {"amount_usd": "12.50", "idempotency_key": "inv-1"}
    r1 = await router.http.post("/admin/clients/acme/credit", json=grant, headers=h)
    r2 = await router.http.post("/admin/clients/acme/credit", json=grant, headers=h)
    assert r1.json()["balance_nano"] == r2.json()["balance_nano"] == 12_500_000_000
    assert r2.json()["replayed"] is True
    r = await router.http.post("/admin/clients/acme/credit", json={**grant, "amount_usd": "13"}, headers=h)
    assert r.status_code == 409
    r = await router.http.post("/admin/clients/acme/credit", json={"amount_usd": 1.5, "idempotency_key": "x"},
                               headers=h)
    assert r.status_code == 400  # a float is not money
    r = await router.http.post("/admin/clients/acme/credit", json={"amount_usd": "-1", "idempotency_key": "y"},
                               headers=h)
    assert r.status_code == 400 and r.json()["error"]["param"] == "amount_usd"
    r = await router.http.post("/admin/clients/nobody/credit", json=grant, headers=h)
    assert r.status_code == 404
    issued = (await router.http.post("/admin/clients/acme/keys", json={"name": "prod"}, headers=h)).json()
    assert issued["secret"].startswith("tm-") and issued["key"]["prefix"] == issued["secret"][:10]
    listed = (await router.http.get("/admin/clients/acme/keys", headers=h)).text
    assert issued["secret"] not in listed  # the secret is shown once, at creation
    clients = (await router.http.get("/admin/clients", headers=h)).json()
    assert clients[0]["active_keys"] == 1 and clients[0]["balance_usd"] == "$12.500000"


async def test_hosts_enroll_register_heartbeat_and_silence(router):
    host = await router.add_host("rig", [MODEL])
    hosts = (await router.http.get("/admin/hosts", headers=router.admin)).json()
    assert hosts[0]["status"] == "active" and hosts[0]["models"] == [MODEL]
    assert "token" not in json.dumps(hosts)
    fleet = router.services.fleet
    assert fleet.choose(MODEL) is not None
    await host.silence()  # the agent stops heartbeating
    await asyncio.sleep(fleet.heartbeat_interval_s * (protocol.MISSED_HEARTBEATS_DOWN + 1.5))
    assert fleet.choose(MODEL) is None
    assert (await router.http.get("/admin/hosts", headers=router.admin)).json()[0]["status"] == "down"
    host.task = asyncio.create_task(host._beat())  # heard again: back in rotation
    await asyncio.sleep(fleet.heartbeat_interval_s * 2)
    assert fleet.choose(MODEL) is not None
    kinds = [e["kind"] for e in (await router.http.get("/admin/events", headers=router.admin)).json()]
    assert {"host.enrolled", "host.joined", "host.lost", "host.back"} <= set(kinds)


async def test_removed_host_token_stops_working(router):
    host = await router.add_host("rig", [MODEL])
    r = await router.http.post(f"/admin/hosts/{host.host_id}/remove", headers=router.admin)
    assert r.json()["status"] == "removed"
    body = msgspec.json.encode(protocol.Heartbeat(models=[]))
    r = await router.http.post("/hosts/heartbeat", content=body, headers={"Authorization": f"Bearer {host.token}"})
    assert r.status_code == 401
    r = await router.http.post(f"/admin/hosts/{host.host_id}/resume", headers=router.admin)
    assert r.status_code == 409


async def test_bad_host_messages_are_refused_clearly(router):
    host = await router.add_host("rig", [MODEL])
    r = await router.http.post("/hosts/heartbeat", content=b'{"models": 3}',
                               headers={"Authorization": f"Bearer {host.token}"})
    assert r.status_code == 400 and "models" in r.json()["error"]["message"]
    r = await router.http.post("/admin/hosts", json={"name": "x", "payout_share_bps": 20000},
                               headers=router.admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "payout_share_bps"


async def test_usage_report_per_model_client_and_host(router):
    import openai

    await router.add_host("rig", [MODEL])
    client_id, secret = await router.client_with_key()
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    for _ in range(3):
        await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    await sdk.close()
    await router.services.ledger.flush()
    for group, expected in (("model", MODEL), ("client", client_id), ("host", router.hosts[0].host_id)):
        rows = (await router.http.get(f"/admin/usage?group_by={group}", headers=router.admin)).json()
        assert rows[0]["group"] == expected and rows[0]["requests"] == 3
        assert rows[0]["completion_tokens"] == 12 and rows[0]["charged_nano"] > 0
    r = await router.http.get("/admin/usage?group_by=colour", headers=router.admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "group_by"
