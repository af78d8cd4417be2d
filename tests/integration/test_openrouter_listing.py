"""GET /openrouter/models against a real router on loopback with simulated hosts registered through
the host API: the listing validates against the JSON schema written from OpenRouter's provider
documentation (tests/openrouter_provider_schema.json); only enabled models with a routable replica
are listed; prices are the current quote exactly; quantization, context, datacenters and capacity
are what the fleet reports."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import jsonschema
import msgspec
import pytest
from pydantic import ValidationError

from backend.api.openrouter_listing import licence_sentence
from backend.catalogue import load_catalogue
from backend.catalogue.capacity import Capacity, replica_capacity
from backend.pricing.quote import usd_per_token
from backend.settings import OpenRouterSettings
from hostkit import protocol
from hostkit.sim.engine import start_sim_engine
from tests.router_harness import FAST, SimHost, router_settings, running_router

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "openrouter_provider_schema.json").read_text())
LLAMA = "llama-3.1-8b-instruct"  # bf16, size class small
TINY = "qwen2.5-0.5b-instruct"  # bf16, size class tiny: fits a 4 GB GTX 1050 Ti (compute capability 6.1)
MISTRAL = "mistral-7b-instruct-v0.3"


@dataclass
class GpuHost(SimHost):
    """A simulated host that reports what a real agent does beyond SimHost: its catalogue GPU, its
    engines' max_num_seqs, and the decode speed its hardware check measured."""

    gpu_type: str | None = None
    max_num_seqs: int | None = None
    decode_tps: dict[str, float] = field(default_factory=dict)

    def _served(self) -> list[protocol.ServedModel]:
        metrics = protocol.EngineMetrics(max_num_seqs=self.max_num_seqs)
        return [msgspec.structs.replace(m, metrics=metrics) for m in super()._served()]

    def _check_results(self) -> list[protocol.CheckResult]:
        return [msgspec.structs.replace(c, decode_tps=self.decode_tps.get(c.model)) for c in super()._check_results()]

    async def register(self) -> None:
        await self.silence()  # registering again (an agent restarted) replaces its heartbeat loop
        body = protocol.Register(name=self.name, models=self._served(), agent_version="test", gpu_type=self.gpu_type,
                                 checks=self._check_results(), engine_key=self.engine_key)
        r = await self.router.http.post("/hosts/register", content=msgspec.json.encode(body),
                                        headers={"Authorization": f"Bearer {self.token}"})
        r.raise_for_status()
        self.task = asyncio.create_task(self._beat())


async def add_gpu_host(router, name: str, models: list[str], **host) -> GpuHost:
    key = secrets.token_urlsafe(32)
    engine = await start_sim_engine(models, timing=FAST, api_key=key)
    r = await router.http.post("/admin/hosts", json={"name": name, "provider": "local"}, headers=router.admin)
    r.raise_for_status()
    enrolled = r.json()
    sim = GpuHost(router, name, enrolled["token"], enrolled["host"]["id"], engine, models, engine_key=key, **host)
    router.hosts.append(sim)  # stopped with the router, even if registering fails
    await sim.register()
    return sim


@pytest.fixture
async def router(tmp_path):
    settings = router_settings(tmp_path, openrouter={"datacenters": ["US"], "host_countries": {"rig-de": "de"}})
    async with running_router(settings) as r:
        # A GTX 1050 Ti in Germany: measured 20 tok/s for the tiny model, 32 sequences at once.
        await add_gpu_host(r, "rig-de", [TINY], gpu_type="gtx1050ti", max_num_seqs=32, decode_tps={TINY: 20.0})
        # An RTX 4090 in the fleet's default country, nothing measured; Mistral failed its hardware check.
        await add_gpu_host(r, "rig-us", [LLAMA, TINY, MISTRAL], gpu_type="rtx4090", checks={MISTRAL: False})
        yield r


async def listed(router) -> dict[str, dict]:
    r = await router.http.get("/openrouter/models")  # no Authorization header at all
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    jsonschema.Draft202012Validator(SCHEMA).validate(body)
    return {m["id"]: m for m in body["data"]}


