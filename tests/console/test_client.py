"""console.client against a real router, and the console's money text."""

from __future__ import annotations

import pytest

from console.client import AdminClient, AdminError, BackendUnavailable
from console.money import parse_amount, usd
from tests.router_harness import router_settings, running_router


async def test_client_decodes_and_raises_error_envelopes(tmp_path):
    async with running_router(router_settings(tmp_path)) as router:
        api = AdminClient(router.url, router.services.admin_token)
        try:
            client = await api.create_client("acme")
            credit = await api.grant_credit(client.id, "1.25", "k-1")
            assert credit.balance_nano == 1_250_000_000
            issued = await api.issue_key(client.id, "ci")
            assert issued.secret and (await api.keys(client.id))[0].id == issued.key.id
            assert (await api.revoke_key(issued.key.id)).revoked_us
            assert any(m.id == "llama-3.1-8b-instruct" for m in await api.models())
            assert await api.hosts() == []
            assert await api.usage("client") == []
            with pytest.raises(AdminError) as err:
                await api.host_action("no-such-host", "drain")
            assert err.value.status == 404 and err.value.message
            with pytest.raises(AdminError) as err:
                await api.grant_credit(client.id, "lots", "k-2")
            assert err.value.status == 400
        finally:
            await api.aclose()
        bad = AdminClient(router.url, "tma-wrong")
        with pytest.raises(AdminError) as err:
            await bad.clients()
        assert err.value.status == 401 and "admin token" in err.value.message
        await bad.aclose()


async def test_unreachable_backend_is_backend_unavailable():
    api = AdminClient("http://127.0.0.1:9", "tma-x", timeout_s=1)
    with pytest.raises(BackendUnavailable):
        await api.clients()
    await api.aclose()


def test_usd_is_integer_exact_and_rounds_half_up():
    # One precision everywhere (four places): amounts line up and compare at a glance.
    assert usd(0) == "$0.0000"
    assert usd(1_234_567_890_123) == "$1,234.5679"
    assert usd(-2_470_000_000) == "-$2.4700"
    assert usd(50_000) == "$0.0001"
    assert usd(49_999) == "$0.0000" and usd(-49_999) == "$0.0000"
    assert usd(15_000_000) == "$0.0150"


@pytest.mark.parametrize("text,value", [("25", "25"), (" $1,000.50 ", "1000.50"), ("0.000001", "0.000001")])
def test_parse_amount_accepts_decimal_dollars(text, value):
    assert parse_amount(text) == value


@pytest.mark.parametrize("text", ["", "0", "0.00", "-5", "1e3", "1.5e3", "abc", "1.1234567", "nan", "inf"])
def test_parse_amount_refuses_the_rest(text):
    with pytest.raises(ValueError):
        parse_amount(text)
