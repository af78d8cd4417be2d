"""A real router on loopback whose [billing] points the real stripe library at tests/stripe_server.py,
and whose webhook that server signs and calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.router_harness import Router, router_settings, running_router
from tests.stripe_server import StripeServer, running_stripe

MODEL = "llama-3.1-8b-instruct"


@pytest.fixture
async def stripe_srv() -> AsyncIterator[StripeServer]:
    async with running_stripe() as server:
        yield server


@pytest.fixture
async def router(tmp_path, db_url, stripe_srv) -> AsyncIterator[Router]:
    """On SQLite, and on PostgreSQL too when TOKENMILL_TEST_DATABASE_URL is set."""
    async with running_router(router_settings(tmp_path, database_url=db_url, billing=stripe_srv.settings())) as r:
        stripe_srv.webhook_url = r.url + "/v1/billing/webhook"
        yield r


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def checkout(router: Router, secret: str, amount_usd: str = "20.00") -> httpx.Response:
    return await router.http.post("/v1/billing/checkout", json={"amount_usd": amount_usd}, headers=bearer(secret))


async def paid_checkout(router: Router, stripe_srv: StripeServer, secret: str, amount_usd: str = "20.00") -> dict:
    """A top-up the client paid on Stripe's page, its events delivered: returns the checkout answer."""
    r = await checkout(router, secret, amount_usd)
    assert r.status_code == 201, r.text
    started = r.json()
    session_id = started["url"].rsplit("/", 1)[-1]
    stripe_srv.pay_session(session_id)
    await stripe_srv.deliver()
    return started
