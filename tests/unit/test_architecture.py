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
    assert "4 kept, 0 broken" in proc.stdout


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_floors_list_every_part_of_backend_with_no_exceptions():
    """A new folder (or module) of backend/ must take a floor: the layers contract only checks what it
    names, so one left out could import anything."""
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    assert not layers.get("ignore_imports") and not layers.get("unmatched_ignore_imports_alerting")
    named = {part.strip() for floor in layers["layers"] for part in floor.replace(":", "|").split("|")}
    backend = ROOT / "backend"
    parts = {p.stem for p in backend.glob("*.py") if p.stem != "__init__"}
    parts |= {p.name for p in backend.iterdir() if (p / "__init__.py").exists()}
    assert parts == named, (f"not on a floor: {sorted(parts - named)}", f"no such part: {sorted(named - parts)}")


def test_base_install_does_not_pull_vllm_or_torch():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(meta["dependencies"]).lower()
    for heavy in ("vllm", "torch", "nvidia-ml-py"):
        assert heavy not in base
    host = " ".join(meta["optional-dependencies"]["host"]).lower()
    assert "vllm" in host and "nvidia-ml-py" in host
    assert meta["scripts"] == {"tokenmill": "console.cli:main", "tokenmill-host": "hostkit.cli:main"}
