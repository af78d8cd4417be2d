"""Engine specs from the shipped catalogue: the vLLM flags and hardware requirements each
quantization implies, and the agent config tables that carry them to a host."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.catalogue import load_catalogue
from backend.fleet.engine_specs import EngineSpecError, engine_spec, vllm_engines_toml
from hostkit.check import gpu_lines
from hostkit.config import load_config
from hostkit.engine_spec import vllm_command
from hostkit.nvml import HostGpus
from hostkit.protocol import GpuTelemetry


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def one_gpu(total_mib: int, cc: str) -> HostGpus:
    return HostGpus(available=True, driver_version="550", cuda_version="12.4",
                    gpus=[GpuTelemetry(index=0, name="card", memory_total_mib=total_mib, compute_capability=cc)])


def test_bf16_serves_the_original_checkpoint(catalogue):
    spec = engine_spec(catalogue, "llama-3.1-8b-instruct", "rtx4090", 1, 8001)
    assert (spec.model, spec.hf_id, spec.dtype, spec.vllm_quantization) == (
        "llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "bfloat16", None)
    assert (spec.port, spec.tensor_parallel_size, spec.max_model_len, spec.enable_prefix_caching) == (8001, 1, 16384,
                                                                                                       True)
    r = spec.requirements
    assert (r.vram_gb, r.min_compute_capability, r.native_compute_capability, r.expected_decode_tps, r.weights_gb) \
        == (18.5, "8.0", None, 38.0, 16.1)
    assert "--served-model-name" in vllm_command(spec)


def test_cards_without_bfloat16_get_float16_and_the_vllm_floor(catalogue):
    spec = engine_spec(catalogue, "qwen2.5-0.5b-instruct", "gtx1050ti")
    assert spec.dtype == "float16" and spec.requirements.min_compute_capability == "7.0"
    # The Pascal card itself is below what vLLM runs on: the check says so.
    line = {x.name: x for x in gpu_lines(spec, one_gpu(4096, "6.1"))}["compute capability"]
    assert line.outcome == "fail" and line.required == ">= 7.0"


def test_fp8_from_a_prequantized_checkpoint_decodes_faster_than_its_class(catalogue):
    spec = engine_spec(catalogue, "gemma-2-9b-it", "rtx4090")
    assert spec.hf_id == "neuralmagic/gemma-2-9b-it-FP8" and spec.vllm_quantization is None
    assert spec.max_model_len == 8192  # the model's own context is shorter than the cap
    r = spec.requirements
    assert (r.min_compute_capability, r.native_compute_capability) == ("8.0", "8.9")
    assert r.expected_decode_tps == 76.0  # small class figure (bf16) doubled: half the bytes per token
    assert r.weights_gb == pytest.approx(9.2, abs=0.05)


def test_fp8_quantized_while_loading_needs_the_bf16_weights(catalogue):
    spec = engine_spec(catalogue, "qwen2.5-14b-instruct", "rtx4090")
    assert spec.hf_id == "Qwen/Qwen2.5-14B-Instruct" and spec.vllm_quantization == "fp8"
    assert "--quantization" in vllm_command(spec, port=8001)
    assert spec.requirements.vram_gb == spec.requirements.weights_gb == 29.5
    lines = {x.name: x for x in gpu_lines(spec, one_gpu(24564, "8.9"))}
    assert lines["vram"].outcome == "fail"  # a 24 GB card cannot load it; a 40 GB one can
    a100 = engine_spec(catalogue, "qwen2.5-14b-instruct", "a100-40gb")
    assert {x.name: x for x in gpu_lines(a100, one_gpu(40960, "8.0"))}["vram"].outcome == "pass"


def test_int4_needs_a_prequantized_checkpoint(catalogue):
    spec = engine_spec(catalogue, "llama-3.1-70b-instruct", "a100-80gb")
    assert spec.hf_id == "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4" and spec.vllm_quantization is None
    assert (spec.requirements.min_compute_capability, spec.requirements.native_compute_capability) == ("7.5", "8.0")
    assert spec.requirements.vram_gb == 40.6 and spec.requirements.expected_decode_tps == 35.0
    with pytest.raises(EngineSpecError, match=r"mistral-7b-instruct-v0.3 at int4 needs a pre-quantized .*checkpoints"):
        engine_spec(catalogue, "mistral-7b-instruct-v0.3", "rtx4090", quantization="int4")


def test_multi_gpu_and_no_single_card_estimate(catalogue):
    spec = engine_spec(catalogue, "llama-3.1-405b-instruct", "h100-80gb", 8)
    assert spec.tensor_parallel_size == 8 and spec.hf_id == "meta-llama/Llama-3.1-405B-Instruct-FP8"
    assert spec.requirements.expected_decode_tps is None  # "huge" never fits one card


def test_every_model_at_its_default_quantization_has_a_spec(catalogue):
    for model in catalogue.models:
        spec = engine_spec(catalogue, model.id, "h100-80gb", 8)
        assert spec.quantization == model.default_quantization, model.id


def test_unknown_names_are_refused_clearly(catalogue):
    with pytest.raises(EngineSpecError, match="unknown model 'gpt-9'"):
        engine_spec(catalogue, "gpt-9", "rtx4090")
    with pytest.raises(EngineSpecError, match=r"unknown GPU 'voodoo2'.*rtx4090"):
        engine_spec(catalogue, "phi-4", "voodoo2")
    with pytest.raises(EngineSpecError, match="gpu_count must be at least 1"):
        engine_spec(catalogue, "phi-4", "rtx4090", 0)


def test_engine_tables_load_as_the_agents_config(catalogue, tmp_path: Path):
    specs = [engine_spec(catalogue, "llama-3.1-8b-instruct", "rtx4090", port=8001),
             engine_spec(catalogue, "qwen2.5-14b-instruct", "rtx4090", port=8002, extra_args=["--max-num-seqs", "8"])]
    path = tmp_path / "agent.toml"
    path.write_text('router_url = "https://r.example"\nhost_token = "tmh-x"\nengine = "vllm"\n'
                    'gpu_type = "rtx4090"\n' + vllm_engines_toml(specs))
    config = load_config(path, env={})
    assert config.models == ["llama-3.1-8b-instruct", "qwen2.5-14b-instruct"]
    assert config.vllm.engines == specs
