"""Host self-service against a real router and a real host agent: `tokenmill-host earnings`, `models`
and `serve-models` (hostkit/cli.py's main, run as the command runs it) read the host's own figures with
its token and change what it serves through the agent's control API; another host's token gets 403."""

from __future__ import annotations

import asyncio
import json
import time

import openai
from sqlalchemy import func, select

from backend.ledger import chart
from backend.ledger.tables import UsageEvent
from backend.metrics.host_earnings import PAYOUT_CODE
from hostkit.agent import Agent
from hostkit.cli import main
from hostkit.config import AgentConfig
from hostkit.control_api import start_control_api
from hostkit.sim.engine import SimTiming
from tests.router_harness import Router, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
OTHER = "qwen2.5-7b-instruct"
TOO_BIG = "llama-3.1-70b-instruct"  # 40.6 GB at int4: not on one RTX 4090
BEAT_S = 0.2
SHARE_BPS = 7000


async def until(cond, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def enrolled(router: Router, name: str) -> tuple[str, str]:
    r = await router.http.post("/admin/hosts", json={"name": name, "provider": "community",
                                                     "payout_share_bps": SHARE_BPS}, headers=router.admin)
    r.raise_for_status()
    return r.json()["host"]["id"], r.json()["token"]


def config_file(tmp_path, router: Router, token: str) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(f'router_url = "{router.url}"\nhost_token = "{token}"\nengine = "sim"\n'
                    f'models = ["{MODEL}"]\ngpu_type = "rtx4090"\n', encoding="utf-8")
    return str(path)


async def command(capsys, *argv: str) -> tuple[int, str, str]:
    """`tokenmill-host ARGV` as the console script runs it (in a thread: the router shares this loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def started_agent(router: Router, token: str):
    agent = Agent(AgentConfig(router_url=router.url, host_token=token, name="gpu-box", engine="sim", models=[MODEL],
                              gpu_type="rtx4090", engine_port=0, control_port=0, heartbeat_interval_s=BEAT_S,
                              retry_initial_s=0.05, retry_max_s=0.2, sim=SimTiming(speed=0)))
    await agent.start()
    control = await start_control_api(agent, 0)
    return agent, control


async def test_a_host_reads_its_own_earnings_and_market_and_no_one_elses(tmp_path, capsys):
    async with running_router(router_settings(tmp_path, heartbeat_interval_s=BEAT_S)) as router:
        host_id, token = await enrolled(router, "gpu-box")
        other_id, other_token = await enrolled(router, "neighbour")
        agent, control = await started_agent(router, token)
        fleet = router.services.fleet
        try:
            await until(lambda: fleet.choose(MODEL) is not None, "the host's replica routable")
            _, secret = await router.client_with_key()
            sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
            for _ in range(3):
                await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=5)
            await sdk.close()
            ledger = router.services.ledger
            await ledger.flush()
            u = UsageEvent.__table__
            async with router.services.engine.connect() as conn:
                earned = (await conn.execute(select(func.sum(u.c.host_share)).where(u.c.host_id == host_id))).scalar()
            assert earned > 0
            # Billing's payout posts this (host payable -> payment clearing, code host_payout).
            paid = earned // 3
            await ledger.transfer("test-payout-1", chart.host_account(host_id), chart.PAYMENT_CLEARING, paid,
                                  code=PAYOUT_CODE)
            cfg = config_file(tmp_path, router, token)

            code, out, err = await command(capsys, "earnings", "--days", "3", "--config", cfg, "--json")
            assert code == 0, err
            e = json.loads(out)
            assert e["host_id"] == host_id and e["days"] == 3 and e["payout_share_bps"] == SHARE_BPS
            assert e["today_nano"] == e["month_nano"] == e["window_nano"] == earned
            assert e["owed_nano"] == earned - paid and e["paid_nano"] == paid
            assert [(m["model"], m["requests"], m["earned_nano"]) for m in e["per_model"]] == [(MODEL, 3, earned)]
            assert [d["model"] for d in e["per_day"]] == [MODEL] and e["per_day"][0]["completion_tokens"] == 15

            code, out, err = await command(capsys, "earnings", "--config", cfg)
            assert code == 0, err
            assert "owed (not yet paid out)" in out and MODEL in out and "$0.00" in out

            code, out, err = await command(capsys, "models", "--config", cfg, "--json")
            assert code == 0, err
            market = json.loads(out)
            rows = {r["model"]: r for r in market["models"]}
            mine = rows[MODEL]
            assert mine["fits"] and mine["serving"] and mine["replicas"] == 1 and mine["enabled"]
            assert mine["expected_per_hour_nano"] > 0 and mine["engine_spec"]["model"] == MODEL
            assert mine["licence"]["name"] == "Llama 3.1 Community License Agreement"
            assert mine["licence"]["commercial_use"] == "restricted" and mine["licence"]["attribution"]
            assert rows[OTHER]["fits"] and not rows[OTHER]["serving"] and rows[OTHER]["replicas"] == 0
            assert not rows[TOO_BIG]["fits"] and "40.6 GB" in rows[TOO_BIG]["why_not"]
            assert "utilization" in market["assumption"] or "busy" in market["assumption"]

            code, out, err = await command(capsys, "models", "--config", cfg)
            assert code == 0, err
            assert OTHER in out and TOO_BIG not in out.split("Licences")[0] and "Llama 3.1 Community" in out

            # Another host's token, no token, a bad window: each answered in the envelope, naming why.
            other = {"Authorization": f"Bearer {other_token}"}
            for path in (f"/hosts/{host_id}/earnings", f"/hosts/{host_id}/market"):
                r = await router.http.get(path, headers=other)
                assert r.status_code == 403, r.text
                assert r.json()["error"]["code"] == "not_your_host" and other_id in r.json()["error"]["message"]
                r = await router.http.get(path)
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_host_token"
            r = await router.http.get(f"/hosts/{host_id}/earnings", params={"days": 0},
                                      headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 400 and "days" in r.text
        finally:
            await control.stop()
            await agent.stop(drain_timeout_s=1)


async def test_serve_models_changes_what_the_router_routes_here(tmp_path, capsys):
    async with running_router(router_settings(tmp_path, heartbeat_interval_s=BEAT_S)) as router:
        host_id, token = await enrolled(router, "gpu-box")
        agent, control = await started_agent(router, token)
        fleet = router.services.fleet
        host = fleet.host(host_id)
        try:
            await until(lambda: fleet.choose(MODEL) is not None, "the host's replica routable")
            cfg = config_file(tmp_path, router, token)
            port = str(control.port)

            # Refused before anything stops: a model the GPUs cannot run, one the catalogue lacks.
            code, _, err = await command(capsys, "serve-models", f"{OTHER},{TOO_BIG},no-such-model", "--config", cfg,
                                         "--control-port", port)
            assert code == 1
            assert f"{TOO_BIG}: this host's GPUs cannot serve it" in err
            assert "no-such-model: not in the catalogue" in err and f"{OTHER}:" not in err
            assert agent.status().models == [MODEL] and set(host.replicas) == {MODEL}

            code, out, err = await command(capsys, "serve-models", OTHER, "--config", cfg, "--control-port", port)
            assert code == 0, err
            assert f"serving {OTHER}" in out
            await until(lambda: set(host.replicas) == {OTHER} and fleet.choose(OTHER) is not None,
                        "the router following the new model set")
            assert fleet.choose(MODEL) is None

            _, secret = await router.client_with_key()
            sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
            reply = await sdk.chat.completions.create(model=OTHER, messages=[{"role": "user", "content": "hi"}],
                                                      max_tokens=3)
            assert reply.usage.completion_tokens == 3
            await sdk.close()
            assert agent.status().models == [OTHER]
        finally:
            await control.stop()
            await agent.stop(drain_timeout_s=1)
