"""Engine TLS end to end: an agent whose engines are reached off loopback serves them over HTTPS
with a certificate it made, the router accepts exactly that certificate (the SHA-256 the agent
reported), and the agent's own probes and hardware check go through TLS too."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import httpx
import openai
import pytest

from hostkit.agent import Agent
from hostkit.config import AgentConfig
from hostkit.engine_tls import ensure_engine_cert
from hostkit.sim.engine import SimTiming, start_sim_engine
from tests.integration.test_engine_keys import CHAT, MODEL, until
from tests.router_harness import FAST, Router, router_settings, running_router


async def start_agent(router: Router, tmp_path, engine_tls: str = "on") -> tuple[Agent, str]:
    enrolled = (await router.http.post("/admin/hosts", json={"name": "tls-host"}, headers=router.admin)).json()
    agent = Agent(AgentConfig(router_url=router.url, host_token=enrolled["token"], name="tls-host", engine="sim",
                              models=[MODEL], engine_port=0, control_port=0, heartbeat_interval_s=0.2,
                              sim=SimTiming(speed=0), engine_tls=engine_tls, tls_dir=tmp_path / "tls"))
    await agent.start()
    host_id = enrolled["host"]["id"]
    fleet = router.services.fleet
    host = fleet.host(host_id)
    # Routable only once its hardware check passed: the agent measured decode speed over TLS.
    assert await until(lambda: fleet.is_up(host) and fleet.choose(MODEL) is not None, 10)
    return agent, host_id


async def test_the_router_reaches_the_engines_over_tls_pinned_to_the_agents_certificate(tmp_path) -> None:
    async with running_router(router_settings(tmp_path / "router")) as router:
        agent, host_id = await start_agent(router, tmp_path)
        try:
            cert = agent.engine.tls
            assert cert is not None and (tmp_path / "tls" / "engine-key.pem").stat().st_mode & 0o777 == 0o600
            host = router.services.fleet.host(host_id)
            rep = host.replicas[MODEL]
            assert host.engine_tls_sha256 == cert.sha256 and rep.url.startswith("https://")
            assert isinstance(rep.ssl, aiohttp.Fingerprint)

            _, secret = await router.client_with_key()
            async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
                assert (await sdk.chat.completions.create(**CHAT)).usage.completion_tokens == 4
                assert [c async for c in await sdk.chat.completions.create(**CHAT, stream=True)]
            assert agent.engine.sim.requests_total >= 2

            # Nothing in clear: plain HTTP on the engine's port gets no answer.
            plain = rep.url.replace("https://", "http://")
            with pytest.raises(httpx.HTTPError):
                async with httpx.AsyncClient() as client:
                    await client.get(plain + "/health")
            # The certificate is the one the router pinned.
            served = await asyncio.to_thread(ssl.get_server_certificate, (agent.engine.sim.host, agent.engine.sim.port))
            assert ensure_engine_cert(tmp_path / "tls").sha256 == cert.sha256
            assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(cert.cert_path.read_text())
            # Without the pin, an engine's self-signed certificate is not trusted.
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient() as client:
                    await client.get(rep.url + "/health")
        finally:
            await agent.stop(drain_timeout_s=2)


async def test_the_same_certificate_across_agent_restarts(tmp_path) -> None:
    async with running_router(router_settings(tmp_path / "router")) as router:
        agent, _ = await start_agent(router, tmp_path)
        first = agent.engine.tls.sha256
        await agent.stop(drain_timeout_s=2)
        agent, _ = await start_agent(router, tmp_path)
        try:
            assert agent.engine.tls.sha256 == first
        finally:
            await agent.stop(drain_timeout_s=2)


async def test_an_engine_whose_certificate_is_not_the_pinned_one_gets_no_request(tmp_path) -> None:
    """Someone else answering at the host's address (or a re-imaged machine) cannot take the traffic:
    the request goes to a host whose certificate matches, and with none it fails, uncharged."""
    theirs = ensure_engine_cert(tmp_path / "impostor")
    pinned = ensure_engine_cert(tmp_path / "real")
    async with running_router(router_settings(tmp_path / "router")) as router:
        engine = await start_sim_engine([MODEL], timing=FAST, ssl_context=theirs.server_context())
        swapped = await router.enroll("swapped", engine, [MODEL], tls_pin=pinned.sha256)
        _, secret = await router.client_with_key()
        balance = (await router.http.get("/admin/clients", headers=router.admin)).json()[0]["balance_nano"]
        async with openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0) as sdk:
            with pytest.raises(openai.APIStatusError) as failed:
                await sdk.chat.completions.create(**CHAT)
            assert failed.value.status_code == 502 and "ServerFingerprintMismatch" in failed.value.message
            assert engine.requests_total == 0
            assert (await router.http.get("/admin/clients", headers=router.admin)).json()[0]["balance_nano"] == balance

            # Its agent reports the certificate it really serves: it is taken back at once.
            swapped.tls_pin = theirs.sha256
            rep = router.services.fleet.host(swapped.host_id).replicas[MODEL]
            assert await until(lambda: rep.ejected_until == 0 and router.services.fleet.choose(MODEL) is not None, 10)
            assert (await sdk.chat.completions.create(**CHAT)).usage.completion_tokens == 4
            assert engine.requests_total == 1


def test_tls_is_on_off_loopback_unless_told(tmp_path) -> None:
    def config(**kw) -> AgentConfig:
        return AgentConfig(router_url="http://r:1", host_token="tmh-x", models=[MODEL], **kw)

    assert not config().uses_tls  # 127.0.0.1: the router is on this machine
    assert not config(engine_host="::1").uses_tls and not config(engine_host="localhost").uses_tls
    assert config(engine_host="0.0.0.0", advertise_host="74.48.78.46").uses_tls
    assert config(engine_host="10.0.0.5").uses_tls
    assert config(engine_host="0.0.0.0", advertise_host="gpu7.example").uses_tls  # a name may resolve anywhere
    assert config(engine_tls="on").uses_tls
    assert not config(engine_host="0.0.0.0", advertise_host="74.48.78.46", engine_tls="off").uses_tls


def test_the_key_file_is_private_and_both_files_are_made_once(tmp_path) -> None:
    cert = ensure_engine_cert(tmp_path / "tls")
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    assert cert.key_path.stat().st_mode & 0o777 == 0o600
    before = (cert.cert_path.read_bytes(), cert.key_path.read_bytes())
    assert ensure_engine_cert(tmp_path / "tls") == cert
    assert (cert.cert_path.read_bytes(), cert.key_path.read_bytes()) == before
    assert not list((tmp_path / "tls").glob("*.tmp"))
