"""Provider local end to end, as the autoscaler of `serve --local` uses it: a real router, the real
Provisioner and the local fleet's spawner, real host agent processes (the simulated engine).

provision(provider="local") -> a host agent starts, registers, passes its check and serves a
client request through the router -> teardown: drained, agent gone, host removed, record removed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai

from backend.localfleet.local_fleet import DEMO_SLOTS, LocalFleet
from backend.provision.hosts import ProvisionedHosts
from tests.router_harness import router_settings, running_router

MODEL = "qwen2.5-0.5b-instruct"
TIMEOUT_S = 25.0


async def finished(router, job: dict) -> tuple[dict, list[dict]]:
    events = list(job["events"])
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while job["state"] not in ("succeeded", "failed"):
        assert asyncio.get_running_loop().time() < deadline, "\n".join(e["text"] for e in events)
        await asyncio.sleep(0.1)
        after = events[-1]["seq"] if events else 0
        r = await router.http.get(f"/admin/jobs/{job['id']}", params={"after": after}, headers=router.admin)
        job = r.json()
        events += job["events"]
    return job, events


def story(events: list[dict]) -> str:
    return "\n".join(f"{e['kind']:>13} {e['text']}" for e in events)


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


async def test_a_local_host_is_provisioned_serves_and_is_torn_down(tmp_path):
    settings = router_settings(tmp_path, heartbeat_interval_s=0.3, provision_ready_timeout_s=20,
                               teardown_drain_timeout_s=10)
    async with running_router(settings) as router:
        services, http, admin = router.services, router.http, router.admin
        # Without the local fleet, provider local is refused as before.
        r = await http.post("/admin/provision", headers=admin, json={"model": MODEL, "provider": "local"})
        assert r.status_code == 400 and "tokenmill serve --local" in r.json()["error"]["message"]
        offers = await services.provisioner.offers(MODEL)
        assert not any(o.provider == "local" for o in offers.offers)

        fleet = LocalFleet(settings, services, router.url)
        await fleet.attach()
        try:
            # Its offers are listed (catalogue prices), with or without `only`.
            offers = await services.provisioner.offers(MODEL)
            local = [o for o in offers.offers if o.provider == "local"]
            assert local and not any("serve --local" in u for u in offers.unavailable)
            only = (await http.get("/admin/offers", params={"model": MODEL, "provider": "local"},
                                   headers=admin)).json()
            assert [o["offer_id"] for o in only["offers"]] == [o.offer_id for o in local]
            offer = local[0]

            reason = "qwen2.5-0.5b-instruct: utilization 0.91 > 0.80 for 3 decisions"
            r = await http.post("/admin/provision", headers=admin, json={
                "model": MODEL, "provider": "local", "offer_id": offer.offer_id, "reason": reason})
            assert r.status_code == 202, r.text
            job, events = await finished(router, r.json())
            assert job["state"] == "succeeded", story(events)
            assert events[0]["kind"] == "reason" and events[0]["text"] == reason and job["reason"] == reason
            assert any("passed its check" in e["text"] for e in events), story(events)

            host = services.fleet.host(job["host_id"])
            assert (host.provider, host.cost_per_hour, host.payout_share_bps) == ("local", offer.price_per_hour_nano, 0)
            assert services.fleet.is_up(host) and list(host.replicas) == [MODEL]
            record = await ProvisionedHosts(services.engine).get(host.id)
            assert record.rented and record.state == "serving" and record.instance_id == job["instance_id"]
            config = tmp_path / "local" / f"{host.id}.toml"
            assert config.stat().st_mode & 0o777 == 0o600
            pid = fleet._rented[host.id].proc.pid
            assert alive(pid)

            # It serves a client request through the router (the only replica of the model).
            _, secret = await router.client_with_key()
            sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
            try:
                reply = await sdk.chat.completions.create(model=MODEL, max_tokens=4,
                                                          messages=[{"role": "user", "content": "hi"}])
            finally:
                await sdk.close()
            assert reply.usage.completion_tokens == 4
            # Its heartbeats say how many requests its engine runs at once (the sim's max_concurrency).
            deadline = asyncio.get_running_loop().time() + TIMEOUT_S
            while (m := host.replicas[MODEL].metrics) is None or m.max_num_seqs is None:
                assert asyncio.get_running_loop().time() < deadline, host.replicas[MODEL]
                await asyncio.sleep(0.1)
            assert m.max_num_seqs == DEMO_SLOTS

            r = await http.post(f"/admin/hosts/{host.id}/teardown", headers=admin)
            assert r.status_code == 202, r.text
            down, events = await finished(router, r.json())
            assert down["state"] == "succeeded", story(events)
            phases = [e["text"] for e in events if e["kind"] == "phase"]
            assert phases[0].startswith(f"draining {host.name}") and any("stopped" in p for p in phases)
            assert host.state == "removed" and not host.registered
            assert not alive(pid) and not config.exists()
            assert (await ProvisionedHosts(services.engine).get(host.id)).state == "removed"
            assert (await services.provisioner.local_provider.status(job["instance_id"])).state == "terminated"
            kinds = [e.kind for e in services.events.since() if e.subject == host.id]
            assert "host.provisioned" in kinds and "host.torn_down" in kinds
        finally:
            await fleet.stop()
        assert services.provisioner.local_hosts is None  # stopped: provider local refused again
        r = await http.post("/admin/provision", headers=admin, json={"model": MODEL, "provider": "local"})
        assert r.status_code == 400 and "tokenmill serve --local" in r.json()["error"]["message"]


async def test_a_restart_tears_down_the_local_hosts_the_last_run_left(tmp_path):
    settings = router_settings(tmp_path, heartbeat_interval_s=0.3, provision_ready_timeout_s=20)
    async with running_router(settings) as router:
        fleet = LocalFleet(settings, router.services, router.url)
        await fleet.attach()
        try:
            job = await router.services.provisioner.provision(_request())
            while not job.finished:
                await asyncio.sleep(0.1)
            assert job.state == "succeeded", job.out(0)
            pid = fleet._rented[job.host_id].proc.pid
        finally:
            await fleet.stop()
        assert not alive(pid)
        host_id = job.host_id
    async with running_router(settings) as router:
        assert router.services.fleet.host(host_id).state == "active"  # enrolled, its agent gone
        fleet = LocalFleet(settings, router.services, router.url)
        await fleet.attach()
        try:
            (teardown,) = [j for j in router.services.provisioner.jobs.all() if j.kind == "teardown"]
            while not teardown.finished:
                await asyncio.sleep(0.1)
            assert teardown.state == "succeeded", teardown.out(0)
            assert router.services.fleet.host(host_id).state == "removed"
            record = await router.services.provisioner.records.get(host_id)
            assert record.state == "removed"
        finally:
            await fleet.stop()


async def test_a_cancelled_local_job_stops_its_agent_and_leaves_nothing(tmp_path):
    settings = router_settings(tmp_path, heartbeat_interval_s=0.3, provision_ready_timeout_s=20)
    async with running_router(settings) as router:
        services = router.services
        fleet = LocalFleet(settings, services, router.url)
        await fleet.attach()
        try:
            job = await services.provisioner.provision(_request())
            deadline = asyncio.get_running_loop().time() + TIMEOUT_S
            while job.host_id not in fleet._rented:  # its agent was started: now cancel
                assert not job.finished and asyncio.get_running_loop().time() < deadline, job.out(0)
                await asyncio.sleep(0.01)
            pid = fleet._rented[job.host_id].proc.pid
            services.provisioner.cancel(job.id)
            while not job.finished:
                await asyncio.sleep(0.05)
            assert job.state == "failed" and "cancelled" in job.error, job.out(0)
            assert not alive(pid) and job.host_id not in fleet._rented
            assert services.fleet.host(job.host_id).state == "removed"
            assert (await services.provisioner.records.get(job.host_id)).state == "removed"
            assert (await services.provisioner.local_provider.status(job.instance_id)).state == "terminated"
            (failed,) = [e for e in services.events.since() if e.kind == "provision.failed"]
            assert failed.level == "warning"  # cleaned up: nothing left
        finally:
            await fleet.stop()


def _request():
    from backend.wire.provision import ProvisionRequest

    return ProvisionRequest(model=MODEL, provider="local", reason="a test")
