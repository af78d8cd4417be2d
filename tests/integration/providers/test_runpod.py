"""RunPod adapter against a RunPod-shaped server on loopback: shapes, retries, safe creates."""

from __future__ import annotations

import itertools

import pytest

from backend.fleet.providers import (
    BadCredentials,
    CreateOptions,
    NotFound,
    OfferTaken,
    ProviderUnavailable,
    RetryPolicy,
)
from tests.integration.providers.conftest import FAST, PUBLIC_KEY
from tests.integration.providers.fake_cloud import KEY, Fault
from tests.integration.providers.fake_runpod import NO_CAPACITY

PODS, POD = "/v1/pods", "/v1/pods/{pod_id}"


def gaps(seen) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(seen)]


async def test_offers_come_from_graphql_gpu_types_at_exact_prices(runpod):
    fake, cloud = runpod
    offers = await cloud.list_offers()
    (call,) = fake.seen("POST", "/graphql")
    assert call.authorization == f"Bearer {KEY}" and "api_key" not in call.query
    assert "gpuTypes" in call.body["query"] and "securePrice" in call.body["query"]

    by_id = {o.offer_id: o for o in offers}
    community = by_id["NVIDIA GeForce RTX 4090|COMMUNITY|1|ondemand"]
    assert (community.gpu, community.gpu_count, community.vram_gb, community.kind) == ("rtx4090", 1, 24.0, "community")
    assert community.price_per_hour == 340_000_000  # $0.34 exactly
    assert by_id["NVIDIA GeForce RTX 4090|SECURE|8|ondemand"].price_per_hour == 8 * 690_000_000
    assert by_id["NVIDIA GeForce RTX 4090|SECURE|1|spot"].kind == "spot"
    # maxGpuCount 2 and no community cloud for the A100
    assert sorted(o.gpu_count for o in offers if o.gpu == "a100-80gb" and o.kind == "on_demand") == [1, 2]
    assert not [o for o in offers if o.gpu == "a100-80gb" and o.kind == "community"]
    a6000 = [o for o in offers if o.gpu_name == "RTX A6000"]
    assert a6000 and all(o.gpu is None and o.vram_gb == 48.0 for o in a6000)  # listed, not in the catalogue

    only = await cloud.list_offers("a100-80gb")
    assert only and {o.gpu for o in only} == {"a100-80gb"}


async def test_create_poll_and_destroy_a_pod(runpod):
    fake, cloud = runpod
    offer = next(o for o in await cloud.list_offers("rtx4090") if o.kind == "community" and o.gpu_count == 2)
    created = await cloud.create(offer, name="tm-rtx4090-1", ssh_public_key=PUBLIC_KEY,
                                 options=CreateOptions(disk_gb=80, ports=(8001, 8002)))
    assert created.state == "pending" and created.ssh_host is None and created.name == "tm-rtx4090-1"

    (call,) = fake.seen("POST", PODS)
    body = call.body
    assert call.authorization == f"Bearer {KEY}"
    assert body["gpuTypeIds"] == ["NVIDIA GeForce RTX 4090"] and body["gpuCount"] == 2
    assert body["cloudType"] == "COMMUNITY" and body["interruptible"] is False
    assert body["containerDiskInGb"] == 80 and body["ports"] == ["22/tcp", "8001/tcp", "8002/tcp"]
    assert body["env"] == {"SSH_PUBLIC_KEY": PUBLIC_KEY, "PUBLIC_KEY": PUBLIC_KEY}
    assert body["name"] == "tm-rtx4090-1" and body["imageName"].startswith("runpod/")

    first = await cloud.status(created.instance_id)
    assert first.state == "pending" and first.ports == {}  # RUNNING, but no public IP and port yet
    ready = await cloud.status(created.instance_id)
    assert (ready.state, ready.ssh_host, ready.ssh_port, ready.ssh_user) == ("running", "100.65.0.119", 10341, "root")
    assert ready.ports == {8001: 10342, 8002: 10343}  # portMappings, the engines' container ports -> public
    assert ready.price_per_hour == 680_000_000

    await cloud.destroy(created.instance_id)
    assert fake.pods == {}
    await cloud.destroy(created.instance_id)  # already gone: not an error
    with pytest.raises(NotFound, match="RunPod has no pod"):
        await cloud.status(created.instance_id)


async def test_no_capacity_is_offer_taken_and_not_retried(runpod):
    fake, cloud = runpod
    offer = (await cloud.list_offers("rtx4090"))[0]
    fake.fail("POST", PODS, Fault(status=400, body=NO_CAPACITY))
    with pytest.raises(OfferTaken, match=r"RunPod has no RTX 4090 x1 left .*pick another offer"):
        await cloud.create(offer, name="tm-a", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("POST", PODS)) == 1 and fake.pods == {}


