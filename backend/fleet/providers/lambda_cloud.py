"""Lambda Cloud (On-Demand Cloud), over its API at https://cloud.lambdalabs.com/api/v1.

Documentation followed: the Cloud API reference, https://docs-api.lambda.ai/api/cloud (formerly
https://cloud.lambdalabs.com/api/v1/docs), and https://docs.lambda.ai/public-cloud/cloud-api/:
- GET /instance-types: {"data": {name: {"instance_type": {"name", "description",
  "gpu_description", "price_cents_per_hour", "specs": {"gpus", ...}},
  "regions_with_capacity_available": [{"name", "description"}]}}};
- POST /instance-operations/launch {"region_name", "instance_type_name", "ssh_key_names",
  "name"} -> {"data": {"instance_ids": [...]}};
- GET /instances/{id} -> {"data": {"id", "name", "ip", "status": "booting" | "active" |
  "unhealthy" | "terminating" | "terminated", ...}}; GET /instances -> {"data": [...]};
- POST /instance-operations/terminate {"instance_ids": [...]};
- GET /ssh-keys, POST /ssh-keys {"name", "public_key"}: launch takes key *names*.
Errors are {"error": {"code", "message", "suggestion"}}; the launch code
instance-operations/launch/insufficient-capacity means the capacity is gone: OfferTaken.
Limits: about 1 request/s, launch 1 per 10 s (429). The key is accepted as HTTP Basic user or
as a Bearer token; we use Bearer. Lambda rents VMs (Ubuntu with Lambda Stack): the SSH user is
ubuntu and CreateOptions.image is not used. A VM's ports are its own (no mapping, so
Instance.ports stays empty); CreateOptions.ports opens nothing: the VM's firewall is the operator's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any

from backend.catalogue import GpuType
from backend.fleet.providers.base import CreateOptions, Instance, InstanceState, Offer
from backend.fleet.providers.errors import (
    BadCredentials,
    BadResponse,
    InvalidRequest,
    NotFound,
    OfferTaken,
    ProviderError,
)
from backend.fleet.providers.gpu_names import catalogue_gpu
from backend.fleet.providers.http_api import ApiClient, HttpProvider, expect_dict, expect_list
from backend.fleet.providers.prices import cents_to_nano
from backend.money import MoneyError

log = logging.getLogger(__name__)

API_URL = "https://cloud.lambdalabs.com/api/v1"
_STATES: dict[str, InstanceState] = {
    "booting": "pending",
    "active": "running",
    "unhealthy": "failed",
    "terminating": "terminated",
    "terminated": "terminated",
    "preempted": "terminated",
}


class LambdaProvider(HttpProvider):
    name = "lambda"

    def __init__(self, api: ApiClient, gpus: Sequence[GpuType], *, base_url: str = API_URL) -> None:
        super().__init__(api, gpus)
        self.base_url = base_url.rstrip("/")

    # ------------------------------------------------------------------ offers
    async def list_offers(self, gpu: str | None = None) -> list[Offer]:
        what = "list instance types"
        body = expect_dict(self.name, await self.api.call("GET", f"{self.base_url}/instance-types", what=what,
                                                          classify=self._error_code), what)
        types = expect_dict(self.name, body.get("data"), what)
        offers = []
        for type_name, entry in types.items():
            try:
                offers += self._offers_of(type_name, entry, gpu)
            except (KeyError, TypeError, ValueError, MoneyError) as exc:
                log.warning("Lambda: skipping instance type %r: %s", type_name, exc)
        return offers

    def _offers_of(self, type_name: str, entry: dict[str, Any], only_gpu: str | None) -> list[Offer]:
        itype = entry["instance_type"]
        description = str(itype.get("gpu_description") or itype.get("description") or type_name)
        m = re.search(r"(\d+)\s*GB", description)
        reported = float(m.group(1)) if m else None
        gpu_id = catalogue_gpu(description, reported, self.gpus)
        if only_gpu is not None and gpu_id != only_gpu:
            return []
        count = int(itype["specs"]["gpus"])
        if count < 1:
            return []  # CPU-only types
        card = next((g for g in self.gpus if g.id == gpu_id), None)
        price = cents_to_nano(itype["price_cents_per_hour"], what=f"{type_name} price_cents_per_hour")
        return [
            Offer(provider=self.name, offer_id=f"{type_name}@{region['name']}", gpu=gpu_id, gpu_name=description,
                  gpu_count=count, vram_gb=float(card.vram_gb) if card else (reported or 0.0),
                  price_per_hour=price, region=str(region["name"]), kind="on_demand")
            for region in entry.get("regions_with_capacity_available") or []
        ]

    def _error_code(self, status: int, reply: Any, what: str) -> ProviderError | None:
        error = reply.get("error") if isinstance(reply, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if code == "global/invalid-api-key":
            return BadCredentials(self.name, f"Lambda refused the API key ({status}): check "
                                  f"settings.lambda_api_key", status=status)
        if code == "global/object-does-not-exist":
            return NotFound(self.name, f"Lambda found nothing to {what}", status=status)
        return None

    # ------------------------------------------------------------------ instances
    async def _launch(self, offer: Offer, *, name: str, ssh_public_key: str, options: CreateOptions) -> Instance:
        type_name, _, region = offer.offer_id.rpartition("@")
        if not type_name or not region:
            raise InvalidRequest(self.name, f"Lambda offer id {offer.offer_id!r} was not made by list_offers")
        key_name = await self._key_name(ssh_public_key)

        def refused(status: int, reply: Any, what: str) -> ProviderError | None:
            error = reply.get("error") if isinstance(reply, dict) else None
            if isinstance(error, dict) and error.get("code") == "instance-operations/launch/insufficient-capacity":
                return OfferTaken(self.name, f"Lambda has no {type_name} left in {region} ({status}): pick "
                                  f"another offer", status=status)
            return self._error_code(status, reply, what)

        what = f"launch {type_name} in {region} as {name!r}"
        body = {"region_name": region, "instance_type_name": type_name, "ssh_key_names": [key_name], "name": name}
        reply = expect_dict(self.name, await self.api.call("POST", f"{self.base_url}/instance-operations/launch",
                                                           what=what, json_body=body, retry=False,
                                                           classify=refused), what)
        ids = expect_dict(self.name, reply.get("data"), what).get("instance_ids")
        if not isinstance(ids, list) or not ids:
            raise BadResponse(self.name, f"Lambda answered {what} without an instance id")
        return Instance(provider=self.name, instance_id=str(ids[0]), name=name, state="pending",
                        provider_state="booting", ssh_user="ubuntu", price_per_hour=offer.price_per_hour)

    async def _key_name(self, public_key: str) -> str:
        """The name of our key in the Lambda account, adding the key once if it is not there."""
        wanted = _key_blob(public_key)
        what = "list SSH keys"
        body = expect_dict(self.name, await self.api.call("GET", f"{self.base_url}/ssh-keys", what=what,
                                                          classify=self._error_code), what)
        for key in expect_list(self.name, body.get("data"), what):
            if isinstance(key, dict) and _key_blob(str(key.get("public_key", ""))) == wanted:
                return str(key["name"])
        name = "tokenmill-" + hashlib.sha256(wanted.encode()).hexdigest()[:12]
        # Not retried here: after a lost answer the next create attempt lists the keys again.
        await self.api.call("POST", f"{self.base_url}/ssh-keys", what=f"add SSH key {name}",
                            json_body={"name": name, "public_key": public_key.strip()}, retry=False,
                            classify=self._error_code)
        log.info("Lambda: added SSH key %s to the account", name)
        return name

    async def status(self, instance_id: str) -> Instance:
        what = f"get instance {instance_id}"
        try:
            body = await self.api.call("GET", f"{self.base_url}/instances/{instance_id}", what=what,
                                       classify=self._error_code)
        except NotFound:
            raise NotFound(self.name, f"Lambda has no instance {instance_id}", status=404) from None
        return self._instance(expect_dict(self.name, expect_dict(self.name, body, what).get("data"), what), what)

    async def find(self, name: str) -> Instance | None:
        what = f"look up instance {name!r}"
        body = expect_dict(self.name, await self.api.call("GET", f"{self.base_url}/instances", what=what,
                                                          classify=self._error_code), what)
        for inst in expect_list(self.name, body.get("data"), what):
            if isinstance(inst, dict) and inst.get("name") == name:
                found = self._instance(inst, what)
                if found.state != "terminated":
                    return found
        return None

    async def destroy(self, instance_id: str) -> None:
        try:
            await self.api.call("POST", f"{self.base_url}/instance-operations/terminate",
                                what=f"terminate instance {instance_id}", json_body={"instance_ids": [instance_id]},
                                classify=self._error_code)
        except NotFound:
            log.info("Lambda: instance %s was already gone", instance_id)

    def _instance(self, inst: dict[str, Any], what: str) -> Instance:
        if not inst.get("id"):
            raise BadResponse(self.name, f"Lambda answered {what} without an instance id")
        raw = str(inst.get("status") or "")
        state = _STATES.get(raw, "pending")
        host = inst.get("ip") or None
        if state == "running" and not host:
            state = "pending"
        price = None
        itype = inst.get("instance_type")
        if isinstance(itype, dict) and isinstance(itype.get("price_cents_per_hour"), int):
            price = cents_to_nano(itype["price_cents_per_hour"])
        return Instance(provider=self.name, instance_id=str(inst["id"]), name=str(inst.get("name") or ""),
                        state=state, provider_state=raw, ssh_host=host if state == "running" else None,
                        ssh_port=22, ssh_user="ubuntu", price_per_hour=price)


def _key_blob(public_key: str) -> str:
    """The base64 body of an OpenSSH public key: the same key whatever its comment."""
    parts = public_key.split()
    return parts[1] if len(parts) >= 2 else ""
