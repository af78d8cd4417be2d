"""Lambda Cloud as its API reference describes it (https://docs-api.lambda.ai/api/cloud):
GET /instance-types, POST /instance-operations/launch, GET /instances[/{id}],
POST /instance-operations/terminate, GET/POST /ssh-keys; errors {"error": {code, message, suggestion}}.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.integration.providers.fake_cloud import FakeCloud, body_of


def instance_type(name: str, gpu_description: str, cents: int, gpus: int, regions: list[str]) -> dict[str, Any]:
    return {
        "instance_type": {
            "name": name, "description": f"{gpus}x {gpu_description}", "gpu_description": gpu_description,
            "price_cents_per_hour": cents,
            "specs": {"vcpus": 30 * gpus, "memory_gib": 200 * gpus, "storage_gib": 512 * gpus, "gpus": gpus},
        },
        "regions_with_capacity_available": [{"name": r, "description": r.upper()} for r in regions],
    }


INSTANCE_TYPES = {
    "gpu_1x_a100_sxm4": instance_type("gpu_1x_a100_sxm4", "A100 (40 GB SXM4)", 129, 1, ["us-east-1", "us-west-1"]),
    "gpu_8x_h100_sxm5": instance_type("gpu_8x_h100_sxm5", "H100 (80 GB SXM5)", 2392, 8, []),
    "gpu_1x_gh200": instance_type("gpu_1x_gh200", "GH200 (96 GB)", 149, 1, ["us-east-3"]),
    "gpu_1x_a6000": instance_type("gpu_1x_a6000", "RTX A6000 (48 GB)", 80, 1, ["us-south-1"]),
}


def error(code: str, message: str, suggestion: str | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "suggestion": suggestion}}


INSUFFICIENT_CAPACITY = error("instance-operations/launch/insufficient-capacity",
                              "Not enough capacity to fulfill launch request.",
                              "Choose an instance type with more availability, or try again later.")


class FakeLambda(FakeCloud):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instances: dict[str, dict[str, Any]] = {}
        self.ssh_keys: list[dict[str, Any]] = []
        self.polls_until_ready = 1
        self._ids = (f"0920582c7ff041399e34823a0be6{n:04d}" for n in itertools.count(1))

    def unauthorized(self) -> web.Response:
        return web.json_response(error("global/invalid-api-key", "API key was invalid, expired, or deleted.",
                                       "Check your API key or create a new one, then try again."), status=401)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/instance-types", self._types)
        app.router.add_post("/api/v1/instance-operations/launch", self._launch)
        app.router.add_get("/api/v1/instances", self._list)
        app.router.add_get("/api/v1/instances/{instance_id}", self._get)
        app.router.add_post("/api/v1/instance-operations/terminate", self._terminate)
        app.router.add_get("/api/v1/ssh-keys", self._keys)
        app.router.add_post("/api/v1/ssh-keys", self._add_key)

    async def _types(self, request: web.Request) -> web.Response:
        return web.json_response({"data": INSTANCE_TYPES})

    async def _launch(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        entry = INSTANCE_TYPES.get(body["instance_type_name"])
        if entry is None:
            return web.json_response(error("global/invalid-parameters", "Invalid instance type."), status=400)
        if body["region_name"] not in [r["name"] for r in entry["regions_with_capacity_available"]]:
            return web.json_response(INSUFFICIENT_CAPACITY, status=400)
        known = {k["name"] for k in self.ssh_keys}
        if not set(body["ssh_key_names"]) <= known:
            return web.json_response(error("global/invalid-parameters", "Invalid SSH key name."), status=400)
        instance_id = next(self._ids)
        self.instances[instance_id] = {
            "id": instance_id, "name": body.get("name"), "ip": None, "private_ip": None, "status": "booting",
            "ssh_key_names": body["ssh_key_names"], "file_system_names": [],
            "region": {"name": body["region_name"], "description": body["region_name"].upper()},
            "instance_type": entry["instance_type"], "hostname": None, "jupyter_token": "53968f128c4a4489b6",
            "jupyter_url": "https://jupyter-3ac4c5c6-9026.lambdaspaces.com/?token=53968f128c4a4489b6",
            "is_reserved": False, "_polls": 0,
        }
        return web.json_response({"data": {"instance_ids": [instance_id]}})

    def _public(self, inst: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in inst.items() if not k.startswith("_")}

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [self._public(i) for i in self.instances.values()]})

    async def _get(self, request: web.Request) -> web.Response:
        inst = self.instances.get(request.match_info["instance_id"])
        if inst is None:
            return web.json_response(error("global/object-does-not-exist", "Specified instance does not exist."),
                                     status=404)
        inst["_polls"] += 1
        if inst["_polls"] > self.polls_until_ready and inst["status"] == "booting":
            inst.update(status="active", ip="198.51.100.2", private_ip="10.0.2.100",
                        hostname="198-51-100-2.cloud.lambdalabs.com")
        return web.json_response({"data": self._public(inst)})

    async def _terminate(self, request: web.Request) -> web.Response:
        ids = (await body_of(request))["instance_ids"]
        if any(i not in self.instances for i in ids):
            return web.json_response(error("global/object-does-not-exist", "Specified instance does not exist."),
                                     status=404)
        done = []
        for i in ids:
            self.instances[i]["status"] = "terminated"
            done.append(self._public(self.instances[i]))
        return web.json_response({"data": {"terminated_instances": done}})

    async def _keys(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.ssh_keys})

    async def _add_key(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        if any(k["name"] == body["name"] for k in self.ssh_keys):
            return web.json_response(error("global/invalid-parameters", "SSH key name already in use."), status=400)
        key = {"id": f"key{len(self.ssh_keys) + 1:04d}", "name": body["name"], "public_key": body["public_key"]}
        self.ssh_keys.append(key)
        return web.json_response({"data": key})
