"""The shape of the shipped catalogues (data/catalogue/*.toml), validated on load.

Money fields are decimal strings in the files ("0.34") and integer nano-USD once loaded.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from backend.money import MAX_PRICE_NANO, parse_usd

Quantization = Literal["bf16", "fp8", "int4"]
SizeClass = Literal["tiny", "small", "medium", "large", "xlarge", "huge"]
Provider = Literal["runpod", "vast", "lambda", "local", "ssh", "community"]


def _usd(value: object) -> int:
    return parse_usd(value, what="price", max_nano=MAX_PRICE_NANO)


# Nano-USD parsed from a decimal string; a float in the file is refused with a clear message.
Usd = Annotated[int, BeforeValidator(_usd)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseLicence(Strict):
    """The licence of the model a fine-tune or distillation was trained from: it binds too."""

    model: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="The base model's Hugging Face id.")
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://")


class Licence(Strict):
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://")
    commercial_use: Literal["allowed", "restricted", "forbidden"]
    restrictions: str = Field(description="What the licence restricts, in plain words; empty if none.")
    attribution: str = Field(description="Text that must accompany the model's output or product; empty if none.")
    # The short mark shown wherever the model is offered (the OpenRouter listing's description, /pricing):
    # "Built with Llama". The attribution above says what else the licence asks.
    notice: str = Field(default="", max_length=200)
    base: BaseLicence | None = None  # fine-tunes and distillations: the base model's licence
    # Which text of the licence this is (a name like "llama3.1", or the licence's date): a client's
    # acknowledgement is of one version, and a new version needs a new one.
    version: str = Field(default="1", min_length=1, max_length=64, pattern=r"^[\w.+-]+$")
    # Whether a client must acknowledge the licence before its first request (POST /v1/me/licences/{model}).
    # None: decided from the terms (see requires_acknowledgement); the operator may override it.
    requires_acceptance: bool | None = None

    @property
    def requires_acknowledgement(self) -> bool:
        """The catalogue's word: restricted (or forbidden) commercial use or required attribution
        (Llama's community licence, Gemma's terms, Qwen's 72B licence) needs an acknowledgement;
        permissive licences (Apache-2.0, MIT) do not, unless the entry says so."""
        if self.requires_acceptance is not None:
            return self.requires_acceptance
        return self.commercial_use != "allowed" or bool(self.attribution.strip())


class PriceRange(Strict):
    """Market price per million tokens, as seen from other providers (the seeds' appendix)."""

    prompt_min: Usd
    prompt_max: Usd
    completion_min: Usd
    completion_max: Usd

    @model_validator(mode="after")
    def _ordered(self) -> PriceRange:
        if self.prompt_min > self.prompt_max:
            raise ValueError("prompt_min is above prompt_max")
        if self.completion_min > self.completion_max:
            raise ValueError("completion_min is above completion_max")
        return self


class ListPrice(Strict):
    """Our own list price per million tokens until the pricing engine quotes its own."""

    prompt: Usd
    completion: Usd


class OpenRouterMeta(Strict):
    """Fields of the `openrouter.ai/json` provider listing that are not derived elsewhere.

    id, hugging_face_id, name, context_length, max_output_length, quantization and pricing
    come from the model entry itself, so they cannot disagree with what we serve.
    """

    created: int = Field(description="Unix time the model was published.")
    input_modalities: list[Literal["text", "image", "file", "audio"]] = ["text"]
    output_modalities: list[Literal["text", "image", "embeddings"]] = ["text"]
    supported_sampling_parameters: list[str]
    supported_features: list[str]
    description: str = Field(min_length=1)
    datacenters: list[str] = Field(default_factory=list, description="ISO 3166 country codes.")
    # The model's page on OpenRouter ("meta-llama/llama-3.1-8b-instruct"): its slugs are not always
    # the Hugging Face id in lower case ("qwen/qwen-2.5-7b-instruct"). None: that lower-cased id.
    slug: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._:-]*$")

    def slug_for(self, hf_id: str) -> str:
        return self.slug or hf_id.lower()


class ModelEntry(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Our public model id (the API's `model`).")
    name: str = Field(min_length=1)
    hf_id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    family: str = Field(min_length=1)
    params: int = Field(gt=0, description="Total parameter count.")
    active_params: int | None = Field(default=None, gt=0, description="For MoE models: parameters active per token.")
    context_length: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    size_class: SizeClass
    vram_gb: dict[Quantization, float] = Field(description="Weights plus a working KV cache, per quantization.")
    default_quantization: Quantization
    checkpoints: dict[Quantization, Annotated[str, Field(pattern=r"^[\w.-]+/[\w.-]+$")]] = Field(
        default_factory=dict,
        description="Pre-quantized Hugging Face checkpoints vLLM serves at that quantization (int4 needs one; "
                    "fp8 without one is quantized while loading). See hostkit/engine_spec.py.")
    default: bool = Field(default=False, description="Served by the embedded local fleet.")
    licence: Licence
    openrouter: OpenRouterMeta
    market: PriceRange
    price: ListPrice

    @model_validator(mode="after")
    def _consistent(self) -> ModelEntry:
        if not self.vram_gb:
            raise ValueError("vram_gb needs at least one quantization")
        if self.default_quantization not in self.vram_gb:
            raise ValueError(f"default_quantization {self.default_quantization!r} has no vram_gb entry")
        if "bf16" in self.checkpoints:
            raise ValueError("checkpoints.bf16: bf16 is hf_id itself")
        if unsized := set(self.checkpoints) - set(self.vram_gb):
            raise ValueError(f"checkpoints given for {', '.join(sorted(unsized))} without a vram_gb entry")
        if any(v <= 0 for v in self.vram_gb.values()):
            raise ValueError("vram_gb values must be positive")
        if self.max_output_tokens > self.context_length:
            raise ValueError("max_output_tokens exceeds context_length")
        if self.active_params is not None and self.active_params > self.params:
            raise ValueError("active_params exceeds params")
        return self


class GpuType(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1)
    vram_gb: int = Field(gt=0)
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    memory_bandwidth_gbps: int = Field(gt=0)
    # Rough single-stream decode tokens/s for a model of each size class at its default
    # quantization; absent means the class does not fit or is not sensible on this card.
    decode_tps: dict[SizeClass, int]


class Offer(Strict):
    provider: Provider
    gpu: str
    gpu_count: int = Field(default=1, gt=0)
    price_per_hour: Usd
    kind: Literal["on_demand", "spot", "interruptible", "community", "reserved"] = "on_demand"
    source: Literal["catalogue"] = "catalogue"
    as_of: dt.date = Field(description="Date the catalogue price was read; live offers come from the provider.")
    note: str = ""


class ModelCatalogue(Strict):
    model: list[ModelEntry]


class GpuCatalogue(Strict):
    gpu: list[GpuType]
    offer: list[Offer]
