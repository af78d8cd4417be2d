"""The simulated inference engine: vLLM's OpenAI-compatible surface without a GPU."""
