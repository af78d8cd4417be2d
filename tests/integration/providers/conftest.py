"""A fake cloud on loopback and the real adapter pointed at it, for each provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from backend.fleet.providers import Provider, RetryPolicy, provider
from backend.settings import Settings
from tests.integration.providers.fake_cloud import KEY, FakeCloud
from tests.integration.providers.fake_lambda import FakeLambda
from tests.integration.providers.fake_runpod import FakeRunPod
from tests.integration.providers.fake_vast import FakeVast

# Short waits so that retries show in the request log without slowing the suite; no jitter,
# so that the waits between requests can be checked.
FAST = RetryPolicy(attempts=3, base_delay_s=0.05, max_delay_s=0.5, total_s=10.0, jitter=0.0)
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFtokenmillTestKeyBlob0123456789abcdefghij tm@operator"


def settings_for(name: str, url: str, key: str = KEY) -> Settings:
    if name == "runpod":
        return Settings(runpod_api_key=key, runpod_api_url=f"{url}/v1", runpod_graphql_url=f"{url}/graphql")
    if name == "vast":
        return Settings(vast_api_key=key, vast_api_url=f"{url}/api/v0")
    return Settings(lambda_api_key=key, lambda_api_url=f"{url}/api/v1")


FAKES: dict[str, type[FakeCloud]] = {"runpod": FakeRunPod, "vast": FakeVast, "lambda": FakeLambda}


@pytest.fixture
async def cloud_factory() -> AsyncIterator[Callable[..., Any]]:
    """make(name, key=KEY, retry=FAST, timeout_s=2.0) -> (fake, provider), both torn down after the test."""
    started: list[tuple[FakeCloud, Provider]] = []

    async def make(name: str, *, key: str = KEY, retry: RetryPolicy = FAST,
                   timeout_s: float = 2.0) -> tuple[Any, Provider]:
        fake = FAKES[name]()
        await fake.start()
        cloud = provider(name, settings_for(name, fake.url, key), retry=retry, timeout_s=timeout_s)
        started.append((fake, cloud))
        return fake, cloud

    yield make
    for fake, cloud in started:
        await cloud.aclose()
        await fake.stop()


@pytest.fixture
async def runpod(cloud_factory) -> tuple[FakeRunPod, Provider]:
    return await cloud_factory("runpod")


@pytest.fixture
async def vast(cloud_factory) -> tuple[FakeVast, Provider]:
    return await cloud_factory("vast")


@pytest.fixture
async def lambda_cloud(cloud_factory) -> tuple[FakeLambda, Provider]:
    return await cloud_factory("lambda")
