"""The API key goes in the Authorization header and nowhere else: not in logs (httpx's debug
logs included), not in exception text or tracebacks, not in reprs, not in the settings' repr."""

from __future__ import annotations

import logging
import traceback

import pytest

from backend.fleet.providers import BadCredentials, ProviderError, ProviderUnavailable, RetryPolicy
from tests.integration.providers.conftest import PUBLIC_KEY, settings_for
from tests.integration.providers.fake_cloud import KEY, Fault

# The route each fake answers list_offers on.
OFFERS_ROUTE = {"runpod": ("POST", "/graphql"), "vast": ("POST", "/api/v0/bundles/"),
                "lambda": ("GET", "/api/v1/instance-types")}
WRONG_KEY = "rk-wrong-0123456789abcdefWRONGKEY"


def everything_about(err: BaseException) -> str:
    return str(err) + repr(err) + "".join(traceback.format_exception(err))


@pytest.mark.parametrize("name", ["runpod", "vast", "lambda"])
async def test_the_key_never_shows(cloud_factory, caplog, name):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # another test's CLI may have quietened httpx
    fake, cloud = await cloud_factory(name, retry=RetryPolicy(attempts=2, base_delay_s=0.01, jitter=0.0))
    seen_errors: list[ProviderError] = []

    offer = next(o for o in await cloud.list_offers() if o.gpu is not None)
    instance = await cloud.create(offer, name=f"tm-secret-{name}", ssh_public_key=PUBLIC_KEY)
    await cloud.status(instance.instance_id)

    # A provider that echoes the key back in its error text: what we quote is scrubbed.
    method, route = OFFERS_ROUTE[name]
    fake.fail(method, route, *[Fault(status=503, body={"error": f"token {KEY} is throttled", "msg": f"key={KEY}"})] * 2)
    with pytest.raises(ProviderUnavailable) as info:
        await cloud.list_offers()
    seen_errors.append(info.value)
    assert "***" in str(info.value)

    _, wrong = await cloud_factory(name, key=WRONG_KEY)
    with pytest.raises(BadCredentials) as info:
        await wrong.list_offers()
    seen_errors.append(info.value)

    assert all(s.authorization == f"Bearer {KEY}" for s in fake.requests)  # it was sent, in the header
    for secret in (KEY, WRONG_KEY):
        assert secret not in caplog.text
        assert secret not in repr(cloud) + repr(wrong) + repr(vars(cloud)) + repr(vars(wrong))
        for err in seen_errors:
            assert secret not in everything_about(err)
    assert "HTTP Request" in caplog.text and "Bearer" not in caplog.text  # httpx did log, without the header


def test_settings_repr_hides_the_keys():
    for name in ("runpod", "vast", "lambda"):
        settings = settings_for(name, "http://127.0.0.1:9")
        assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