async def test_429_waits_as_long_as_retry_after_says(runpod):
    fake, cloud = runpod
    fake.fail("POST", "/graphql", Fault(status=429, body={"error": "too many requests"}, headers={"Retry-After": "1"}))
    assert await cloud.list_offers()
    first, second = fake.seen("POST", "/graphql")
    assert second.at - first.at >= 0.95  # FAST's own backoff is 0.05 s: the header won


async def test_5xx_is_retried_with_growing_backoff_then_succeeds(runpod):
    fake, cloud = runpod
    offer = (await cloud.list_offers("rtx4090"))[0]
    pod = await cloud.create(offer, name="tm-b", ssh_public_key=PUBLIC_KEY)
    fake.fail("GET", POD, Fault(status=503, body={"error": "upstream busy"}), Fault(status=502, body="bad gateway"))
    assert (await cloud.status(pod.instance_id)).instance_id == pod.instance_id
    calls = fake.seen("GET", POD)
    assert len(calls) == 3
    first, second = gaps(calls)
    assert first >= 0.05 * 0.95 and second >= 0.10 * 0.95  # 0.05 s, then doubled


async def test_5xx_every_time_gives_up_after_the_attempts(runpod):
    fake, cloud = runpod
    fake.fail("POST", "/graphql", *[Fault(status=503, body={"error": "maintenance"})] * 5)
    with pytest.raises(ProviderUnavailable) as info:
        await cloud.list_offers()
    assert len(fake.seen("POST", "/graphql")) == FAST.attempts
    assert str(info.value) == "RunPod failed to list GPU types (503): maintenance (gave up after 3 attempts)"


async def test_a_slow_answer_times_out_and_is_retried(cloud_factory):
    fake, cloud = await cloud_factory("runpod", timeout_s=0.3)
    offer = (await cloud.list_offers("rtx4090"))[0]
    pod = await cloud.create(offer, name="tm-c", ssh_public_key=PUBLIC_KEY)
    fake.fail("GET", POD, Fault(delay_s=1.0))
    assert (await cloud.status(pod.instance_id)).name == "tm-c"
    assert len(fake.seen("GET", POD)) == 2


async def test_create_whose_answer_was_lost_adopts_the_pod_instead_of_renting_twice(cloud_factory):
    fake, cloud = await cloud_factory("runpod", timeout_s=0.3)
    offer = (await cloud.list_offers("rtx4090"))[0]
    fake.fail("POST", PODS, Fault(delay_s=1.0))  # RunPod creates the pod, the answer comes too late
    pod = await cloud.create(offer, name="tm-lost-answer", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("POST", PODS)) == 1 and len(fake.pods) == 1
    assert pod.instance_id in fake.pods and pod.name == "tm-lost-answer"
    (lookup,) = fake.seen("GET", PODS)
    assert lookup.query == {"name": "tm-lost-answer"}


async def test_create_after_a_5xx_that_created_nothing_is_retried(runpod):
    fake, cloud = runpod
    offer = (await cloud.list_offers("rtx4090"))[0]
    fake.fail("POST", PODS, Fault(status=500, body={"error": "internal error"}))
    pod = await cloud.create(offer, name="tm-d", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("POST", PODS)) == 2 and list(fake.pods) == [pod.instance_id]
    assert len(fake.seen("GET", PODS)) == 1  # looked before renting again


async def test_create_stops_when_it_cannot_tell_whether_a_pod_was_made(runpod):
    fake, cloud = runpod
    offer = (await cloud.list_offers("rtx4090"))[0]
    fake.fail("POST", PODS, Fault(status=502, body="bad gateway"))
    fake.fail("GET", PODS, *[Fault(status=503, body="down")] * FAST.attempts)
    with pytest.raises(ProviderUnavailable, match="look for an instance named 'tm-e' in the RunPod console"):
        await cloud.create(offer, name="tm-e", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("POST", PODS)) == 1


async def test_a_refused_key_is_reported_and_not_retried(cloud_factory):
    fake, cloud = await cloud_factory("runpod", key="rk-wrong-key-0123456789")
    with pytest.raises(BadCredentials) as info:
        await cloud.status("xedezhzb9la001")
    assert str(info.value) == "RunPod refused the API key (401): check settings.runpod_api_key"
    assert len(fake.requests) == 1


async def test_connection_refused_is_retried_then_reported(cloud_factory):
    fake, cloud = await cloud_factory("runpod", retry=RetryPolicy(attempts=2, base_delay_s=0.01, jitter=0.0))
    await fake.stop()
    with pytest.raises(ProviderUnavailable) as info:
        await cloud.list_offers()
    assert info.value.attempts == 2 and not info.value.maybe_applied
    assert "RunPod could not be reached to list GPU types" in str(info.value)
