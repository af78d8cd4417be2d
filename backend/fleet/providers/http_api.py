"""HTTP plumbing shared by the cloud adapters: one httpx client, errors mapped to ProviderError,
retries, and a create() that never rents twice by accident.

The API key is sent in the Authorization header of each request and nowhere else: never in a
URL (httpx logs URLs), never in a message. Provider error text quoted in our messages is
scrubbed of the key and of anything that looks like a secret (backend.logs.redact).
"""

from __future__ import annotations

import json
import logging
import random
from abc import abstractmethod
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import httpx
from pydantic import SecretStr

from backend.catalogue import GpuType
from backend.fleet.providers.base import CreateOptions, Instance, Offer, Provider
from backend.fleet.providers.errors import (
    BadCredentials,
    BadResponse,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    label,
)
from backend.fleet.providers.retry import RetryPolicy, parse_retry_after, with_retries
from backend.logs import redact

log = logging.getLogger(__name__)

# status, decoded body, what we were doing -> a more specific error than the status alone says
# (Vast's no_such_ask, Lambda's insufficient-capacity), or None to fall back on the status.
Classifier = Callable[[int, Any, str], ProviderError | None]

DEFAULT_TIMEOUT_S = 30.0
_EXCERPT = 300


def provider_message(body: Any) -> str:
    """The human part of a provider's error body, whatever its envelope."""
    if isinstance(body, str):
        return body.strip()
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, list) and errors:  # GraphQL
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
    for key in ("msg", "message", "detail", "error", "title"):
        value = body.get(key)
        if isinstance(value, dict):  # Lambda: {"error": {"code", "message", "suggestion"}}
            parts = [str(value[k]) for k in ("message", "suggestion") if value.get(k)]
            return " ".join(parts) or str(value.get("code", ""))
        if isinstance(value, str) and value:
            return value
    return ""


class ApiClient:
    """Authenticated JSON calls to one provider, with errors mapped and retries applied."""

    def __init__(self, provider: str, api_key: SecretStr, *, key_setting: str, retry: RetryPolicy | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, client: httpx.AsyncClient | None = None,
                 rng: random.Random | None = None) -> None:
        self.provider = provider
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.rng = rng
        self._key = api_key
        self._key_setting = key_setting
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(follow_redirects=False)

    def __repr__(self) -> str:
        return f"<ApiClient {self.provider}>"

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    def scrub(self, text: str) -> str:
        secret = self._key.get_secret_value()
        if secret:
            text = text.replace(secret, "***")
        text = redact(text)
        return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."

    async def call(self, method: str, url: str, *, what: str, json_body: Any = None,
                   params: dict[str, Any] | None = None, retry: bool = True,
                   classify: Classifier | None = None) -> Any:
        """The decoded JSON answer (numbers as Decimal/int), or a ProviderError.

        `retry=False` makes exactly one attempt: for requests that must not be repeated blindly.
        """
        async def once() -> Any:
            return await self._once(method, url, what=what, json_body=json_body, params=params, classify=classify)

        if not retry:
            return await once()
        return await with_retries(once, self.retry, what=what, rng=self.rng)

    async def _once(self, method: str, url: str, *, what: str, json_body: Any, params: dict[str, Any] | None,
                    classify: Classifier | None) -> Any:
        name = label(self.provider)
        headers = {"Authorization": f"Bearer {self._key.get_secret_value()}", "Accept": "application/json"}
        try:
            resp = await self._client.request(method, url, json=json_body, params=params, headers=headers,
                                              timeout=self.timeout_s)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the provider: always safe to try again.
            raise ProviderUnavailable(self.provider, f"{name} could not be reached to {what} "
                                      f"({type(exc).__name__})", maybe_applied=False) from exc
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(self.provider, f"{name} did not answer within {self.timeout_s:g} s "
                                      f"to {what}", maybe_applied=True) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(self.provider, f"{name} dropped the connection during {what} "
                                      f"({type(exc).__name__})", maybe_applied=True) from exc
        status = resp.status_code
        body = self._decode(resp, what)
        if classify is not None:
            specific = classify(status, body, what)
            if specific is not None:
                raise specific
        if 200 <= status < 300:
            return body
        detail = self.scrub(provider_message(body))
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            raise BadCredentials(self.provider, f"{name} refused the API key ({status}): check "
                                 f"settings.{self._key_setting}", status=status)
        if status == 404:
            raise NotFound(self.provider, f"{name} found nothing to {what} (404){said}", status=status)
        if status == 429:
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            asks = f"; it asks to wait {wait:g} s" if wait is not None else ""
            raise RateLimited(self.provider, f"{name} is rate limiting requests (429) to {what}{asks}",
                              retry_after_s=wait)
        if status >= 500:
            raise ProviderUnavailable(self.provider, f"{name} failed to {what} ({status}){said}",
                                      maybe_applied=True, status=status)
        if status >= 400:
            raise InvalidRequest(self.provider, f"{name} rejected the request to {what} ({status}){said}",
                                 status=status)
        raise BadResponse(self.provider, f"{name} answered {what} with HTTP {status}", status=status)

    def _decode(self, resp: httpx.Response, what: str) -> Any:
        if not resp.content:
            return None
        try:
            # Decimal keeps prices exactly as the provider wrote them (prices.py).
            return json.loads(resp.content, parse_float=Decimal)
        except ValueError:
            if 200 <= resp.status_code < 300:
                raise BadResponse(self.provider, f"{label(self.provider)} answered {what} with something "
                                  f"that is not JSON", status=resp.status_code) from None
            return resp.text


