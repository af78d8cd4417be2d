"""How a catalogue model is served with vLLM on a catalogue GPU: the host agent's EngineSpec.

hostkit has no catalogue; the backend computes each host's specs here and writes them into the
agent's config ([[vllm.engines]] tables, `vllm_engines_toml`). The decisions, in one place:
- quantization: the model's default unless asked for; served as hostkit/engine_spec.py describes
  (a pre-quantized checkpoint from the catalogue's `checkpoints` where there is one; int4 only so).
- vram_gb: the catalogue's vram_gb at that quantization (weights + 15%). FP8 quantized while
  loading needs at least the bf16 weights' size, which vLLM loads before quantizing them.
- compute capability: vLLM needs 7.0; bf16 needs 8.0, so older cards get float16 (same size and
  speed); fp8 needs 8.0 (weight-only FP8 Marlin kernels), native W8A8 from 8.9; int4 needs 7.5
  (AWQ/GPTQ kernels), the fast Marlin ones from 8.0.
- expected_decode_tps: gpus.toml decode_tps for the model's size class, which assumes the class's
  default quantization: scaled by bytes per weight when the model is served at another one
  (decoding reads every weight once per token). None where the class has no figure for the card
  (it does not fit on one card), so the check then measures without a minimum.
- max_model_len: the model's context, capped at DEFAULT_MAX_MODEL_LEN: vLLM refuses to start
  unless one sequence of that length fits in the KV cache, and the 15% in vram_gb holds about that
  much for a typical model (Llama 3.1 8B: 2.4 GB of KV cache, some 18k tokens).
- weights_gb: parameters x bytes per weight of the checkpoint that is downloaded (bf16 for fp8
  quantized while loading).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from backend.catalogue.loader import Catalogue
from backend.catalogue.schema import GpuType, ModelEntry, Quantization, SizeClass
from hostkit.engine_spec import EngineRequirements, EngineSpec, compute_capability

BYTES_PER_WEIGHT: dict[Quantization, float] = {"bf16": 2.0, "fp8": 1.0, "int4": 0.5}
# The quantization gpus.toml's decode_tps assumes for each size class (see models.toml).
CLASS_QUANTIZATION: dict[SizeClass, Quantization] = {
    "tiny": "bf16", "small": "bf16", "medium": "fp8", "large": "int4", "xlarge": "int4", "huge": "fp8",
}
DEFAULT_MAX_MODEL_LEN = 16384
VLLM_MIN_CC = "7.0"


class EngineSpecError(ValueError):
    """The model cannot be served as asked; the message says what to change."""


def engine_spec(catalogue: Catalogue, model_id: str, gpu_id: str, gpu_count: int = 1, port: int | None = None, *,
                quantization: Quantization | None = None, max_model_len: int | None = None,
                gpu_memory_utilization: float = 0.9, extra_args: Sequence[str] = ()) -> EngineSpec:
    """The spec for serving `model_id` on `gpu_count` x `gpu_id` (tensor parallel over all of them)."""
    model = catalogue.model_by_id.get(model_id)
    if model is None:
        raise EngineSpecError(f"unknown model {model_id!r}: not in the catalogue's models.toml")
    gpu = catalogue.gpu_by_id.get(gpu_id)
    if gpu is None:
        raise EngineSpecError(f"unknown GPU {gpu_id!r}: gpus.toml lists {', '.join(catalogue.gpu_by_id)}")
    if gpu_count < 1:
        raise EngineSpecError(f"gpu_count must be at least 1, got {gpu_count}")
    quant = quantization or model.default_quantization
    if quant not in model.vram_gb:
        raise EngineSpecError(f"{model_id} has no {quant} size in the catalogue (vram_gb lists "
                              f"{', '.join(model.vram_gb)})")
    checkpoint = model.checkpoints.get(quant)
    if quant == "int4" and checkpoint is None:
        raise EngineSpecError(f"{model_id} at int4 needs a pre-quantized AWQ or GPTQ checkpoint: add "
                              f"checkpoints = {{ int4 = \"<org>/<repo>\" }} to it in models.toml")

    quantize_on_load = quant == "fp8" and checkpoint is None
    on_disk: Quantization = "bf16" if quantize_on_load else quant
    weights_gb = model.params * BYTES_PER_WEIGHT[on_disk] / 1e9
    vram_gb = model.vram_gb[quant]
    if quantize_on_load:
        vram_gb = max(vram_gb, weights_gb)
    min_cc, native_cc = _compute_capabilities(quant, gpu)
    dtype = "auto"
    if quant == "bf16":
        dtype = "bfloat16" if compute_capability(gpu.compute_capability) >= (8, 0) else "float16"
    return EngineSpec(
        model=model.id,
        hf_id=checkpoint or model.hf_id,
        quantization=quant,
        dtype=dtype,
        vllm_quantization="fp8" if quantize_on_load else None,
        max_model_len=served_context(model, max_model_len),
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=gpu_count,
        port=port,
        extra_args=list(extra_args),
        requirements=EngineRequirements(
            vram_gb=round(vram_gb, 1),
            min_compute_capability=min_cc,
            native_compute_capability=native_cc,
            expected_decode_tps=expected_decode_tps(model, gpu, quant),
            weights_gb=round(weights_gb, 1),
        ),
    )


def served_context(model: ModelEntry, max_model_len: int | None = None) -> int:
    """The max_model_len an engine serves `model` with: what its host agent will report, and what the
    router then advertises and checks requests against (a simulated host may be given it too)."""
    return min(model.context_length, max_model_len or DEFAULT_MAX_MODEL_LEN)


def _compute_capabilities(quant: Quantization, gpu: GpuType) -> tuple[str, str | None]:
    """(minimum, native) compute capability for the quantization."""
    if quant == "fp8":
        return "8.0", "8.9"
    if quant == "int4":
        return "7.5", "8.0"
    # bf16: the card decides the dtype (float16 below 8.0), so only vLLM's own floor applies there.
    return ("8.0" if compute_capability(gpu.compute_capability) >= (8, 0) else VLLM_MIN_CC), None


def expected_decode_tps(model: ModelEntry, gpu: GpuType, quant: Quantization) -> float | None:
    base = gpu.decode_tps.get(model.size_class)
    if base is None:
        return None
    return round(base * BYTES_PER_WEIGHT[CLASS_QUANTIZATION[model.size_class]] / BYTES_PER_WEIGHT[quant], 1)


def vllm_engines_toml(specs: Sequence[EngineSpec]) -> str:
    """The [[vllm.engines]] tables of an agent config (hostkit/config.py), for the given specs."""
    blocks = []
    for spec in specs:
        data = spec.model_dump(exclude_none=True)
        requirements = data.pop("requirements")
        lines = ["[[vllm.engines]]", *(f"{k} = {_toml(v)}" for k, v in data.items()),
                 "[vllm.engines.requirements]", *(f"{k} = {_toml(v)}" for k, v in requirements.items())]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")
