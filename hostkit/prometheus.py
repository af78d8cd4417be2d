"""Read vLLM's Prometheus text (/metrics) into the per-model `EngineMetrics` of the wire protocol.

Only the few vLLM names the router uses are read; everything else is skipped. Samples of one
model that differ in other labels (several engines behind one server) are summed, except the
KV-cache fill, where the fullest engine is what limits the model.
"""

from __future__ import annotations

import math
import re

from hostkit.protocol import EngineMetrics

_SAMPLE = re.compile(
    r'^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)'
    r'(?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?'  # label values may hold } and escaped quotes
    r'\s+(?P<value>\S+)'
)
_LABEL = re.compile(r'(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")

# metric name -> EngineMetrics field. gpu_cache_usage_perc is the name before vLLM 0.7.
_COUNTS = {
    "vllm:num_requests_running": "num_requests_running",
    "vllm:num_requests_waiting": "num_requests_waiting",
    "vllm:prompt_tokens_total": "prompt_tokens_total",
    "vllm:generation_tokens_total": "generation_tokens_total",
}
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def _unescape(value: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse_engine_metrics(text: str) -> dict[str, EngineMetrics]:
    """Per `model_name` label, the vLLM metrics found in `text` (missing ones stay 0)."""
    counts: dict[str, dict[str, float]] = {}
    kv: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        name = m.group("name")
        if name not in _COUNTS and name not in _KV:
            continue
        labels = {lm.group("key"): _unescape(lm.group("value")) for lm in _LABEL.finditer(m.group("labels") or "")}
        model = labels.get("model_name")
        try:
            value = float(m.group("value"))
        except ValueError:
            continue
        if model is None or math.isnan(value):
            continue
        per_model = counts.setdefault(model, {})
        if name in _KV:
            kv[model] = max(kv.get(model, 0.0), value)
        else:
            per_model[_COUNTS[name]] = per_model.get(_COUNTS[name], 0.0) + value
    return {
        model: EngineMetrics(
            **{field: round(v) for field, v in fields.items()},
            kv_cache_usage_perc=kv.get(model, 0.0),
        )
        for model, fields in counts.items()
    }
