"""The layering rules of DESIGN.md, and the install promise (no torch for the operator)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    proc = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_base_install_does_not_pull_vllm_or_torch():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(meta["dependencies"]).lower()
    for heavy in ("vllm", "torch", "nvidia-ml-py"):
        assert heavy not in base
    host = " ".join(meta["optional-dependencies"]["host"]).lower()
    assert "vllm" in host and "nvidia-ml-py" in host
    assert meta["scripts"] == {"tokenmill": "console.cli:main", "tokenmill-host": "hostkit.cli:main"}
