"""Vast.ai as its docs describe it (https://docs.vast.ai/api-reference/hello-world and
creating-instances-with-api): POST /bundles/, PUT /asks/{id}/, GET /instances/[{id}/],
POST /instances/{id}/ssh/, DELETE /instances/{id}/. Offer rows are trimmed from a real answer.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.integration.providers.fake_cloud import FakeCloud, body_of


def offer_row(offer_id: int, gpu_name: str, gpu_ram: int, num_gpus: int, dph_total: float, *,
              hosting_type: int = 0, geolocation: str = "Guangxi, CN") -> dict[str, Any]:
    return {
        "ask_contract_id": offer_id, "bundle_id": 612345, "compute_cap": 890, "cpu_cores_effective": 16.0,
        "cpu_name": "AMD EPYC 7B13", "cpu_ram": 64393, "cuda_max_good": 12.2, "direct_port_count": 249,
        "disk_space": 1607.875, "dlperf": 106.63705612622635, "dph_base": dph_total, "dph_total": dph_total,
        "driver_version": "535.183.01", "duration": 13356528.565657616, "external": None,
        "geolocation": geolocation, "gpu_arch": "nvidia", "gpu_name": gpu_name, "gpu_ram": gpu_ram,
        "gpu_total_ram": gpu_ram * num_gpus, "host_id": 125418, "hosting_type": hosting_type, "id": offer_id,
        "inet_down": 105.9, "inet_up": 77.7, "is_bid": False, "machine_id": 22990, "min_bid": 0.2,
        "num_gpus": num_gpus, "public_ipaddr": "8.218.223.191", "reliability2": 0.9700835, "rentable": True,
        "rented": False, "verification": "verified", "verified": True,
    }


OFFERS = [
    offer_row(11684738, "RTX 4090", 24564, 1, 0.2466759259259259),
    offer_row(11684739, "RTX 4090", 24564, 2, 0.8, hosting_type=1, geolocation="Texas, US"),
    offer_row(11684740, "A100 SXM4", 81920, 1, 1.1, hosting_type=1, geolocation="Sweden, SE"),
    offer_row(11684741, "RTX A6000", 49140, 1, 0.45),
]


class FakeVast(FakeCloud):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instances: dict[int, dict[str, Any]] = {}
        self.keys: dict[int, list[str]] = {}
        self.polls_until_ready = 1
        self._ids = itertools.count(7835610)

    def unauthorized(self) -> web.Response:
        return web.json_response({"success": False, "error": "invalid_api_key", "msg": "Invalid user key"},
                                 status=401)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v0/bundles/", self._search)
        app.router.add_put("/api/v0/asks/{offer_id}/", self._rent)
        app.router.add_get("/api/v0/instances/", self._list)
        app.router.add_get("/api/v0/instances/{instance_id}/", self._get)
        app.router.add_post("/api/v0/instances/{instance_id}/ssh/", self._attach)
        app.router.add_delete("/api/v0/instances/{instance_id}/", self._destroy)

    async def _search(self, request: web.Request) -> web.Response:
        query = await body_of(request)
        names = query.get("gpu_name", {}).get("in")
        rows = [o for o in OFFERS if names is None or o["gpu_name"] in names]
        return web.json_response({"offers": sorted(rows, key=lambda o: o["dph_total"])})

    async def _rent(self, request: web.Request) -> web.Response:
        offer_id = int(request.match_info["offer_id"])
        offer = next((o for o in OFFERS if o["id"] == offer_id), None)
        if offer is None or any(i["ask_id"] == offer_id for i in self.instances.values()):
            return web.json_response({"success": False, "error": "no_such_ask",
                                      "msg": f"Instance type {offer_id} is no longer available."}, status=404)
        body = await body_of(request)
        instance_id = next(self._ids)
        self.instances[instance_id] = {
            "id": instance_id, "ask_id": offer_id, "label": body.get("label"), "image_uuid": body["image"],
            "actual_status": None, "intended_status": "running", "cur_state": "running", "next_state": "running",
            "gpu_name": offer["gpu_name"], "num_gpus": offer["num_gpus"], "dph_total": offer["dph_total"],
            "ssh_host": "ssh4.vast.ai", "ssh_port": 30562, "public_ipaddr": None, "ports": {},
            "disk_space": body["disk"], "machine_id": offer["machine_id"], "_polls": 0,
            "_opened": [int(k.split(":")[-1]) for k in body.get("env", {}) if k.startswith("-p ")],
        }
        return web.json_response({"success": True, "new_contract": instance_id,
                                  "instance_api_key": "d15a0f3e9b7c4a21SECRETINSTANCEKEY"})

    def _public(self, inst: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in inst.items() if not k.startswith("_")}

    async def _list(self, request: web.Request) -> web.Response:
        rows = [self._public(i) for i in self.instances.values()]
        return web.json_response({"instances_found": len(rows), "instances": rows})

    async def _get(self, request: web.Request) -> web.Response:
        inst = self.instances.get(int(request.match_info["instance_id"]))
        if inst is None:
            return web.json_response({"instances": None})
        inst["_polls"] += 1
        if inst["_polls"] == 1:
            inst["actual_status"] = "loading"
        if inst["_polls"] > self.polls_until_ready:
            inst["actual_status"] = "running"
            inst["public_ipaddr"] = "74.48.78.46"
            # ssh_direct opens 22, and every "-p N:N" of the create's env is mapped to a random host port.
            opened = [22, *inst["_opened"]]
            inst["ports"] = {f"{p}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(40122 + i)}]
                             for i, p in enumerate(opened)}
        return web.json_response({"instances": self._public(inst)})

    async def _attach(self, request: web.Request) -> web.Response:
        instance_id = int(request.match_info["instance_id"])
        if instance_id not in self.instances:
            return web.json_response({"success": False, "error": "no_such_instance", "msg": "no instance"},
                                     status=404)
        self.keys.setdefault(instance_id, []).append((await body_of(request))["ssh_key"])
        return web.json_response({"success": True, "msg": "SSH key attached"})

    async def _destroy(self, request: web.Request) -> web.Response:
        if self.instances.pop(int(request.match_info["instance_id"]), None) is None:
            return web.json_response({"success": False, "error": "no_such_instance",
                                      "msg": "Instance does not exist"}, status=404)
        return web.json_response({"success": True})
