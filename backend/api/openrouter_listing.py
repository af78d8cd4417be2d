"""The OpenRouter provider listing, built from what the fleet serves now.

Every enabled model with at least one routable replica (one the balancer could choose now: active,
up, ready, hardware-checked, not ejected); a model without one is left out, so OpenRouter never
routes to us what we cannot serve. Each field, and where it comes from:
- static fields (created, modalities, description, slug): the catalogue's [model.openrouter];
- the licence: OpenRouter's schema has no field for it, so the description ends with one sentence
  naming it, its link, the notice it asks to show ("Built with Llama") and a fine-tune's base
  model's licence (`licence_sentence`);
- quantization: what the engines run. Agents do not report it, so it is what provisioning launches
  (backend/fleet/engine_specs.py: the model's default quantization; bf16 becomes fp16 on GPUs older
  than compute capability 8.0); with several replicas, the least precise one, since a request may
  land on any of them;
- context_length: the max_model_len /v1/models advertises (fleet.advertised_context);
- pricing: the quote a request made now would snapshot (/v1/models and charges agree), in USD per
  token, exact. Cached prompt tokens are billed like others, so input_cache_read is the prompt price;
- supported_sampling_parameters and supported_features: what the router passes through to vLLM and
  vLLM honours with the flags our engine specs launch it with (no tool-call or reasoning parser:
  `tools` and `reasoning` are not offered even where the model has them);
- datacenters: the [openrouter] settings for the hosts of its routable replicas;
- capacity_tpm: the routable replicas' decode capacity at full batch (backend/catalogue/capacity.py,
  from each host's measured single-stream speed, else the catalogue's), in tokens per minute.
"""

from __future__ import annotations

from backend.catalogue import Catalogue, ModelEntry
from backend.fleet.engine_specs import EngineSpecError, engine_spec
from backend.fleet.registry import Replica
from backend.metrics.projections import measured_capacity
from backend.pricing.quote import usd_per_token
from backend.settings import OpenRouterSettings
from backend.wire.openrouter import (
    Datacenter,
    OpenRouterListing,
    OpenRouterModel,
    OpenRouterPricing,
    OpenRouterSlug,
    Quantization,
)

# OpenRouter's sampling parameters, in its documentation's order.
OPENROUTER_SAMPLING = ("temperature", "top_p", "top_k", "min_p", "top_a", "frequency_penalty", "presence_penalty",
                       "repetition_penalty", "stop", "seed", "max_tokens", "logit_bias", "logprobs", "top_logprobs")
# What reaches the engine: the router validates some and forwards the body as is; vLLM has no top_a.
PASSED_SAMPLING = frozenset(OPENROUTER_SAMPLING) - {"top_a"}
# The engine honours these for every model, whatever the catalogue lists for it.
ENGINE_SAMPLING = frozenset({"max_tokens", "logit_bias", "logprobs", "top_logprobs"})
FEATURES = ("tools", "json_mode", "structured_outputs", "logprobs", "web_search", "reasoning")
# response_format json_object / json_schema (vLLM's guided decoding) and logprobs pass through.
PASSED_FEATURES = frozenset({"json_mode", "structured_outputs", "logprobs"})
ENGINE_FEATURES = frozenset({"logprobs"})
# Least precise first: a listing names the least precise quantization any replica runs.
PRECISION_ORDER: tuple[Quantization, ...] = ("int4", "fp4", "fp6", "int8", "fp8", "fp16", "bf16", "fp32")


def replica_quantization(catalogue: Catalogue, entry: ModelEntry, r: Replica) -> Quantization:
    """What `r`'s engine runs, in OpenRouter's names (see the module doc)."""
    quant = entry.default_quantization
    if r.host.gpu_type in catalogue.gpu_by_id:
        try:
            spec = engine_spec(catalogue, entry.id, r.host.gpu_type or "")
        except EngineSpecError:
            return quant
        if spec.dtype == "float16":
            return "fp16"
    return quant


def listing(catalogue: Catalogue, models, fleet, pricer, settings: OpenRouterSettings) -> OpenRouterListing:
    """The listing now. `models`: the ModelBook (which models are enabled); `pricer`: the quotes."""
    data = []
    for entry in catalogue.models:
        if not models.enabled(entry.id):
            continue
        reps = [r for r in fleet.replicas(entry.id) if fleet.routable_now(r)]
        if not reps:
            continue
        data.append(_model(catalogue, entry, reps, fleet, pricer, settings))
    return OpenRouterListing(data)


def _model(catalogue: Catalogue, entry: ModelEntry, reps: list[Replica], fleet, pricer,
           settings: OpenRouterSettings) -> OpenRouterModel:
    meta = entry.openrouter
    q = pricer.quote(entry)
    context = fleet.advertised_context(entry.id) or entry.context_length
    prompt = usd_per_token(q.prompt_per_mtok)
    pricing = OpenRouterPricing(prompt=prompt, completion=usd_per_token(q.completion_per_mtok), image="0",
                                request="0", input_cache_read=prompt)
    sampling = [p for p in OPENROUTER_SAMPLING
                if p in PASSED_SAMPLING and (p in meta.supported_sampling_parameters or p in ENGINE_SAMPLING)]
    features = [f for f in FEATURES
                if f in PASSED_FEATURES and (f in meta.supported_features or f in ENGINE_FEATURES)]
    quant = min((replica_quantization(catalogue, entry, r) for r in reps), key=PRECISION_ORDER.index)
    return OpenRouterModel(
        id=entry.id, hugging_face_id=entry.hf_id, name=entry.name, created=meta.created,
        input_modalities=list(meta.input_modalities), output_modalities=list(meta.output_modalities),
        quantization=quant, context_length=context, max_output_length=min(entry.max_output_tokens, context),
        pricing=pricing, supported_sampling_parameters=sampling, supported_features=features,
        description=f"{meta.description.rstrip()} {licence_sentence(entry)}",
        openrouter=OpenRouterSlug(meta.slug_for(entry.hf_id)),
        datacenters=[Datacenter(c) for c in _countries(reps, settings)], is_ready=True,
        capacity_tpm=_capacity_tpm(catalogue, reps))


def licence_sentence(entry: ModelEntry) -> str:
    """The description's last sentence, e.g. 'Licence: Llama 3.1 Community License Agreement
    (https://...); Built with Llama.'"""
    lic = entry.licence
    parts = [f"Licence: {lic.name} ({lic.url})"]
    if lic.base is not None:
        parts.append(f"base model {lic.base.model} under the {lic.base.name} ({lic.base.url})")
    if lic.notice:
        parts.append(lic.notice.rstrip("."))
    return "; ".join(parts) + "."


def _countries(reps: list[Replica], settings: OpenRouterSettings) -> list[str]:
    codes: set[str] = set()
    for r in reps:
        own = settings.host_countries.get(r.host.id) or settings.host_countries.get(r.host.name)
        codes.update([own] if own else settings.datacenters)
    return sorted(codes)


def _capacity_tpm(catalogue: Catalogue, reps: list[Replica]) -> int | None:
    """Decode tokens per minute the replicas give together at full batch; a replica whose speed is
    unknown adds nothing (the figure errs low), and None when none is known."""
    caps = [cap for cap, _ in (measured_capacity(catalogue, r) for r in reps) if cap is not None]
    if not caps:
        return None
    return int(sum(c.full_decode_tps for c in caps) * 60)
