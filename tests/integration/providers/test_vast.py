"""Vast.ai adapter against a Vast-shaped server on loopback."""

from __future__ import annotations

import pytest

from backend.fleet.providers import BadCredentials, InvalidRequest, OfferTaken, RateLimited, RetryPolicy
from tests.integration.providers.conftest import PUBLIC_KEY
from tests.integration.providers.fake_cloud import KEY, Fault

SEARCH, RENT = "/api/v0/bundles/", "/api/v0/asks/{offer_id}/"
INSTANCE, SSH = "/api/v0/instances/{instance_id}/", "/api/v0/instances/{instance_id}/ssh/"


async def test_search_asks_for_rentable_on_demand_catalogue_cards_and_prices_exactly(vast):
    fake, cloud = vast
    offers = await cloud.list_offers()
    (call,) = fake.seen("POST", SEARCH)
    assert call.authorization == f"Bearer {KEY}"
    query = call.body
    assert query["type"] == "on-demand" and query["rentable"] == {"eq": True} and query["verified"] == {"eq": True}
    assert query["order"] == [["dph_total", "asc"]] and "RTX 4090" in query["gpu_name"]["in"]

    by_id = {o.offer_id: o for o in offers}
    cheap = by_id["11684738"]
    # dph_total 0.2466759259259259: more digits than a nano-USD holds, rounded up, never through a float
    assert cheap.price_per_hour == 246_675_926
    assert (cheap.gpu, cheap.gpu_count, cheap.vram_gb, cheap.kind, cheap.region) == (
        "rtx4090", 1, 24.0, "community", "Guangxi, CN")
    pair = by_id["11684739"]
    assert (pair.gpu_count, pair.price_per_hour, pair.kind) == (2, 800_000_000, "on_demand")  # datacenter host
    assert by_id["11684740"].gpu == "a100-80gb"  # 81920 MiB tells the 80 GB A100 from the 40 GB one
    assert "11684741" not in by_id  # RTX A6000: not asked for, and the fake honours the filter

    assert [o.offer_id for o in await cloud.list_offers("a100-80gb")] == ["11684740"]
    assert fake.seen("POST", SEARCH)[-1].body["gpu_name"]["in"] == ["A100 PCIE", "A100 SXM", "A100 SXM4"]


async def test_rent_attach_key_poll_and_destroy(vast):
    fake, cloud = vast
    offer = (await cloud.list_offers("rtx4090"))[0]
    created = await cloud.create(offer, name="tm-vast-1", ssh_public_key=PUBLIC_KEY)
    assert created.state == "pending" and created.instance_id == "7835610"

    (rent,) = fake.seen("PUT", RENT)
    assert rent.path == "/api/v0/asks/11684738/"
    assert rent.body["label"] == "tm-vast-1" and rent.body["runtype"] == "ssh_direct"
    assert rent.body["env"] == {"-p 8000:8000": "1"} and rent.body["disk"] == 100 and rent.body["image"]
    assert fake.keys[7835610] == [PUBLIC_KEY]

    assert (await cloud.status("7835610")).state == "pending"  # "loading"
    ready = await cloud.status("7835610")
    assert (ready.state, ready.ssh_host, ready.ssh_port, ready.provider_state) == (
        "running", "74.48.78.46", 40122, "running")
    assert ready.ports == {8000: 40123}  # the engine's container port -> the public one ("8000/tcp" HostPort)
    assert await cloud.find("tm-vast-1") == ready

    await cloud.destroy("7835610")
    assert fake.instances == {}
    await cloud.destroy("7835610")  # no_such_instance: already gone
    assert await cloud.find("tm-vast-1") is None


@pytest.mark.parametrize("status", [400, 404, 410])
async def test_an_offer_someone_else_took_is_offer_taken(vast, status):
    fake, cloud = vast
    offer = (await cloud.list_offers("rtx4090"))[0]
    fake.fail("PUT", RENT, Fault(status=status, body={"success": False, "error": "no_such_ask",
                                                        "msg": "Instance type 11684738 is no longer available."}))
    with pytest.raises(OfferTaken, match=r"Vast.ai offer 11684738 \(RTX 4090 x1\) was taken"):
        await cloud.create(offer, name="tm-vast-2", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("PUT", RENT)) == 1 and not fake.seen("POST", SSH)


async def test_an_instance_that_refuses_our_key_is_destroyed(vast):
    fake, cloud = vast
    offer = (await cloud.list_offers("rtx4090"))[0]
    fake.fail("POST", SSH, Fault(status=400, body={"success": False, "error": "invalid_args", "msg": "bad key"}))
    with pytest.raises(InvalidRequest, match=r"did not take our SSH key for instance 7835610.*destroyed it"):
        await cloud.create(offer, name="tm-vast-3", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("DELETE", INSTANCE)) == 1 and fake.instances == {}


async def test_search_quota_retry_after_beyond_the_budget_is_reported_not_waited(cloud_factory):
    fake, cloud = await cloud_factory("vast", retry=RetryPolicy(attempts=4, base_delay_s=0.01, total_s=5.0))
    fake.fail("POST", SEARCH, Fault(status=429, body={"success": False, "error": "search_quota_exceeded",
                                                       "msg": "API requests too frequent"},
                                    headers={"Retry-After": "3600"}))
    with pytest.raises(RateLimited, match=r"Vast.ai is rate limiting requests \(429\) to search offers; "
                                          r"it asks to wait 3600 s"):
        await cloud.list_offers()
    assert len(fake.seen("POST", SEARCH)) == 1


async def test_429_then_success(vast):
    fake, cloud = vast
    fake.fail("POST", SEARCH, Fault(status=429, body="API requests too frequent"),
              Fault(status=429, body="API requests too frequent: endpoint threshold=2.0"))
    assert await cloud.list_offers()
    assert len(fake.seen("POST", SEARCH)) == 3


async def test_a_refused_key_names_the_setting(cloud_factory):
    fake, cloud = await cloud_factory("vast", key="wrong-vast-key-123456")
    with pytest.raises(BadCredentials, match=r"^Vast.ai refused the API key \(401\): check settings.vast_api_key$"):
        await cloud.list_offers()
    assert len(fake.requests) == 1


def test_port_mappings_are_read_where_the_public_address_reaches_them(vast):
    _, cloud = vast
    running = {"id": 1, "label": "x", "actual_status": "running", "public_ipaddr": "74.48.78.46 ",
               "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40122"}],
                         "8001/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40123"},
                                      {"HostIp": "::", "HostPort": "40123"}],
                         "8002/udp": [{"HostIp": "0.0.0.0", "HostPort": "40124"}],
                         "8003/tcp": [{"HostIp": "0.0.0.0"}], "8004/tcp": []}}
    assert cloud._instance(running, "get").ports == {8001: 40123}  # tcp, with a host port; SSH's apart
    # SSH through Vast's proxy (no 22/tcp mapping): the mapped ports are not where ssh_host reaches.
    proxied = {**running, "ssh_host": "ssh4.vast.ai", "ssh_port": 30562,
               "ports": {"8001/tcp": [{"HostIp": "0.0.0.0", "HostPort": "40123"}]}}
    inst = cloud._instance(proxied, "get")
    assert (inst.ssh_host, inst.ports) == ("ssh4.vast.ai", {})
    assert cloud._instance({**running, "actual_status": "loading"}, "get").ports == {}
