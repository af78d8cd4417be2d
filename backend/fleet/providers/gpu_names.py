"""Provider GPU names to catalogue GPU ids (data/catalogue/gpus.toml).

Each cloud spells the same card its own way: RunPod "NVIDIA GeForce RTX 4090" or
"NVIDIA A100-SXM4-80GB", Vast.ai "RTX 4090" or "A100 SXM4" (memory only in gpu_ram), Lambda
"A100 (40 GB SXM4)". Names are reduced to a model token and, for cards sold with several memory
sizes, the memory decides. A card we do not know maps to None: the offer is still listed for
the operator to see, but never chosen automatically (select.py), since nothing vouches for how
vLLM runs on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from backend.catalogue import GpuType

_NOISE = {"NVIDIA", "GEFORCE", "TESLA"}
# Tokens after a consumer model number that make it a different card (3090 vs 3090 Ti).
_CONSUMER_SUFFIX = {"TI", "SUPER", "D"}
_MODELS = {
    "RTX4090": "rtx4090",
    "RTX3090": "rtx3090",
    "GTX1050TI": "gtx1050ti",
    "A10": "a10",
    "A10G": "a10g",
    "L4": "l4",
    "L40S": "l40s",
    "H100": "h100-80gb",
    "GH200": "gh200-96gb",
}
# A reported memory this far from the catalogue card's means a variant we do not list
# (H100 NVL has 94 GB): 10% absorbs GiB-vs-GB and the memory a driver reserves.
_VRAM_TOLERANCE = 0.10


def _tokens(name: str) -> list[str]:
    return [t for t in re.sub(r"[^A-Z0-9]+", " ", name.upper()).split() if t not in _NOISE]


def _memory_in_name(tokens: list[str]) -> float | None:
    """ "80GB" or "80 GB" in a name, as in "A100-SXM4-80GB" or "A100 (40 GB SXM4)"."""
    for i, tok in enumerate(tokens):
        m = re.fullmatch(r"(\d+)GB", tok)
        if m:
            return float(m.group(1))
        if tok.isdigit() and i + 1 < len(tokens) and tokens[i + 1] == "GB":
            return float(tok)
    return None


def _model_key(tokens: list[str]) -> str:
    if tokens[0] in ("RTX", "GTX") and len(tokens) > 1:
        key = tokens[0] + tokens[1]
        for tok in tokens[2:]:
            if tok not in _CONSUMER_SUFFIX:
                break
            key += tok
        return key
    return tokens[0]


def catalogue_gpu(name: str, vram_gb: float | None, gpus: Iterable[GpuType]) -> str | None:
    """The catalogue id of a provider's GPU name, or None when it is not a card we list.

    `vram_gb` is the memory per GPU the provider reports, if it does (None otherwise).
    """
    tokens = _tokens(name)
    if not tokens:
        return None
    by_id = {g.id: g for g in gpus}
    key = _model_key(tokens)
    memory = _memory_in_name(tokens) or vram_gb
    if key == "A100":
        if memory is None:
            return None  # 40 and 80 GB cards differ too much to guess
        gpu_id = "a100-80gb" if memory >= 60 else "a100-40gb"
    elif key == "H100" and "NVL" in tokens:
        return None
    else:
        gpu_id = _MODELS.get(key)
    card = by_id.get(gpu_id) if gpu_id else None
    if card is None:
        return None
    if memory is not None and abs(memory - card.vram_gb) > card.vram_gb * _VRAM_TOLERANCE:
        return None
    return card.id
