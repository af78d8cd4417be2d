"""Lambda Cloud adapter against a Lambda-shaped server on loopback."""

from __future__ import annotations

import pytest

from backend.fleet.providers import BadCredentials, NotFound, OfferTaken
from tests.integration.providers.conftest import PUBLIC_KEY
from tests.integration.providers.fake_cloud import KEY, Fault
from tests.integration.providers.fake_lambda import INSUFFICIENT_CAPACITY, error

LAUNCH, KEYS = "/api/v1/instance-operations/launch", "/api/v1/ssh-keys"
INSTANCE, TERMINATE = "/api/v1/instances/{instance_id}", "/api/v1/instance-operations/terminate"


async def test_offers_are_instance_types_per_region_with_capacity(lambda_cloud):
    fake, cloud = lambda_cloud
    offers = await cloud.list_offers()
    (call,) = fake.seen("GET", "/api/v1/instance-types")
    assert call.authorization == f"Bearer {KEY}"
    by_id = {o.offer_id: o for o in offers}
    assert set(by_id) == {"gpu_1x_a100_sxm4@us-east-1", "gpu_1x_a100_sxm4@us-west-1", "gpu_1x_gh200@us-east-3",
                          "gpu_1x_a6000@us-south-1"}  # the 8x H100 has no capacity anywhere
    a100 = by_id["gpu_1x_a100_sxm4@us-west-1"]
    assert (a100.gpu, a100.vram_gb, a100.price_per_hour, a100.region, a100.kind) == (
        "a100-40gb", 40.0, 1_290_000_000, "us-west-1", "on_demand")  # 129 cents
    assert by_id["gpu_1x_gh200@us-east-3"].gpu == "gh200-96gb"
    assert by_id["gpu_1x_a6000@us-south-1"].gpu is None
    assert {o.gpu for o in await cloud.list_offers("gh200-96gb")} == {"gh200-96gb"}


async def test_launch_adds_our_key_once_then_polls_and_terminates(lambda_cloud):
    fake, cloud = lambda_cloud
    offer = next(o for o in await cloud.list_offers("a100-40gb") if o.region == "us-east-1")
    created = await cloud.create(offer, name="tm-lambda-1", ssh_public_key=PUBLIC_KEY)
    assert (created.state, created.ssh_user) == ("pending", "ubuntu")

    (added,) = fake.seen("POST", KEYS)
    key_name = added.body["name"]
    assert key_name.startswith("tokenmill-") and added.body["public_key"] == PUBLIC_KEY
    (launch,) = fake.seen("POST", LAUNCH)
    assert launch.body == {"region_name": "us-east-1", "instance_type_name": "gpu_1x_a100_sxm4",
                           "ssh_key_names": [key_name], "name": "tm-lambda-1"}

    assert (await cloud.status(created.instance_id)).state == "pending"  # booting
    ready = await cloud.status(created.instance_id)
    assert (ready.state, ready.ssh_host, ready.ssh_port, ready.ssh_user) == ("running", "198.51.100.2", 22, "ubuntu")
    assert ready.price_per_hour == 1_290_000_000

    # The same key with another comment is recognised: it is not added twice.
    other_comment = PUBLIC_KEY.rsplit(" ", 1)[0] + " laptop"
    second = await cloud.create(offer, name="tm-lambda-2", ssh_public_key=other_comment)
    assert len(fake.seen("POST", KEYS)) == 1
    assert fake.seen("POST", LAUNCH)[-1].body["ssh_key_names"] == [key_name]

    await cloud.destroy(created.instance_id)
    assert fake.seen("POST", TERMINATE)[-1].body == {"instance_ids": [created.instance_id]}
    assert (await cloud.status(created.instance_id)).state == "terminated"
    assert await cloud.find("tm-lambda-1") is None
    assert (await cloud.find("tm-lambda-2")).instance_id == second.instance_id


async def test_insufficient_capacity_is_offer_taken_and_not_retried(lambda_cloud):
    fake, cloud = lambda_cloud
    offer = (await cloud.list_offers("gh200-96gb"))[0]
    fake.fail("POST", LAUNCH, Fault(status=400, body=INSUFFICIENT_CAPACITY))
    with pytest.raises(OfferTaken, match=r"Lambda has no gpu_1x_gh200 left in us-east-3 .*pick another offer"):
        await cloud.create(offer, name="tm-lambda-3", ssh_public_key=PUBLIC_KEY)
    assert len(fake.seen("POST", LAUNCH)) == 1 and fake.instances == {}


async def test_5xx_on_status_then_success(lambda_cloud):
    fake, cloud = lambda_cloud
    offer = (await cloud.list_offers("gh200-96gb"))[0]
    created = await cloud.create(offer, name="tm-lambda-4", ssh_public_key=PUBLIC_KEY)
    fake.fail("GET", INSTANCE, Fault(status=500, body=error("global/unknown", "Something unexpected occurred.")))
    assert (await cloud.status(created.instance_id)).name == "tm-lambda-4"
    assert len(fake.seen("GET", INSTANCE)) == 2


async def test_launch_500_that_created_nothing_is_retried_after_looking(lambda_cloud):
    fake, cloud = lambda_cloud
    offer = (await cloud.list_offers("gh200-96gb"))[0]
    fake.fail("POST", LAUNCH, Fault(status=500, body=error("global/unknown", "Something unexpected occurred.")))
    created = await cloud.create(offer, name="tm-lambda-5", ssh_public_key=PUBLIC_KEY)
    assert list(fake.instances) == [created.instance_id] and len(fake.seen("POST", LAUNCH)) == 2
    assert len(fake.seen("GET", "/api/v1/instances")) == 1


async def test_unknown_instance_is_not_found_and_terminating_it_is_fine(lambda_cloud):
    _fake, cloud = lambda_cloud
    with pytest.raises(NotFound, match="Lambda has no instance nope"):
        await cloud.status("nope")
    await cloud.destroy("nope")


async def test_a_refused_key_names_the_setting(cloud_factory):
    fake, cloud = await cloud_factory("lambda", key="secret_wrong_lambda_key_0123")
    with pytest.raises(BadCredentials, match=r"^Lambda refused the API key \(401\): check settings.lambda_api_key$"):
        await cloud.list_offers()
    assert len(fake.requests) == 1
