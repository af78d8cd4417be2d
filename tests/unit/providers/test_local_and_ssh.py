"""The two providers that rent nothing: simulated local hosts and the operator's own machines."""

from __future__ import annotations

import pytest

from backend.catalogue import load_catalogue
from backend.fleet.providers import InvalidRequest, NotFound, cheapest_offer
from backend.fleet.providers.local import LocalProvider
from backend.fleet.providers.ssh import SshProvider

CAT = load_catalogue()
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtokenmillTestKey tm@operator"


async def test_local_offers_are_the_catalogues_at_catalogue_prices():
    local = LocalProvider(CAT)
    offers = await local.list_offers()
    assert len(offers) == len(CAT.offers)
    for mine, theirs in zip(offers, CAT.offers, strict=True):
        assert (mine.provider, mine.gpu, mine.gpu_count, mine.price_per_hour) == (
            "local", theirs.gpu, theirs.gpu_count, theirs.price_per_hour)
        assert mine.vram_gb == CAT.gpu_by_id[theirs.gpu].vram_gb
    assert {o.gpu for o in await local.list_offers("rtx4090")} == {"rtx4090"}
    # $0.19/h for the catalogue's RunPod RTX 3090: the cheapest card that holds an 8B model at bf16
    best = cheapest_offer(offers, "llama-3.1-8b-instruct", CAT)
    assert (best.gpu, best.price_per_hour, best.total_vram_gb) == ("rtx3090", 190_000_000, 24.0)


async def test_local_create_status_destroy_keep_the_books():
    local = LocalProvider(CAT)
    offer = (await local.list_offers("rtx4090"))[0]
    host = await local.create(offer, name="local-4090", ssh_public_key=KEY)
    assert (host.state, host.ssh_host, host.price_per_hour) == ("running", None, offer.price_per_hour)
    assert await local.create(offer, name="local-4090", ssh_public_key=KEY) == host  # same name, same host
    assert await local.find("local-4090") == host
    await local.destroy(host.instance_id)
    assert (await local.status(host.instance_id)).state == "terminated"
    assert await local.find("local-4090") is None
    await local.destroy("local-999")
    with pytest.raises(NotFound):
        await local.status("local-999")


async def test_local_refuses_another_providers_offer():
    other = SshProvider.address_offer("10.0.0.5")
    with pytest.raises(InvalidRequest, match=r"Local cannot rent offer 'root@10\.0\.0\.5:22', which comes from SSH"):
        await LocalProvider(CAT).create(other, name="x", ssh_public_key=KEY)


@pytest.mark.parametrize(("host", "port", "user", "expected"), [
    ("gpu1.example.net", 22, "root", ("gpu1.example.net", 22, "root")),
    ("203.0.113.7", 2201, "ubuntu", ("203.0.113.7", 2201, "ubuntu")),
    ("2001:db8::7", 2202, "root", ("2001:db8::7", 2202, "root")),
])
async def test_ssh_records_the_address_the_operator_gave(host, port, user, expected):
    ssh = SshProvider()
    assert await ssh.list_offers() == []
    offer = SshProvider.address_offer(host, port=port, user=user, gpu="rtx3090", gpu_count=2, vram_gb=24,
                                      price_per_hour=50_000_000)
    machine = await ssh.create(offer, name="basement-box", ssh_public_key=KEY)
    assert (machine.ssh_host, machine.ssh_port, machine.ssh_user) == expected
    assert (machine.state, machine.price_per_hour) == ("running", 50_000_000)
    assert await ssh.status(machine.instance_id) == machine
    await ssh.destroy(machine.instance_id)  # forgets it; nothing is powered off
    assert (await ssh.status(machine.instance_id)).state == "terminated"


@pytest.mark.parametrize(("host", "port", "user"), [("", 22, "root"), ("box", 0, "root"), ("box", 70000, "root"),
                                                     ("box", 22, "")])
def test_ssh_refuses_a_bad_address(host, port, user):
    with pytest.raises(InvalidRequest, match="is not an address"):
        SshProvider.address_offer(host, port=port, user=user)
