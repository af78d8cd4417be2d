"""Reads the engines' /health and /metrics (vLLM's surface) for heartbeats and drain decisions, and
each served model's max_model_len from /v1/models (what the router checks requests against)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

import httpx
import msgspec

from hostkit.engines import EngineEndpoint
from hostkit.prometheus import parse_engine_metrics
from hostkit.protocol import EngineMetrics, ServedModel

log = logging.getLogger(__name__)


class _ModelCard(msgspec.Struct):
    id: str
    max_model_len: int | None = None  # vLLM's ModelCard has it; another server may not


class _ModelList(msgspec.Struct):
    data: list[_ModelCard]


_decode_models = msgspec.json.Decoder(_ModelList).decode


@dataclass(frozen=True)
class EngineReading:
    models: list[ServedModel]
    # Requests running or waiting on the engines; None when an engine could not be read, so that
    # a drain never counts an engine it cannot see as idle.
    in_flight: int | None


class EngineProbe:
    def __init__(self, endpoints: list[EngineEndpoint], engine_kind: str, timeout_s: float = 2.0,
                 verify: ssl.SSLContext | bool = True, engine_key: str | None = None) -> None:
        self._endpoints = endpoints
        self._kind = engine_kind
        # /metrics needs the engine key (a rented engine's port is public, and its figures are the
        # operator's business); /health does not, but the key costs nothing there.
        headers = {"Authorization": f"Bearer {engine_key}"} if engine_key else None
        # trust_env=False: a host's HTTP_PROXY must not capture calls to its own engine.
        self._http = httpx.AsyncClient(timeout=timeout_s, trust_env=False, verify=verify, headers=headers)
        # Per server, each model's max_model_len: read once the server is healthy, and again after
        # it was not (a relaunched engine may have been given another length).
        self._lengths: dict[str, dict[str, int]] = {}

    def set_endpoints(self, endpoints: list[EngineEndpoint]) -> None:
        """The engines after a change of the models served; the next read() reads these."""
        self._endpoints = list(endpoints)

    async def _read_server(self, url: str) -> tuple[bool, dict[str, EngineMetrics] | None]:
        try:
            health, metrics = await asyncio.gather(self._http.get(f"{url}/health"), self._http.get(f"{url}/metrics"))
        except httpx.HTTPError as exc:
            log.debug("engine at %s unreadable: %s", url, exc)
            self._lengths.pop(url, None)
            return False, None
        parsed = parse_engine_metrics(metrics.text) if metrics.status_code == 200 else None
        healthy = health.status_code == 200
        if not healthy:
            self._lengths.pop(url, None)
        elif url not in self._lengths:
            await self._read_lengths(url)
        return healthy, parsed

    async def _read_lengths(self, url: str) -> None:
        try:
            resp = await self._http.get(f"{url}/v1/models")
            if resp.status_code != 200:
                log.debug("engine at %s answered %d to /v1/models", url, resp.status_code)
                return
            cards = _decode_models(resp.content).data
        except (httpx.HTTPError, msgspec.MsgspecError) as exc:
            log.debug("engine at %s: /v1/models unreadable: %s", url, exc)
            return
        self._lengths[url] = {c.id: c.max_model_len for c in cards if c.max_model_len and c.max_model_len > 0}

    async def read(self) -> EngineReading:
        endpoints = self._endpoints  # as they were when the read began, should the models change during it
        urls = list(dict.fromkeys(e.local_url for e in endpoints))  # one read per server
        results = dict(zip(urls, await asyncio.gather(*(self._read_server(u) for u in urls)), strict=True))
        models: list[ServedModel] = []
        in_flight: int | None = 0
        for ep in endpoints:
            healthy, per_model = results[ep.local_url]
            metrics = per_model.get(ep.model) if per_model is not None else None
            if metrics is not None and ep.max_num_seqs is not None:
                # Not among vLLM's metrics: the agent knows it from the engine's configuration.
                metrics.max_num_seqs = ep.max_num_seqs
            models.append(ServedModel(model=ep.model, endpoint=ep.public_url, engine=self._kind, ready=healthy,
                                      metrics=metrics, max_model_len=self._lengths.get(ep.local_url, {}).get(ep.model)))
            if metrics is None:
                in_flight = None
            elif in_flight is not None:
                in_flight += metrics.num_requests_running + metrics.num_requests_waiting
        return EngineReading(models, in_flight)

    async def aclose(self) -> None:
        await self._http.aclose()