class HttpProvider(Provider):
    """A cloud reached over HTTP. Subclasses rent in `_launch`; `create` makes that safe to retry."""

    def __init__(self, api: ApiClient, gpus: Sequence[GpuType]) -> None:
        self.api = api
        self.gpus = tuple(gpus)

    async def aclose(self) -> None:
        await self.api.aclose()

    @abstractmethod
    async def _launch(self, offer: Offer, *, name: str, ssh_public_key: str, options: CreateOptions) -> Instance:
        """Ask the provider once to rent `offer`. Must not retry its renting request itself."""

    async def create(self, offer: Offer, *, name: str, ssh_public_key: str,
                     options: CreateOptions | None = None) -> Instance:
        """Rent `offer`, retrying only where that cannot rent a second machine.

        Errors known to happen before the provider acted (connection refused, 429) are retried
        with backoff. After an answer we never saw (a timeout once the request was sent, a 5xx),
        the instance is looked up by its unique `name`: if it exists it is adopted, if it does
        not, the create is retried; if the lookup itself fails we stop and say so, rather than
        risk paying for two machines.
        """
        self._check_offer(offer)
        _check_create_args(self.name, name, ssh_public_key)
        options = options or CreateOptions()
        log.info("%s: renting offer %s (%s x%d) as %r", self.label, offer.offer_id, offer.gpu_name,
                 offer.gpu_count, name)

        async def attempt() -> Instance:
            try:
                return await self._launch(offer, name=name, ssh_public_key=ssh_public_key, options=options)
            except ProviderUnavailable as err:
                if not err.maybe_applied:
                    raise
                return await self._recover(name, err)

        return await with_retries(attempt, self.api.retry, what=f"create {name!r}", idempotent=False,
                                  rng=self.api.rng)

    async def _recover(self, name: str, err: ProviderUnavailable) -> Instance:
        try:
            found = await self.find(name)
        except ProviderError as lookup:
            raise ProviderUnavailable(
                self.name, f"{err.message}; asking {self.label} whether {name!r} was created failed too "
                f"({lookup.message}): look for an instance named {name!r} in the {self.label} console "
                f"before creating it again", maybe_applied=True) from err
        if found is not None:
            log.warning("%s: no answer to creating %r (%s), but it exists as %s: adopting it",
                        self.label, name, err.message, found.instance_id)
            return found
        # The provider shows no such instance: trying again cannot make a second one.
        raise ProviderUnavailable(self.name, f"{err.message} (no instance named {name!r} was created)",
                                  maybe_applied=False, status=err.status) from err


def _check_create_args(provider: str, name: str, ssh_public_key: str) -> None:
    if not name or not name.strip():
        raise InvalidRequest(provider, f"{label(provider)}: an instance needs a name")
    parts = ssh_public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise InvalidRequest(provider, f"{label(provider)}: the SSH public key does not look like one "
                             f"(expected 'ssh-ed25519 AAAA...')")


def expect_dict(provider: str, body: Any, what: str) -> dict[str, Any]:
    """`body` if it is a JSON object; a BadResponse naming the call otherwise."""
    if not isinstance(body, dict):
        raise BadResponse(provider, f"{label(provider)} answered {what} with {type(body).__name__}, "
                          f"expected a JSON object")
    return body


def expect_list(provider: str, body: Any, what: str) -> list[Any]:
    if not isinstance(body, list):
        raise BadResponse(provider, f"{label(provider)} answered {what} with {type(body).__name__}, "
                          f"expected a JSON list")
    return body
