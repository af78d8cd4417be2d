"""RunPod as its docs describe it: GraphQL gpuTypes for prices, REST v1 /pods for pods.

Shapes from https://docs.runpod.io/sdks/graphql/manage-pods ("List GPU types") and the REST
v1 OpenAPI (Pod, PodCreateInput; https://rest.runpod.io/v1/openapi.json).
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.integration.providers.fake_cloud import FakeCloud, body_of

GPU_TYPES = [
    {"id": "NVIDIA GeForce RTX 4090", "displayName": "RTX 4090", "memoryInGb": 24, "secureCloud": True,
     "communityCloud": True, "securePrice": 0.69, "communityPrice": 0.34, "secureSpotPrice": 0.35,
     "communitySpotPrice": 0.2, "maxGpuCount": 8},
    {"id": "NVIDIA A100-SXM4-80GB", "displayName": "A100 SXM", "memoryInGb": 80, "secureCloud": True,
     "communityCloud": False, "securePrice": 1.89, "communityPrice": None, "secureSpotPrice": 1.05,
     "communitySpotPrice": None, "maxGpuCount": 2},
    {"id": "NVIDIA RTX A6000", "displayName": "RTX A6000", "memoryInGb": 48, "secureCloud": False,
     "communityCloud": True, "securePrice": 0.76, "communityPrice": 0.49, "secureSpotPrice": None,
     "communitySpotPrice": 0.25, "maxGpuCount": 1},
]
NO_CAPACITY = {"error": "create pod: There are no longer any instances available with the requested "
                        "specifications. Please refresh and try again.", "status": 400}


class FakeRunPod(FakeCloud):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pods: dict[str, dict[str, Any]] = {}
        self.polls_until_ready = 1  # GETs of a new pod that still show it starting
        self._ids = (f"xedezhzb9la{n:03d}" for n in itertools.count(1))
        self._polls: dict[str, int] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/graphql", self._graphql)
        app.router.add_post("/v1/pods", self._create)
        app.router.add_get("/v1/pods", self._list)
        app.router.add_get("/v1/pods/{pod_id}", self._get)
        app.router.add_delete("/v1/pods/{pod_id}", self._delete)

    async def _graphql(self, request: web.Request) -> web.Response:
        query = (await body_of(request))["query"]
        if "gpuTypes" not in query:
            return web.json_response({"errors": [{"message": "Cannot query field"}]})
        return web.json_response({"data": {"gpuTypes": GPU_TYPES}})

    async def _create(self, request: web.Request) -> web.Response:
        body = await body_of(request)
        pod_id = next(self._ids)
        price = next(t["securePrice"] if body["cloudType"] == "SECURE" else t["communityPrice"]
                     for t in GPU_TYPES if t["id"] == body["gpuTypeIds"][0])
        pod = {
            "adjustedCostPerHr": price * body["gpuCount"], "aiApiId": None,
            "consumerUserId": "user_2PyTJrLzeuwfZilRZ7JhCQDuSqo", "containerDiskInGb": body["containerDiskInGb"],
            "costPerHr": f"{price * body['gpuCount']:.2f}", "desiredStatus": "RUNNING",
            "env": body["env"], "id": pod_id, "image": body["imageName"], "interruptible": body["interruptible"],
            "lastStatusChange": "Rented by User: Fri Jul 12 2024 15:14:40 GMT-0400", "locked": False,
            "machineId": "s194cr8pls2z", "memoryInGb": 62, "name": body["name"], "portMappings": {},
            "ports": body["ports"], "publicIp": None, "vcpuCount": 24, "volumeInGb": body["volumeInGb"],
            "volumeMountPath": "/workspace",
        }
        self.pods[pod_id] = pod
        self._polls[pod_id] = 0
        return web.json_response(pod, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        return web.json_response([p for p in self.pods.values() if name in (None, p["name"])])

    async def _get(self, request: web.Request) -> web.Response:
        pod = self.pods.get(request.match_info["pod_id"])
        if pod is None:
            return web.json_response({"error": "pod not found", "status": 404}, status=404)
        self._polls[pod["id"]] += 1
        if self._polls[pod["id"]] > self.polls_until_ready and pod["desiredStatus"] == "RUNNING":
            # Every exposed port ("8000/tcp") gets a public port of RunPod's choosing, SSH's first.
            pod["publicIp"] = "100.65.0.119"
            pod["portMappings"] = {p.split("/")[0]: 10341 + i for i, p in enumerate(pod["ports"])}
        return web.json_response(pod)

    async def _delete(self, request: web.Request) -> web.Response:
        if self.pods.pop(request.match_info["pod_id"], None) is None:
            return web.json_response({"error": "pod not found", "status": 404}, status=404)
        return web.Response(status=204)
