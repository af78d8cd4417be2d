"""Reading vLLM's Prometheus text into the protocol's EngineMetrics."""

from __future__ import annotations

from hostkit.prometheus import parse_engine_metrics

VLLM_TEXT = r'''
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 3.0
vllm:num_requests_running{engine="1",model_name="llama"} 2.0
vllm:num_requests_waiting{engine="0",model_name="llama"} 1.0
vllm:gpu_cache_usage_perc{engine="0",model_name="llama"} 0.25
vllm:gpu_cache_usage_perc{engine="1",model_name="llama"} 0.5
vllm:prompt_tokens_total{engine="0",model_name="llama"} 1.234e+06
vllm:generation_tokens_total{model_name="we\"ird}name"} 42.0
vllm:generation_tokens_created{model_name="llama"} 1.7e9
vllm:num_requests_waiting{model_name="llama",engine="2"} NaN
python_gc_objects_collected_total{generation="0"} 123.0
vllm:num_requests_running 9
'''


def test_reads_sums_and_takes_the_fullest_kv_cache() -> None:
    metrics = parse_engine_metrics(VLLM_TEXT)
    llama = metrics["llama"]
    assert llama.num_requests_running == 5  # two engines summed
    assert llama.num_requests_waiting == 1  # NaN skipped
    assert llama.kv_cache_usage_perc == 0.5  # older vLLM name, fullest engine
    assert llama.prompt_tokens_total == 1_234_000
    assert metrics['we"ird}name'].generation_tokens_total == 42  # escaped quote and } in a label value
    assert set(metrics) == {"llama", 'we"ird}name'}  # samples without model_name are ignored


def test_empty_or_garbage_text_gives_nothing() -> None:
    assert parse_engine_metrics("") == {}
    assert parse_engine_metrics("not prometheus at all\n{}") == {}
