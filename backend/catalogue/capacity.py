"""What one replica can serve: the capacity model the simulator and the console's break-even read.

An engine's step reads every weight once for the whole batch (memory-bound) and computes for each
sequence in it (compute-bound). A step's time therefore grows with the batch b as
`t(b) = t1 * (1 + b / BATCH_SATURATION)`, so:

- one stream alone decodes at `decode_tps` (gpus.toml, the card's single-stream figure for the
  model's size class, or the same bandwidth estimate for a multi-GPU offer);
- a batch of b decodes `decode_tps * b / (1 + b / BATCH_SATURATION)` tokens/s together: linear at
  first, then flattening as compute catches up with the weight reads;
- each stream then runs at `decode_tps / (1 + b / BATCH_SATURATION)`: latency rises with load;
- the engine runs at most `slots` sequences at once (vLLM's max_num_seqs): its full decode rate
  is the batch rate at `slots`;
- a prompt is read in parallel (prefill), PREFILL_GAIN times faster than one stream decodes.

A request of p prompt and c completion tokens takes `p / prefill_tps + c / full_decode_tps`
seconds of the replica at full batch: its `work_s`. A replica's utilization is the share of its
time that work fills (`rate * work_s`), which is also what its engine reports as load (running
over slots), so the simulator, the autoscaler and the break-even speak of one utilization.

Constants, and why:
- BATCH_SATURATION = 64: the batch at which a step's compute time equals its weight reads. For an
  RTX 4090 at bf16 the ridge point is ~165 TFLOP/s / 1 TB/s = ~160 FLOP per byte read, i.e. a batch
  of ~160 at peak; kernels reach about 40 % of peak, hence ~64. Data-centre cards have similar ratios.
- PREFILL_GAIN = 200: Llama 3.1 8B prefills ~7-8 k tokens/s on an RTX 4090 (38 tok/s single stream).
- DEFAULT_SLOTS = 64: the batch most operators cap to keep each stream above ~15 tok/s.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.catalogue.schema import GpuType, ModelEntry

BATCH_SATURATION = 64.0
PREFILL_GAIN = 200.0
DEFAULT_SLOTS = 64
TENSOR_PARALLEL_EFFICIENCY = 0.85  # of each extra GPU's bandwidth (all-reduce between layers)
BANDWIDTH_EFFICIENCY = 0.6  # share of the card's memory bandwidth a decode step reaches (gpus.toml)
_BYTES_PER_WEIGHT = {"bf16": 2.0, "fp8": 1.0, "int4": 0.5}
_KV_OVERHEAD = 1.15  # models.toml: vram_gb = weights x 1.15


@dataclass(frozen=True, slots=True)
class Capacity:
    """One replica's speed: see the module docstring for the model."""

    decode_tps: float  # one stream alone, tokens/s
    slots: int = DEFAULT_SLOTS

    @property
    def prefill_tps(self) -> float:
        return self.decode_tps * PREFILL_GAIN

    def batch_tps(self, batch: float) -> float:
        """Completion tokens/s the replica decodes with `batch` sequences running."""
        return self.decode_tps * batch / (1.0 + batch / BATCH_SATURATION)

    def stream_tps(self, batch: float) -> float:
        """Tokens/s each of `batch` running sequences gets."""
        return self.decode_tps / (1.0 + max(batch, 1.0) / BATCH_SATURATION)

    @property
    def full_decode_tps(self) -> float:
        return self.batch_tps(self.slots)

    def work_s(self, prompt_tokens: float, completion_tokens: float) -> float:
        """Seconds of the replica at full batch that a request (or a sum of them) takes."""
        return prompt_tokens / self.prefill_tps + completion_tokens / self.full_decode_tps

    def requests_per_s(self, mean_prompt: float, mean_completion: float) -> float:
        """Requests/s of that mix the replica serves at utilization 1."""
        return 1.0 / self.work_s(mean_prompt, mean_completion)

    def tokens_per_s(self, mean_prompt: float, mean_completion: float) -> float:
        """Prompt + completion tokens/s of that mix at utilization 1."""
        return self.requests_per_s(mean_prompt, mean_completion) * (mean_prompt + mean_completion)

    def latency_s(self, utilization: float, prompt_tokens: float, completion_tokens: float) -> tuple[float, float]:
        """(time to first token, whole request) for one request at that utilization, without queueing."""
        batch = min(max(utilization, 0.0), 1.0) * self.slots
        ttft = prompt_tokens / self.prefill_tps
        return ttft, ttft + completion_tokens / self.stream_tps(batch)


def replica_capacity(model: ModelEntry, gpu: GpuType, gpu_count: int = 1, *,
                     slots: int = DEFAULT_SLOTS) -> Capacity | None:
    """The capacity of `model` at its default quantization on `gpu_count` x `gpu`; None when it does
    not fit there (its weights and working cache need more memory than the GPUs have)."""
    quant = model.default_quantization
    if model.vram_gb[quant] > gpu.vram_gb * gpu_count:
        return None
    single = gpu.decode_tps.get(model.size_class)
    if gpu_count == 1 and single is not None:
        decode = float(single)  # the catalogue's figure for this card and class
    else:
        # The same estimate gpus.toml's figures come from, for the model itself over all its GPUs.
        weights_gb = model.vram_gb[quant] / _KV_OVERHEAD
        if model.active_params is not None:  # a mixture of experts reads only its active experts
            weights_gb *= model.active_params / model.params
        bandwidth = gpu.memory_bandwidth_gbps * (1 + (gpu_count - 1) * TENSOR_PARALLEL_EFFICIENCY)
        decode = bandwidth * BANDWIDTH_EFFICIENCY / weights_gb
    return Capacity(decode_tps=decode, slots=slots)


def revenue_per_s_at_full(cap: Capacity, mean_prompt: float, mean_completion: float,
                          prompt_per_mtok: int, completion_per_mtok: int) -> float:
    """Nano-USD per second the replica earns at utilization 1 with that mix and those prices."""
    per_request = (mean_prompt * prompt_per_mtok + mean_completion * completion_per_mtok) / 1_000_000
    return cap.requests_per_s(mean_prompt, mean_completion) * per_request


def break_even_utilization(cost_per_hour_nano: int, revenue_per_s_full: float) -> float | None:
    """The utilization at which revenue pays the GPU; None when a full replica earns nothing."""
    if revenue_per_s_full <= 0:
        return None
    return cost_per_hour_nano / 3600.0 / revenue_per_s_full