def test_the_schema_is_a_valid_draft_2020_12_schema_that_refuses_what_openrouter_does():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    v = jsonschema.Draft202012Validator(SCHEMA)
    good = {"id": "m", "hugging_face_id": "org/m", "name": "M", "created": 1, "input_modalities": ["text"],
            "output_modalities": ["text"], "quantization": "bf16", "context_length": 8, "max_output_length": 8,
            "pricing": {"prompt": "0.00000014", "completion": "0"}, "supported_sampling_parameters": ["temperature"],
            "supported_features": ["json_mode"], "description": "", "openrouter": {"slug": "org/m"},
            "datacenters": [{"country_code": "US"}], "is_ready": True}
    assert v.is_valid({"data": [good]})
    for bad in ({"quantization": "q4_k_m"}, {"pricing": {"prompt": 1.4e-7, "completion": "0"}},
                {"pricing": {"prompt": "1.4e-7", "completion": "0"}}, {"supported_features": ["vision"]},
                {"supported_sampling_parameters": ["mirostat"]}, {"datacenters": [{"country_code": "usa"}]}):
        assert not v.is_valid({"data": [good | bad]}), bad
    assert not v.is_valid({"data": [{k: x for k, x in good.items() if k != "pricing"}]})


async def test_lists_enabled_models_with_a_routable_replica_in_openrouters_schema(router):
    rows = await listed(router)
    assert set(rows) == {LLAMA, TINY}  # Mistral's only replica failed its check; the rest are not served
    catalogue = router.services.catalogue
    for model_id, row in rows.items():
        entry = catalogue.model_by_id[model_id]
        meta = entry.openrouter
        assert (row["hugging_face_id"], row["name"], row["created"]) == (entry.hf_id, entry.name, meta.created)
        # OpenRouter has no licence field: the description ends with one sentence naming it.
        assert row["description"] == f"{meta.description} Licence: {entry.licence.name} ({entry.licence.url})" + (
            f"; {entry.licence.notice}." if entry.licence.notice else ".")
        assert (row["input_modalities"], row["output_modalities"]) == (meta.input_modalities, meta.output_modalities)
        assert row["is_ready"] is True
        # What the router passes through and vLLM honours: no top_a (vLLM has none), no tools or
        # reasoning (our engines run no tool-call or reasoning parser).
        assert "top_a" not in row["supported_sampling_parameters"]
        assert {"temperature", "top_p", "max_tokens", "stop", "seed"} <= set(row["supported_sampling_parameters"])
        assert set(row["supported_features"]) == {"json_mode", "structured_outputs", "logprobs"}
    assert rows[LLAMA]["openrouter"]["slug"] == "meta-llama/llama-3.1-8b-instruct"
    assert rows[TINY]["openrouter"]["slug"] == "qwen/qwen2.5-0.5b-instruct"  # no slug in the catalogue: hf_id
    assert rows[LLAMA]["description"].endswith(
        "Licence: Llama 3.1 Community License Agreement "
        "(https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE); Built with Llama.")


def test_the_licence_sentence_names_a_fine_tunes_base_licence():
    entry = load_catalogue().model_by_id["deepseek-r1-distill-qwen-1.5b"]
    assert licence_sentence(entry) == (
        f"Licence: MIT License ({entry.licence.url}); base model Qwen/Qwen2.5-Math-1.5B under the Apache License "
        "2.0 (https://huggingface.co/Qwen/Qwen2.5-Math-1.5B/blob/main/LICENSE).")


