"""What the simulated engine "reads" and "writes": token counts and deterministic output text.

Prompt tokens (no tokenizer, so a fixed rule that every component can reproduce):
- text: ceil(whitespace-separated words x 1.3), computed in integers, at least 1 for a
  completion prompt (a real tokenizer always adds a BOS token);
- chat: the same count over every message's text, plus 4 per message (role and template tokens).

Output: one vocabulary word per token, chosen by blake2b over (model, seed, choice, prompt), so the
same request always gets the same text and a different seed gets another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

CHAT_TOKENS_PER_MESSAGE = 4

# 64 words so that one digest byte picks one word without bias (256 % 64 == 0).
_VOCAB = (
    "the of and to in a is that for it as was with be by on not this are or from at which but have an "
    "they you were there one all we can has been if more when will would who so no time river stone light "
    "engine token market signal garden window silver morning harbor lantern orbit meadow copper velvet thunder quiet"
).split()
assert len(_VOCAB) == 64, len(_VOCAB)
_LATER = tuple(" " + w for w in _VOCAB)  # every token after the first carries its leading space


def count_text_tokens(text: str) -> int:
    words = len(text.split())
    return (words * 13 + 9) // 10  # ceil(words * 1.3) without a float


def count_completion_prompt_tokens(prompt: str) -> int:
    return max(1, count_text_tokens(prompt))


def count_chat_prompt_tokens(message_texts: Iterable[str]) -> int:
    texts = list(message_texts)
    return count_text_tokens(" ".join(texts)) + CHAT_TOKENS_PER_MESSAGE * len(texts)


def generate_tokens(model: str, prompt: str, seed: int, choice: int, count: int) -> list[str]:
    """`count` tokens of deterministic text; joining them gives the completion text."""
    key = hashlib.blake2b(f"{model}\0{seed}\0{choice}\0{prompt}".encode(), digest_size=32).digest()
    words: list[str] = []
    block = 0
    while len(words) < count:
        digest = hashlib.blake2b(block.to_bytes(8, "little"), key=key, digest_size=64).digest()
        words.extend(_LATER[b & 63] for b in digest)
        block += 1
    del words[count:]
    if words:
        words[0] = words[0][1:]
    return words


def cut_at_stop(tokens: list[str], stop: Iterable[str]) -> tuple[list[str], bool]:
    """Cut before the first token whose word is a stop string (whole words only, unlike vLLM's
    substring match, which is enough to produce finish_reason "stop" on demand)."""
    stops = {s.strip() for s in stop if s.strip()}
    if not stops:
        return tokens, False
    for i, tok in enumerate(tokens):
        if tok.strip() in stops:
            return tokens[:i], True
    return tokens, False
