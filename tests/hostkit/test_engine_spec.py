"""`vllm serve` command lines from engine specs."""

from __future__ import annotations

import pytest

from hostkit.engine_spec import EngineSpec, compute_capability, vllm_command

REQUIREMENTS = {"vram_gb": 18.5, "min_compute_capability": "8.0", "weights_gb": 16.1}


def spec(**over: object) -> EngineSpec:
    return EngineSpec.model_validate({"model": "llama-3.1-8b-instruct", "hf_id": "meta-llama/Llama-3.1-8B-Instruct",
                                      "requirements": REQUIREMENTS, **over})


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_bf16_command() -> None:
    argv = vllm_command(spec(dtype="bfloat16", max_model_len=16384, port=8001), executable="/opt/vllm",
                        host="0.0.0.0")
    assert argv[:3] == ["/opt/vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert flag(argv, "--served-model-name") == "llama-3.1-8b-instruct"  # clients and metrics use our id
    assert (flag(argv, "--host"), flag(argv, "--port")) == ("0.0.0.0", "8001")
    assert flag(argv, "--dtype") == "bfloat16" and flag(argv, "--max-model-len") == "16384"
    assert flag(argv, "--gpu-memory-utilization") == "0.9" and flag(argv, "--tensor-parallel-size") == "1"
    assert "--quantization" not in argv and argv[-1] == "--enable-prefix-caching"


def test_quantization_parallelism_caching_and_extra_args() -> None:
    argv = vllm_command(spec(quantization="fp8", vllm_quantization="fp8", tensor_parallel_size=2,
                             gpu_memory_utilization=0.85, enable_prefix_caching=False,
                             extra_args=["--max-num-seqs", "64"]), port=9001)
    assert flag(argv, "--quantization") == "fp8" and flag(argv, "--tensor-parallel-size") == "2"
    assert flag(argv, "--gpu-memory-utilization") == "0.85" and "--max-model-len" not in argv
    assert argv[-3:] == ["--no-enable-prefix-caching", "--max-num-seqs", "64"]


def test_a_port_is_needed() -> None:
    with pytest.raises(ValueError, match="no port to launch vLLM on"):
        vllm_command(spec())
    assert flag(vllm_command(spec(port=8001), port=8005), "--port") == "8005"


def test_compute_capabilities_compare_as_numbers() -> None:
    assert compute_capability("10.0") > compute_capability("8.9") > compute_capability("8.6")
    assert spec(tensor_parallel_size=2).gpu_indices == [0, 1]
    assert spec(tensor_parallel_size=2, devices=[2, 3]).gpu_indices == [2, 3]
