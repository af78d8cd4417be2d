"""Per-model counters of the simulated engine, rendered as Prometheus text under vLLM's names.

The agent (and anything else that scrapes vLLM) reads these exactly as it reads a real vLLM's
/metrics: `vllm:*` names with a `model_name` label.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# vLLM's time-to-first-token buckets (seconds).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class ModelStats:
    running: int = 0
    waiting: int = 0
    kv_tokens: int = 0  # tokens held in the KV cache by running requests
    requests_total: int = 0  # generation requests received, including those a fault refused
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0
    ttft_counts: list[int] = field(default_factory=lambda: [0] * len(TTFT_BUCKETS))
    ttft_sum: float = 0.0
    ttft_count: int = 0

    def observe_ttft(self, seconds: float) -> None:
        i = bisect.bisect_left(TTFT_BUCKETS, seconds)
        if i < len(TTFT_BUCKETS):
            self.ttft_counts[i] += 1
        self.ttft_sum += seconds
        self.ttft_count += 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(stats: dict[str, ModelStats], kv_cache_tokens: int) -> str:
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, values: dict[str, float]) -> None:
        base = name.removesuffix("_total") if kind == "counter" else name
        lines.append(f"# HELP {base} {help_}")
        lines.append(f"# TYPE {base} {kind}")
        for model, v in values.items():
            lines.append(f'{name}{{model_name="{_label(model)}"}} {float(v)!r}')

    family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
           {m: s.running for m, s in stats.items()})
    family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
           {m: s.waiting for m, s in stats.items()})
    family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.",
           {m: min(1.0, s.kv_tokens / kv_cache_tokens) for m, s in stats.items()})
    family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
           {m: s.prompt_tokens_total for m, s in stats.items()})
    family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
           {m: s.generation_tokens_total for m, s in stats.items()})

    name = "vllm:time_to_first_token_seconds"
    lines.append(f"# HELP {name} Histogram of time to first token in seconds.")
    lines.append(f"# TYPE {name} histogram")
    for model, s in stats.items():
        lbl = f'model_name="{_label(model)}"'
        cumulative = 0
        for le, n in zip(TTFT_BUCKETS, s.ttft_counts, strict=True):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{le}",{lbl}}} {float(cumulative)!r}')
        lines.append(f'{name}_bucket{{le="+Inf",{lbl}}} {float(s.ttft_count)!r}')
        lines.append(f"{name}_count{{{lbl}}} {float(s.ttft_count)!r}")
        lines.append(f"{name}_sum{{{lbl}}} {s.ttft_sum!r}")
    return "\n".join(lines) + "\n"
