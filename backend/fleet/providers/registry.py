"""Providers by name, built from the settings (keys, URLs) and the catalogue (GPU names)."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
from pydantic import SecretStr

from backend.catalogue import Catalogue, load_catalogue
from backend.fleet.providers.base import Provider
from backend.fleet.providers.errors import MissingCredentials, label
from backend.fleet.providers.http_api import DEFAULT_TIMEOUT_S, ApiClient
from backend.fleet.providers.lambda_cloud import LambdaProvider
from backend.fleet.providers.local import LocalProvider
from backend.fleet.providers.retry import RetryPolicy
from backend.fleet.providers.runpod import RunPodProvider
from backend.fleet.providers.ssh import SshProvider
from backend.fleet.providers.vast import VastProvider
from backend.settings import Settings

PROVIDERS = ("runpod", "vast", "lambda", "local", "ssh")


def provider(name: str, settings: Settings, *, catalogue: Catalogue | None = None,
             client: httpx.AsyncClient | None = None, retry: RetryPolicy | None = None,
             timeout_s: float = DEFAULT_TIMEOUT_S, rng: random.Random | None = None) -> Provider:
    """The provider called `name`. A cloud without an API key in the settings is refused here,
    with the setting to fill in, rather than on its first request.

    `client` shares one httpx client (and its connections) between providers; the caller then
    closes it. `retry`, `timeout_s` and `rng` exist for tests and tuning.
    """
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}: expected one of {', '.join(PROVIDERS)}")
    catalogue = catalogue or load_catalogue()
    if name == "local":
        return LocalProvider(catalogue)
    if name == "ssh":
        return SshProvider()

    def api(key: SecretStr | None) -> ApiClient:
        setting = f"{name}_api_key"
        if key is None or not key.get_secret_value().strip():
            raise MissingCredentials(name, f"{label(name)} has no API key: set settings.{setting} "
                                     f"(or TOKENMILL_{setting.upper()})")
        return ApiClient(name, SecretStr(key.get_secret_value().strip()), key_setting=setting, retry=retry,
                         timeout_s=timeout_s, client=client, rng=rng)

    if name == "runpod":
        return RunPodProvider(api(settings.runpod_api_key), catalogue.gpus, rest_url=settings.runpod_api_url,
                              graphql_url=settings.runpod_graphql_url)
    if name == "vast":
        return VastProvider(api(settings.vast_api_key), catalogue.gpus, base_url=settings.vast_api_url)
    return LambdaProvider(api(settings.lambda_api_key), catalogue.gpus, base_url=settings.lambda_api_url)


def ssh_public_key(settings: Settings) -> str:
    """The public key rented hosts will trust: settings.ssh_public_key_path, else ~/.ssh/id_ed25519.pub."""
    path = (settings.ssh_public_key_path or Path("~/.ssh/id_ed25519.pub")).expanduser()
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FileNotFoundError(f"no SSH public key at {path} ({exc.strerror}): create one with "
                                f"`ssh-keygen -t ed25519` or set ssh_public_key_path") from None
    if key.startswith("-----BEGIN") or "PRIVATE KEY" in key:
        raise ValueError(f"{path} holds a private key; ssh_public_key_path must name the .pub file")
    return key
