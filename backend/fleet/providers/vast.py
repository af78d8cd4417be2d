"""Vast.ai, over its REST API at https://console.vast.ai/api/v0 (Bearer key).

Documentation followed (docs.vast.ai):
- https://docs.vast.ai/api-reference/hello-world: search POST /bundles/ ({"offers": [...]}),
  rent PUT /asks/{offer_id}/ ({"success": true, "new_contract": <instance id>}), poll
  GET /instances/{id}/ ({"instances": {...}}: actual_status null -> "loading" -> "running";
  "exited", "unknown" and "offline" never reach running), destroy DELETE /instances/{id}/.
- https://docs.vast.ai/api-reference/creating-instances-with-api: create fields image, label,
  disk, runtype ("ssh_direct" opens port 22 on the machine), env ({"-p 8000:8000": "1"} maps
  a port), cancel_unavail; search filters {"field": {"eq"|"gte"|"in": ...}}, type "on-demand".
- https://docs.vast.ai/instances/connect/networking: each container port opened with -p is
  mapped to a random public port of the machine; an instance reports them in `ports`, Docker's
  shape ({"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41234"}]}), reached at public_ipaddr.
- https://docs.vast.ai/api-reference/rate-limits-and-errors: errors {"success": false,
  "error": "...", "msg": "..."}; 429 with a Retry-After that may be hours away.
- The official CLI (github.com/vast-ai/vast-cli, `attach ssh`): POST /instances/{id}/ssh/
  {"ssh_key": ...} lets a key in.
Every offer is one host's machine: renting one someone else just took answers no_such_ask
(as 400, 404 or 410): OfferTaken. Offers from datacenter hosts (hosting_type 1) are
"on_demand"; the rest are individual marketplace hosts, "community".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from backend.catalogue import GpuType
from backend.fleet.providers.base import CreateOptions, Instance, InstanceState, Offer
from backend.fleet.providers.errors import (
    BadResponse,
    InvalidRequest,
    NotFound,
    OfferTaken,
    OrphanedInstance,
    ProviderError,
    ProviderUnavailable,
)
from backend.fleet.providers.gpu_names import catalogue_gpu
from backend.fleet.providers.http_api import ApiClient, HttpProvider, expect_dict, expect_list, provider_message
from backend.fleet.providers.prices import usd_to_nano
from backend.money import MoneyError

log = logging.getLogger(__name__)

API_URL = "https://console.vast.ai/api/v0"
# The image of Vast's hello-world guide; with an ssh runtype Vast's entrypoint runs sshd in any image.
DEFAULT_IMAGE = "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"
SEARCH_LIMIT = 64
# Vast's spelling of the catalogue's cards in its gpu_name search filter. The answers are
# mapped back with catalogue_gpu(), which also tells A100 40 and 80 GB apart by gpu_ram.
VAST_NAMES: dict[str, tuple[str, ...]] = {
    "gtx1050ti": ("GTX 1050 Ti",),
    "rtx3090": ("RTX 3090",),
    "rtx4090": ("RTX 4090",),
    "a10": ("A10",),
    "a10g": ("A10g",),
    "l4": ("L4",),
    "l40s": ("L40S",),
    "a100-40gb": ("A100 PCIE", "A100 SXM4"),
    "a100-80gb": ("A100 PCIE", "A100 SXM4", "A100 SXM"),
    "h100-80gb": ("H100 SXM", "H100 PCIE"),
    "gh200-96gb": ("GH200 SXM",),
}
_BROKEN = {"exited", "unknown", "offline"}


class VastProvider(HttpProvider):
    name = "vast"

    def __init__(self, api: ApiClient, gpus: Sequence[GpuType], *, base_url: str = API_URL) -> None:
        super().__init__(api, gpus)
        self.base_url = base_url.rstrip("/")

    # ------------------------------------------------------------------ offers
    async def list_offers(self, gpu: str | None = None) -> list[Offer]:
        if gpu is not None and gpu not in VAST_NAMES:
            return []
        names = sorted({n for g, ns in VAST_NAMES.items() if gpu in (None, g) for n in ns})
        query = {
            "gpu_name": {"in": names},
            "rentable": {"eq": True},
            "verified": {"eq": True},
            "direct_port_count": {"gte": 2},  # SSH and the engine, reached directly
            "type": "on-demand",
            "order": [["dph_total", "asc"]],
            "limit": SEARCH_LIMIT,
        }
        what = "search offers"
        body = expect_dict(self.name, await self.api.call("POST", f"{self.base_url}/bundles/", what=what,
                                                          json_body=query), what)
        offers = []
        for raw in expect_list(self.name, body.get("offers"), what):
            try:
                offer = self._offer(raw)
            except (KeyError, TypeError, ValueError, MoneyError) as exc:
                log.warning("Vast.ai: skipping offer %r: %s", raw.get("id") if isinstance(raw, dict) else raw, exc)
                continue
            if gpu is None or offer.gpu == gpu:
                offers.append(offer)
        return offers

    def _offer(self, raw: dict[str, Any]) -> Offer:
        gpu_name = str(raw["gpu_name"])
        reported = Decimal(raw["gpu_ram"]) / 1024 if raw.get("gpu_ram") else None  # MiB per GPU
        gpu_id = catalogue_gpu(gpu_name, float(reported) if reported else None, self.gpus)
        card = next((g for g in self.gpus if g.id == gpu_id), None)
        vram = float(card.vram_gb) if card else round(float(reported or 0), 1)
        datacenter = str(raw.get("hosting_type")) in ("1", "datacenter")
        return Offer(
            provider=self.name, offer_id=str(int(raw["id"])), gpu=gpu_id, gpu_name=gpu_name,
            gpu_count=int(raw["num_gpus"]), vram_gb=vram,
            price_per_hour=usd_to_nano(raw["dph_total"], what=f"offer {raw['id']} dph_total"),
            region=str(raw["geolocation"]) if raw.get("geolocation") else None,
            kind="on_demand" if datacenter else "community",
        )

    # ------------------------------------------------------------------ instances
    async def _launch(self, offer: Offer, *, name: str, ssh_public_key: str, options: CreateOptions) -> Instance:
        body = {
            "image": options.image or DEFAULT_IMAGE,
            "label": name,  # how find() recovers an instance whose creation we saw no answer to
            "disk": options.disk_gb,
            "runtype": "ssh_direct",
            "env": {f"-p {p}:{p}": "1" for p in options.ports},
            "target_state": "running",
            "cancel_unavail": True,  # fail now rather than wait for a busy GPU
        }

        def refused(status: int, reply: Any, what: str) -> ProviderError | None:
            message = provider_message(reply)
            code = reply.get("error") if isinstance(reply, dict) else None
            if code == "no_such_ask" or "no_such_ask" in message or status == 410:
                return OfferTaken(self.name, f"Vast.ai offer {offer.offer_id} ({offer.gpu_name} x{offer.gpu_count}) "
                                  f"was taken by someone else ({status}): pick another offer", status=status)
            if 200 <= status < 300 and isinstance(reply, dict) and reply.get("success") is False:
                return InvalidRequest(self.name, f"Vast.ai refused to {what}: {self.api.scrub(message)}",
                                      status=status)
            return None

        what = f"rent offer {offer.offer_id} as {name!r}"
        reply = expect_dict(self.name, await self.api.call("PUT", f"{self.base_url}/asks/{offer.offer_id}/",
                                                           what=what, json_body=body, retry=False,
                                                           classify=refused), what)
        if not reply.get("new_contract"):
            raise BadResponse(self.name, f"Vast.ai answered {what} without an instance id (new_contract)")
        instance_id = str(reply["new_contract"])
        await self._attach_key(instance_id, name, ssh_public_key)
        return Instance(provider=self.name, instance_id=instance_id, name=name, state="pending",
                        provider_state="created", ssh_user="root", price_per_hour=offer.price_per_hour)

    async def _attach_key(self, instance_id: str, name: str, ssh_public_key: str) -> None:
        try:
            await self.api.call("POST", f"{self.base_url}/instances/{instance_id}/ssh/",
                                what=f"let our SSH key into instance {instance_id}",
                                json_body={"ssh_key": ssh_public_key})
            return
        except ProviderError as err:
            failure = err
        # An instance we cannot log into is useless: give it back rather than pay for it.
        try:
            await self.destroy(instance_id)
        except ProviderError as cleanup:
            raise OrphanedInstance(
                self.name, f"Vast.ai rented instance {instance_id} ({name!r}) but did not take our SSH key "
                f"({failure.message}), and destroying it failed ({cleanup.message}): destroy it in the "
                f"Vast.ai console", instance_id=instance_id) from failure
        message = f"Vast.ai did not take our SSH key for instance {instance_id} ({failure.message}); destroyed it"
        if failure.retryable:
            raise ProviderUnavailable(self.name, message, maybe_applied=False) from failure
        raise InvalidRequest(self.name, message) from failure

    async def status(self, instance_id: str) -> Instance:
        what = f"get instance {instance_id}"
        try:
            body = await self.api.call("GET", f"{self.base_url}/instances/{instance_id}/", what=what,
                                       classify=self._gone)
        except NotFound:
            raise NotFound(self.name, f"Vast.ai has no instance {instance_id}", status=404) from None
        inst = expect_dict(self.name, body, what).get("instances")
        if not inst:  # Vast answers {"instances": null} for an id it no longer knows
            raise NotFound(self.name, f"Vast.ai has no instance {instance_id}", status=404)
        return self._instance(expect_dict(self.name, inst, what), what)

    async def find(self, name: str) -> Instance | None:
        what = f"look up instance {name!r}"
        body = expect_dict(self.name, await self.api.call("GET", f"{self.base_url}/instances/", what=what), what)
        for inst in expect_list(self.name, body.get("instances") or [], what):
            if isinstance(inst, dict) and inst.get("label") == name:
                return self._instance(inst, what)
        return None

    async def destroy(self, instance_id: str) -> None:
        try:
            await self.api.call("DELETE", f"{self.base_url}/instances/{instance_id}/",
                                what=f"destroy instance {instance_id}", classify=self._gone)
        except NotFound:
            log.info("Vast.ai: instance %s was already gone", instance_id)

    def _gone(self, status: int, reply: Any, what: str) -> ProviderError | None:
        if isinstance(reply, dict) and reply.get("error") == "no_such_instance":
            return NotFound(self.name, f"Vast.ai found no instance to {what}", status=status)
        return None

    def _instance(self, inst: dict[str, Any], what: str) -> Instance:
        if inst.get("id") is None:
            raise BadResponse(self.name, f"Vast.ai answered {what} without an instance id")
        actual = str(inst.get("actual_status") or "")
        host, port = _ssh_address(inst)
        state: InstanceState
        if inst.get("intended_status") == "stopped" or inst.get("cur_state") == "stopped":
            state = "stopped"
        elif actual in _BROKEN:
            state = "failed"
        elif actual == "running" and host:
            state = "running"
        else:
            state = "pending"
        price = None
        if inst.get("dph_total") is not None:
            try:
                price = usd_to_nano(inst["dph_total"], what="dph_total")
            except MoneyError as exc:
                log.warning("Vast.ai: instance %s: %s", inst["id"], exc)
        return Instance(provider=self.name, instance_id=str(inst["id"]), name=str(inst.get("label") or ""),
                        state=state, provider_state=actual or "provisioning",
                        ssh_host=host if state == "running" else None, ssh_port=port, ssh_user="root",
                        price_per_hour=price, ports=_port_mappings(inst, host) if state == "running" else {})


def _port_mappings(inst: dict[str, Any], ssh_host: str | None) -> dict[int, int]:
    """Container port -> public port of the TCP ports Vast.ai mapped besides SSH's. They are reached at
    public_ipaddr, so none are reported when SSH goes through Vast's proxy instead (Instance.ports are
    reached at ssh_host)."""
    ports = inst.get("ports")
    if not ssh_host or ssh_host != str(inst.get("public_ipaddr") or "").strip() or not isinstance(ports, dict):
        return {}
    out = {}
    for key, bindings in ports.items():
        inside, _, proto = str(key).partition("/")
        if inside == "22" or proto not in ("", "tcp") or not isinstance(bindings, list) or not bindings:
            continue
        first = bindings[0]
        try:
            out[int(inside)] = int(first["HostPort"])
        except (KeyError, TypeError, ValueError):
            log.warning("Vast.ai: instance %s: ignoring port mapping %r: %r", inst.get("id"), key, bindings)
    return out


def _ssh_address(inst: dict[str, Any]) -> tuple[str | None, int]:
    """The direct address (public IP and the host port mapped to 22), else Vast's SSH proxy."""
    ports = inst.get("ports")
    mapped = ports.get("22/tcp") if isinstance(ports, dict) else None
    if inst.get("public_ipaddr") and isinstance(mapped, list) and mapped:
        host_port = mapped[0].get("HostPort") if isinstance(mapped[0], dict) else None
        if host_port:
            return str(inst["public_ipaddr"]).strip(), int(host_port)
    if inst.get("ssh_host") and inst.get("ssh_port"):
        return str(inst["ssh_host"]), int(inst["ssh_port"])
    return None, 22
