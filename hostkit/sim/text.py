"""What the simulated engine "reads" and "writes": token counts and deterministic output text.

Prompt tokens (no tokenizer, so a fixed rule that every component can reproduce):
- text: ceil(whitespace-separated words x 1.3), computed in integers, at least 1 for a
  completion prompt (a real tokenizer always adds a BOS token);
- chat: the same count over every message's text, plus 4 per message (role and template tokens).

- token ids (a completion prompt given as ids): one token each; id i reads as vocabulary word i % 64.

Output: one vocabulary word per token, chosen by blake2b over (model, seed, choice, prompt), so the
same request always gets the same text and a different seed gets another. Structured output (JSON)
is cut into tokens by `json_tokens`: a word, or one punctuation character, with the space before it.

Logprobs: the sampled token is always the most likely; its logprob and its alternatives (other
vocabulary words, in the same leading-space form) come from blake2b over the request and the
position, so they are the same on every run and their probabilities sum to less than 1.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

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


def decode_token_ids(ids: Iterable[int]) -> str:
    """The text a token-id prompt stands for (what echo shows, and what output is derived from)."""
    return "".join(_VOCAB[i & 63] if n == 0 else _LATER[i & 63] for n, i in enumerate(ids))


_PIECES = re.compile(r"\s*\S+")


def prompt_tokens(text: str, count: int) -> list[str]:
    """`text` cut into `count` tokens (its counted prompt tokens), for echo with logprobs: a word
    each, longer words split in two until there are enough. Joined, they give `text` again."""
    pieces = _PIECES.findall(text) or [text]
    if len(pieces) > 1 or pieces[0] != text:
        pieces[-1] += text[len("".join(pieces)):]  # trailing whitespace stays with the last word
    extra = count - len(pieces)
    if extra > 0:
        step = len(pieces) / extra
        split_at = {int(k * step) for k in range(extra)}
        out: list[str] = []
        for i, piece in enumerate(pieces):
            if i in split_at:
                mid = max(1, len(piece) // 2)
                out += [piece[:mid], piece[mid:]]
            else:
                out.append(piece)
        pieces = out
    while len(pieces) < count:  # fewer words than splits could make: empty tokens (BOS, template)
        pieces.insert(0, "")
    return pieces[:count] if len(pieces) > count else pieces


_JSON_TOKENS = re.compile(r"\s*(?:\w+|[^\s\w])|\s+")


def json_tokens(text: str) -> list[str]:
    """Structured output as tokens: each word or punctuation character with the space before it."""
    return _JSON_TOKENS.findall(text)


def cut_at_stop(pieces: list[str], stop: Iterable[str]) -> tuple[list[str], int, str | None]:
    """Stop strings as vLLM applies them: the output ends at the first token after which the text
    holds a stop string, and the text is cut where that string begins (the string left out).

    Returns (the text of each generated token, as delivered: cut short or empty where the text was
    cut; the number of tokens generated; the stop string that ended it, or None)."""
    stops = [s for s in stop if s]
    if not stops:
        return pieces, len(pieces), None
    longest = max(len(s) for s in stops)
    text = ""
    for n, piece in enumerate(pieces):
        start = max(0, len(text) - longest + 1)
        text += piece
        found = [(i, s) for s in stops if (i := text.find(s, start)) >= 0]
        if found:
            cut, string = min(found)
            out, used = [], 0
            for p in pieces[:n + 1]:
                keep = max(0, min(len(p), cut - used))
                out.append(p[:keep])
                used += len(p)
            return out, n + 1, string
    return pieces, len(pieces), None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float | None  # None for a prompt's first token (nothing comes before it)
    top: list[tuple[str, float]]  # the most likely tokens at this position, the sampled one first


def token_logprobs(key: str, tokens: list[str], top: int) -> list[TokenLogprob]:
    """Deterministic logprobs for `tokens` generated under `key` (model, seed, choice, prompt),
    with the `top` most likely at each position (at least the sampled token)."""
    out = []
    for n, tok in enumerate(tokens):
        digest = hashlib.blake2b(f"{key}\0{n}".encode(), digest_size=32).digest()
        # p(sampled) in [0.5, 0.99]; each alternative takes a share of what is left, halving.
        p = 0.5 + 0.49 * digest[0] / 255
        lp = round(math.log(p), 6)
        spaced = tok[:1].isspace()
        words = [w for w in dict.fromkeys(_VOCAB[b & 63] for b in digest[1:]) if w != tok.strip()]
        alts, rest = [], 1.0 - p
        for k, word in enumerate(words[:max(top - 1, 0)]):
            share = rest * (0.4 + 0.1 * (digest[k + 1] & 3) / 3) / 2 ** k
            alts.append((" " + word if spaced else word, round(math.log(share), 6)))
        out.append(TokenLogprob(tok, lp, [(tok, lp), *alts]))
    return out
