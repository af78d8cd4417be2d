"""GET /openrouter/models: the provider listing OpenRouter reads to route its users to us.

The shape is OpenRouter's provider model document (openrouter.ai/docs, "For Providers": the flat
format); tests/openrouter_provider_schema.json is the same contract as a JSON schema, and a test
validates the listing against it. Prices are USD per token as decimal strings (never floats).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

# OpenRouter's quantization names (its provider docs and SDKs' Quantization enum, less "unknown").
Quantization = Literal["int4", "int8", "fp4", "fp6", "fp8", "fp16", "bf16", "fp32"]
# OpenRouter's supported_features values.
Feature = Literal["tools", "json_mode", "structured_outputs", "logprobs", "web_search", "reasoning"]
# USD per token, exact: "0.00000014", "0".
UsdPerToken = Annotated[str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]*)(\.[0-9]*[1-9])?$")]
CountryCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]


class OpenRouterPricing(msgspec.Struct):
    prompt: UsdPerToken
    completion: UsdPerToken
    image: UsdPerToken  # per input image; "0": text only
    request: UsdPerToken  # a fixed fee per request; "0": none
    # A prompt token the engine found in its prefix cache: billed like any prompt token here.
    input_cache_read: UsdPerToken


class OpenRouterSlug(msgspec.Struct):
    slug: str  # the model's page on OpenRouter, "meta-llama/llama-3.1-8b-instruct"


class Datacenter(msgspec.Struct):
    country_code: CountryCode  # ISO 3166-1 alpha-2


class OpenRouterModel(msgspec.Struct, omit_defaults=True):
    id: str  # what OpenRouter sends back to us as `model`
    hugging_face_id: str
    name: str
    created: int  # Unix seconds the model was published
    input_modalities: list[str]
    output_modalities: list[str]
    quantization: Quantization  # what the fleet's engines run for it
    context_length: int  # the max_model_len the fleet serves (what /v1/models advertises)
    max_output_length: int
    pricing: OpenRouterPricing
    supported_sampling_parameters: list[str]
    supported_features: list[Feature]
    description: str
    openrouter: OpenRouterSlug
    datacenters: list[Datacenter]
    is_ready: bool
    # Completion tokens per minute the routable replicas decode together at full batch; absent
    # when no replica's speed is known (neither measured by its check nor in the catalogue).
    capacity_tpm: int | None = None


class OpenRouterListing(msgspec.Struct):
    data: list[OpenRouterModel]
