"""Each cloud's spelling of a card maps to the catalogue's id; unknown cards map to None."""

from __future__ import annotations

import pytest

from backend.catalogue import load_catalogue
from backend.fleet.providers.gpu_names import catalogue_gpu

GPUS = load_catalogue().gpus


@pytest.mark.parametrize(("name", "vram_gb", "expected"), [
    # RunPod gpuTypes ids and memoryInGb
    ("NVIDIA GeForce RTX 4090", 24, "rtx4090"),
    ("NVIDIA GeForce RTX 3090", 24, "rtx3090"),
    ("NVIDIA A100-SXM4-80GB", 80, "a100-80gb"),
    ("NVIDIA A100 80GB PCIe", 80, "a100-80gb"),
    ("NVIDIA H100 80GB HBM3", 80, "h100-80gb"),
    ("NVIDIA H100 PCIe", 80, "h100-80gb"),
    ("NVIDIA L40S", 48, "l40s"),
    ("NVIDIA L4", 24, "l4"),
    ("NVIDIA H100 NVL", 94, None),
    ("NVIDIA L40", 48, None),
    ("NVIDIA RTX A6000", 48, None),
    ("NVIDIA GeForce RTX 3090 Ti", 24, None),
    ("NVIDIA GeForce RTX 4090 D", 24, None),
    # Vast.ai gpu_name with gpu_ram in GiB (it reports MiB: 24564 / 1024)
    ("RTX 4090", 23.99, "rtx4090"),
    ("A100 SXM4", 80.0, "a100-80gb"),
    ("A100 PCIE", 39.4, "a100-40gb"),
    ("A100 SXM4", None, None),  # 40 or 80 GB: not guessed
    ("H100 SXM", 79.6, "h100-80gb"),
    ("GTX 1050 Ti", 4.0, "gtx1050ti"),
    ("A10", 22.5, "a10"),
    # Lambda gpu_description
    ("A100 (40 GB SXM4)", None, "a100-40gb"),
    ("A100 (80 GB SXM4)", None, "a100-80gb"),
    ("H100 (80 GB SXM5)", None, "h100-80gb"),
    ("GH200 (96 GB)", None, "gh200-96gb"),
    ("A10 (24 GB PCIe)", None, "a10"),
    ("Tesla V100 (16 GB)", None, None),
    ("", None, None),
])
def test_catalogue_gpu(name, vram_gb, expected):
    assert catalogue_gpu(name, vram_gb, GPUS) == expected


def test_a_card_reported_with_far_other_memory_is_not_that_card():
    assert catalogue_gpu("RTX 4090", 48.0, GPUS) is None  # a modded 48 GB board is not the catalogue's 4090
