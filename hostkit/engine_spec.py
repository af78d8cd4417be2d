"""What it takes to serve one model with vLLM: how to launch it, and the hardware it needs.

The backend computes an EngineSpec from its catalogue for the host's GPU
(backend/fleet/engine_specs.py); the agent's config carries it as a [[vllm.engines]] table
(hostkit/config.py); the agent launches `vllm_command(spec)`, and the hardware check compares
the host with `spec.requirements`.

The catalogue's quantization names become vLLM flags like this:
- bf16: the original checkpoint with --dtype bfloat16 (float16 on GPUs older than compute
  capability 8.0, which have no bfloat16; same size and speed).
- fp8: a pre-quantized FP8 checkpoint where the catalogue names one (vLLM reads the method from
  its config.json, so no flag); otherwise the original checkpoint with --quantization fp8, which
  quantizes while loading: the bf16 weights are downloaded and must fit in VRAM during the load.
- int4: always a pre-quantized AWQ or GPTQ checkpoint in hf_id (vLLM cannot quantize to 4 bits
  while loading); vLLM reads the method from the checkpoint and picks its fastest kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Quantization = Literal["bf16", "fp8", "int4"]
_CC_PATTERN = r"^\d+\.\d+$"


def compute_capability(text: str) -> tuple[int, int]:
    """Parse "8.9" into (8, 9), so that 10.0 sorts above 9.0."""
    major, minor = text.split(".")
    return int(major), int(minor)


class EngineRequirements(BaseModel):
    """The hardware a model needs at its quantization; what `tokenmill-host check` verifies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vram_gb: float = Field(gt=0, description="GPU memory needed, summed over the model's GPUs, that vLLM may use "
                                             "(total x gpu_memory_utilization)")
    min_compute_capability: str = Field(pattern=_CC_PATTERN, description="below this vLLM cannot run the model")
    native_compute_capability: str | None = Field(
        default=None, pattern=_CC_PATTERN,
        description="from here up the quantization runs on its fast kernels (fp8: native W8A8; int4: Marlin); "
                    "below, on slower ones")
    expected_decode_tps: float | None = Field(
        default=None, gt=0, description="catalogue estimate of single-stream decode tokens/s on this GPU type; "
                                        "None where the catalogue has none")
    weights_gb: float = Field(gt=0, description="download size of the checkpoint (disk needed in the HF cache)")


class EngineSpec(BaseModel):
    """One vLLM server for one model, on its own port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                       description="catalogue id; also --served-model-name, the name clients send and vLLM's "
                                   "metrics carry, and part of the log file's name")
    hf_id: str = Field(min_length=1, description="the checkpoint vLLM loads: a Hugging Face repo or a local directory")
    quantization: Quantization = Field(default="bf16", description="the catalogue's name for it (see module doc)")
    dtype: Literal["auto", "bfloat16", "float16"] = "auto"
    vllm_quantization: str | None = Field(default=None, description="--quantization; None lets vLLM read the "
                                                                     "method from the checkpoint")
    max_model_len: int | None = Field(default=None, ge=16, description="context length; None: the checkpoint's")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs the model is split over")
    enable_prefix_caching: bool = True
    port: int | None = Field(default=None, ge=0, le=65535,
                             description="None: the agent's engine_port plus this engine's position; 0: any free port")
    devices: list[int] | None = Field(default=None, description="CUDA_VISIBLE_DEVICES for this engine; "
                                                                "None: GPUs 0 .. tensor_parallel_size-1")
    extra_args: list[str] = Field(default_factory=list, description="appended to the vllm serve command as given")
    requirements: EngineRequirements

    @model_validator(mode="after")
    def _devices_match_parallelism(self) -> EngineSpec:
        if self.devices is not None and len(self.devices) != self.tensor_parallel_size:
            raise ValueError(f"devices lists {len(self.devices)} GPUs but tensor_parallel_size is "
                             f"{self.tensor_parallel_size}: give one device per GPU the model is split over")
        return self

    @model_validator(mode="after")
    def _agent_owns_the_key(self) -> EngineSpec:
        if any(a == "--api-key" or a.startswith("--api-key=") for a in self.extra_args):
            raise ValueError("extra_args must not set --api-key: the agent gives vLLM the host's engine key "
                             "(set engine_key in the agent's config to choose it)")
        return self

    @property
    def gpu_indices(self) -> list[int]:
        """The NVML indices of the GPUs this engine runs on."""
        return list(self.devices) if self.devices is not None else list(range(self.tensor_parallel_size))


def vllm_command(spec: EngineSpec, *, executable: str = "vllm", host: str = "127.0.0.1",
                 port: int | None = None, middleware: Sequence[str] = (),
                 tls: tuple[str, str] | None = None) -> list[str]:
    """argv for `vllm serve`; `port` overrides spec.port (the agent resolves None and 0 first);
    `middleware`: ASGI middleware import paths for vLLM's --middleware (the agent's engine-key guard);
    `tls`: (certificate file, private key file) to serve HTTPS with (hostkit/engine_tls.py)."""
    port = spec.port if port is None else port
    if not port:
        raise ValueError(f"{spec.model}: no port to launch vLLM on (spec.port is {spec.port!r})")
    argv = [executable, "serve", spec.hf_id,
            "--served-model-name", spec.model,
            "--host", host,
            "--port", str(port),
            "--dtype", spec.dtype,
            "--gpu-memory-utilization", f"{spec.gpu_memory_utilization:g}",
            "--tensor-parallel-size", str(spec.tensor_parallel_size)]
    if spec.vllm_quantization:
        argv += ["--quantization", spec.vllm_quantization]
    if spec.max_model_len:
        argv += ["--max-model-len", str(spec.max_model_len)]
    # Recent vLLM enables prefix caching by default; an explicit flag says the same on every version
    # (--no-enable-prefix-caching needs vLLM >= 0.8, where the flag became a boolean pair).
    argv.append("--enable-prefix-caching" if spec.enable_prefix_caching else "--no-enable-prefix-caching")
    for path in middleware:
        argv += ["--middleware", path]
    if tls is not None:
        argv += ["--ssl-certfile", tls[0], "--ssl-keyfile", tls[1]]
    return argv + list(spec.extra_args)