async def test_quantization_datacenters_and_capacity_are_the_fleets(router):
    rows = await listed(router)
    catalogue = router.services.catalogue
    # bf16 runs as float16 on the GTX 1050 Ti (no bfloat16 before compute capability 8.0): the
    # model is listed at the least precise quantization one of its replicas runs.
    assert (rows[LLAMA]["quantization"], rows[TINY]["quantization"]) == ("bf16", "fp16")
    assert rows[LLAMA]["datacenters"] == [{"country_code": "US"}]
    assert rows[TINY]["datacenters"] == [{"country_code": "DE"}, {"country_code": "US"}]
    # Decode capacity at full batch: the measured 20 tok/s with 32 slots on rig-de, the catalogue's
    # RTX 4090 figure with vLLM's default 256 slots on rig-us.
    rtx4090 = catalogue.gpu_by_id["rtx4090"]
    on_4090 = {m: replica_capacity(catalogue.model_by_id[m], rtx4090, 1, slots=256) for m in (LLAMA, TINY)}
    assert rows[LLAMA]["capacity_tpm"] == int(on_4090[LLAMA].full_decode_tps * 60)
    both = Capacity(decode_tps=20.0, slots=32).full_decode_tps + on_4090[TINY].full_decode_tps
    assert rows[TINY]["capacity_tpm"] == int(both * 60) > rows[LLAMA]["capacity_tpm"] > 0


async def test_the_context_length_is_what_the_fleet_serves(router):
    rows = await listed(router)
    entry = router.services.catalogue.model_by_id[LLAMA]
    assert rows[LLAMA]["context_length"] == entry.context_length  # the sim hosts report no max_model_len
    for h in router.hosts:
        h.max_model_len = 4096  # their engines were restarted with a shorter context
        await h.register()
    rows = await listed(router)
    assert rows[LLAMA]["context_length"] == rows[TINY]["context_length"] == 4096
    assert rows[LLAMA]["max_output_length"] == min(entry.max_output_tokens, 4096)


async def test_prices_are_the_current_quote_exactly_and_follow_a_pinned_price(router):
    pricer, catalogue = router.services.pricer, router.services.catalogue
    r = await router.http.put(f"/admin/models/{LLAMA}/pricing", headers=router.admin,
                              json={"pinned": True, "prompt_usd": "0.21", "completion_usd": "0.123456789"})
    assert r.status_code == 200, r.text
    rows = await listed(router)
    for model_id, row in rows.items():
        q = pricer.quote(catalogue.model_by_id[model_id])
        p = row["pricing"]
        assert p["prompt"] == usd_per_token(q.prompt_per_mtok)
        assert p["completion"] == usd_per_token(q.completion_per_mtok)
        assert Decimal(p["prompt"]) * 10**15 == q.prompt_per_mtok  # nano-USD per 1M tokens = 1e-15 USD per token
        assert Decimal(p["completion"]) * 10**15 == q.completion_per_mtok
        assert p["input_cache_read"] == p["prompt"]  # a cached prompt token is billed like any other
        assert (p["image"], p["request"]) == ("0", "0")
    assert rows[LLAMA]["pricing"]["prompt"] == "0.00000021"
    assert rows[LLAMA]["pricing"]["completion"] == "0.000000123456789"


async def test_a_disabled_model_and_one_whose_replicas_cannot_take_traffic_are_absent(router):
    r = await router.http.post(f"/admin/models/{TINY}/disable", headers=router.admin)
    assert r.status_code == 200, r.text
    assert set(await listed(router)) == {LLAMA}
    r = await router.http.post(f"/admin/models/{TINY}/enable", headers=router.admin)
    assert r.status_code == 200, r.text
    assert set(await listed(router)) == {LLAMA, TINY}
    us = next(h for h in router.hosts if h.name == "rig-us")
    us.checks[LLAMA] = False  # its hardware check now fails: no replica of Llama can take traffic
    await us.register()
    rows = await listed(router)
    assert set(rows) == {TINY}
    assert rows[TINY]["datacenters"] == [{"country_code": "DE"}, {"country_code": "US"}]  # still routable there


def test_datacenter_settings_name_the_bad_code():
    assert OpenRouterSettings(datacenters=["us"], host_countries={"h": "de"}).model_dump(
            include={"datacenters", "host_countries"}) == {
        "datacenters": ["US"], "host_countries": {"h": "DE"}}
    with pytest.raises(ValidationError, match=r"host_countries\.rig-1: 'Germany' is not an ISO 3166-1 alpha-2"):
        OpenRouterSettings(host_countries={"rig-1": "Germany"})
    with pytest.raises(ValidationError, match="datacenters: 'USA'"):
        OpenRouterSettings(datacenters=["USA"])
