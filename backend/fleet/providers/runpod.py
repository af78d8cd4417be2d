"""RunPod: pods over the REST API, prices over the GraphQL API.

Documentation followed:
- REST API v1, https://rest.runpod.io/v1 (reference https://docs.runpod.io/api-reference/pods/POST/pods,
  OpenAPI https://rest.runpod.io/v1/openapi.json): POST /pods (PodCreateInput: name, imageName,
  gpuTypeIds, gpuCount, cloudType SECURE|COMMUNITY, interruptible, containerDiskInGb, ports,
  env, supportPublicIp) answers 201 with the Pod; GET /pods/{podId}; GET /pods?name=;
  DELETE /pods/{podId} answers 204. A Pod has desiredStatus RUNNING|EXITED|TERMINATED,
  publicIp and portMappings (container port -> public port, {"22": 10341, "8000": 10342}: empty
  while the pod starts; every port asked for in `ports` as "8000/tcp" is mapped so), costPerHr.
- GraphQL API, https://api.runpod.io/graphql (https://docs.runpod.io/sdks/graphql/manage-pods,
  "List GPU types"): the REST API has no price list, so offers come from
  `gpuTypes { id displayName memoryInGb secureCloud communityCloud securePrice communityPrice
  secureSpotPrice communitySpotPrice maxGpuCount }`. Prices are USD per GPU per hour. The docs
  pass the key as ?api_key=; we send it as a Bearer header instead, so it never sits in a URL.
- SSH, https://docs.runpod.io/pods/configuration/use-ssh: full SSH goes to publicIp on the
  port mapped to 22/tcp. The key is given per pod in SSH_PUBLIC_KEY ("Override public key");
  RunPod's own images read PUBLIC_KEY, so both are set.
A refused pod for lack of machines answers "There are no longer any instances available with
the requested specifications": OfferTaken.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from backend.catalogue import GpuType
from backend.fleet.providers.base import CreateOptions, Instance, InstanceState, Offer, OfferKind
from backend.fleet.providers.errors import (
    BadCredentials,
    BadResponse,
    InvalidRequest,
    NotFound,
    OfferTaken,
    ProviderError,
)
from backend.fleet.providers.gpu_names import catalogue_gpu
from backend.fleet.providers.http_api import ApiClient, HttpProvider, expect_dict, expect_list, provider_message
from backend.fleet.providers.prices import usd_to_nano
from backend.money import MoneyError

log = logging.getLogger(__name__)

REST_URL = "https://rest.runpod.io/v1"
GRAPHQL_URL = "https://api.runpod.io/graphql"
# A RunPod image with CUDA and sshd that installs the key from PUBLIC_KEY.
DEFAULT_IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
GPU_COUNTS = (1, 2, 4, 8)  # the tensor-parallel sizes vLLM can split a model over
_NO_CAPACITY = "no longer any instances available"

GPU_TYPES_QUERY = (
    "query GpuTypes { gpuTypes { id displayName memoryInGb secureCloud communityCloud "
    "securePrice communityPrice secureSpotPrice communitySpotPrice maxGpuCount } }"
)

# (cloudType, kind, price field, spot?) in the order offers are listed
_TIERS: tuple[tuple[str, OfferKind, str, bool], ...] = (
    ("SECURE", "on_demand", "securePrice", False),
    ("COMMUNITY", "community", "communityPrice", False),
    ("SECURE", "spot", "secureSpotPrice", True),
    ("COMMUNITY", "spot", "communitySpotPrice", True),
)


class RunPodProvider(HttpProvider):
    name = "runpod"

    def __init__(self, api: ApiClient, gpus: Sequence[GpuType], *, rest_url: str = REST_URL,
                 graphql_url: str = GRAPHQL_URL) -> None:
        super().__init__(api, gpus)
        self.rest_url = rest_url.rstrip("/")
        self.graphql_url = graphql_url

    # ------------------------------------------------------------------ offers
    async def list_offers(self, gpu: str | None = None) -> list[Offer]:
        what = "list GPU types"
        body = expect_dict(self.name, await self.api.call("POST", self.graphql_url, what=what,
                                                          json_body={"query": GPU_TYPES_QUERY},
                                                          classify=self._graphql_errors), what)
        types = expect_list(self.name, expect_dict(self.name, body.get("data"), what).get("gpuTypes"), what)
        offers: list[Offer] = []
        for raw in types:
            try:
                offers += self._offers_of(raw, gpu)
            except (KeyError, TypeError, ValueError, MoneyError) as exc:
                log.warning("RunPod: skipping GPU type %r: %s", raw.get("id") if isinstance(raw, dict) else raw, exc)
        return offers

    def _offers_of(self, raw: dict[str, Any], only_gpu: str | None) -> list[Offer]:
        type_id = str(raw["id"])
        reported = raw.get("memoryInGb")
        gpu_id = catalogue_gpu(type_id, float(reported) if reported else None, self.gpus)
        if only_gpu is not None and gpu_id != only_gpu:
            return []
        card = next((g for g in self.gpus if g.id == gpu_id), None)
        vram = float(card.vram_gb) if card else float(reported or 0)
        max_count = int(raw.get("maxGpuCount") or 1)
        offers = []
        for cloud, kind, field, spot in _TIERS:
            available = raw.get("secureCloud" if cloud == "SECURE" else "communityCloud")
            per_gpu = raw.get(field)
            if not available or not per_gpu:  # null or 0: not sold that way now
                continue
            price = usd_to_nano(per_gpu, what=f"{type_id} {field}")
            for count in GPU_COUNTS:
                if count > max_count:
                    break
                offers.append(Offer(
                    provider=self.name, offer_id=_offer_id(type_id, cloud, count, spot), gpu=gpu_id,
                    gpu_name=str(raw.get("displayName") or type_id), gpu_count=count, vram_gb=vram,
                    price_per_hour=price * count, region=None, kind=kind,
                ))
        return offers

    def _graphql_errors(self, status: int, body: Any, what: str) -> ProviderError | None:
        # GraphQL reports failures inside a 200 answer.
        if status != 200 or not isinstance(body, dict) or not body.get("errors"):
            return None
        message = self.api.scrub(provider_message(body))
        if "unauthorized" in message.lower():
            return BadCredentials(self.name, "RunPod refused the API key: check settings.runpod_api_key")
        return BadResponse(self.name, f"RunPod could not {what}: {message}")

    # ------------------------------------------------------------------ instances
    async def _launch(self, offer: Offer, *, name: str, ssh_public_key: str, options: CreateOptions) -> Instance:
        type_id, cloud, count, spot = _parse_offer_id(offer.offer_id)
        body = {
            "name": name,
            "imageName": options.image or DEFAULT_IMAGE,
            "computeType": "GPU",
            "gpuTypeIds": [type_id],
            "gpuCount": count,
            "cloudType": cloud,
            "interruptible": spot,
            "containerDiskInGb": options.disk_gb,
            "volumeInGb": 0,  # weights live on the container disk; a volume would bill while stopped
            "ports": ["22/tcp", *(f"{p}/tcp" for p in options.ports)],
            "supportPublicIp": True,
            "env": {"SSH_PUBLIC_KEY": ssh_public_key, "PUBLIC_KEY": ssh_public_key},
        }

        def taken(status: int, reply: Any, what: str) -> ProviderError | None:
            if status >= 400 and _NO_CAPACITY in provider_message(reply).lower():
                return OfferTaken(self.name, f"RunPod has no {offer.gpu_name} x{count} left in its {cloud.lower()} "
                                  f"cloud ({status}): pick another offer", status=status)
            return None

        what = f"create pod {name!r}"
        pod = await self.api.call("POST", f"{self.rest_url}/pods", what=what, json_body=body, retry=False,
                                  classify=taken)
        return self._instance(expect_dict(self.name, pod, what), what)

    async def status(self, instance_id: str) -> Instance:
        what = f"get pod {instance_id}"
        try:
            pod = await self.api.call("GET", f"{self.rest_url}/pods/{instance_id}", what=what)
        except NotFound:
            raise NotFound(self.name, f"RunPod has no pod {instance_id}", status=404) from None
        return self._instance(expect_dict(self.name, pod, what), what)

    async def find(self, name: str) -> Instance | None:
        what = f"look up pod {name!r}"
        pods = expect_list(self.name, await self.api.call("GET", f"{self.rest_url}/pods", what=what,
                                                          params={"name": name}), what)
        for pod in pods:
            if isinstance(pod, dict) and pod.get("name") == name and pod.get("desiredStatus") != "TERMINATED":
                return self._instance(pod, what)
        return None

    async def destroy(self, instance_id: str) -> None:
        try:
            await self.api.call("DELETE", f"{self.rest_url}/pods/{instance_id}", what=f"delete pod {instance_id}")
        except NotFound:
            log.info("RunPod: pod %s was already gone", instance_id)

    def _instance(self, pod: dict[str, Any], what: str) -> Instance:
        if not pod.get("id"):
            raise BadResponse(self.name, f"RunPod answered {what} without a pod id")
        desired = str(pod.get("desiredStatus") or "")
        host = pod.get("publicIp") or None
        ports = _port_mappings(pod.get("portMappings"))
        ssh_port = ports.pop(22, None)
        state: InstanceState
        if desired == "TERMINATED":
            state = "terminated"
        elif desired == "EXITED":
            state = "stopped"
        elif desired == "RUNNING" and host and ssh_port:
            state = "running"
        else:
            state = "pending"  # RUNNING without an address yet: the container is still starting
        price = None
        if pod.get("costPerHr") is not None:
            try:
                price = usd_to_nano(pod["costPerHr"], what="costPerHr")
            except MoneyError as exc:
                log.warning("RunPod: pod %s: %s", pod["id"], exc)
        return Instance(provider=self.name, instance_id=str(pod["id"]), name=str(pod.get("name") or ""),
                        state=state, provider_state=desired, ssh_host=host if state == "running" else None,
                        ssh_port=ssh_port or 22, ssh_user="root", price_per_hour=price,
                        ports=ports if state == "running" else {})


def _port_mappings(raw: Any) -> dict[int, int]:
    """A pod's portMappings ({"22": 10341, "8000": 10342}: container port -> public port) as ints;
    anything malformed is left out."""
    if not isinstance(raw, dict):
        return {}
    out = {}
    for inside, public in raw.items():
        try:
            out[int(inside)] = int(public)
        except (TypeError, ValueError):
            log.warning("RunPod: ignoring port mapping %r: %r", inside, public)
    return out


def _offer_id(type_id: str, cloud: str, count: int, spot: bool) -> str:
    return f"{type_id}|{cloud}|{count}|{'spot' if spot else 'ondemand'}"


def _parse_offer_id(offer_id: str) -> tuple[str, str, int, bool]:
    try:
        type_id, cloud, count, tier = offer_id.split("|")
        return type_id, cloud, int(count), tier == "spot"
    except ValueError:
        raise InvalidRequest("runpod", f"RunPod offer id {offer_id!r} was not made by list_offers") from None
