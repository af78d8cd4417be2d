"""The README's commands as written: `./run.sh ARGS` hands ARGS to `tokenmill` (and nothing to the
installer), and the client example runs after `./run.sh` alone against a real `serve --local`."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


# -- run.sh ---------------------------------------------------------------------------------------


def fake_checkout(tmp_path: Path, stamp: str | None) -> Path:
    """run.sh and scripts/venv.sh in a checkout whose .venv only records what it is asked: its
    `python` logs pip's arguments, its `tokenmill` prints its own."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("run.sh", "scripts/venv.sh", "pyproject.toml"):
        shutil.copy2(ROOT / name, root / name)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/pip.log\n')
    (bin_dir / "tokenmill").write_text('#!/bin/sh\necho "tokenmill got: $*"\n')
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    if stamp is not None:
        digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
        (root / ".venv" / ".tokenmill-installed").write_text(f"{digest} {stamp}\n")
    return root


def run_sh(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(root / "run.sh"), *args], capture_output=True, text=True, timeout=60)


def test_run_sh_hands_its_arguments_to_tokenmill(tmp_path):
    root = fake_checkout(tmp_path, stamp=".[dev]")  # as test.sh left it: reused, not reinstalled
    for args in (["--readonly"], ["serve", "--local"], ["info"], []):
        done = run_sh(root, *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"tokenmill got: {' '.join(args)}".strip()
    assert not (tmp_path / "pip.log").exists(), (tmp_path / "pip.log").read_text()


def test_run_sh_installs_the_base_package_once(tmp_path):
    root = fake_checkout(tmp_path, stamp=None)
    done = run_sh(root, "--readonly")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "tokenmill got: --readonly"
    installs = [line for line in (tmp_path / "pip.log").read_text().splitlines() if " -e " in f" {line} "]
    assert installs == [f"-m pip install --quiet --disable-pip-version-check -e {root}"]
    assert run_sh(root, "info").stdout.strip() == "tokenmill got: info"
    assert len((tmp_path / "pip.log").read_text().splitlines()) == 2  # pip's upgrade and the install, once


# -- the client example ---------------------------------------------------------------------------


def readme_client_example() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "import openai" in b]
    return block


def test_run_sh_installs_the_sdk_the_readme_example_imports():
    """`./run.sh` installs the base package, no extra: the example's `openai` must be in it."""
    assert "openai" in readme_client_example()
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(re.match(r"openai\b", dep) for dep in meta["dependencies"])


def test_readme_client_example_runs_as_written(tmp_path):
    port = free_port()
    data = tmp_path / "data"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TOKENMILL_")},
           "TOKENMILL_DATA_DIR": str(data), "TOKENMILL_ADMIN_PORT": str(port), "TOKENMILL_LOCAL_TRAFFIC_RPS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "console.cli", "serve", "--local"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (data / "admin_token").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        admin = {"Authorization": f"Bearer {(data / 'admin_token').read_text().strip()}"}
        while time.monotonic() < deadline:  # the example's model has a replica ready
            try:
                models = httpx.get(f"{url}/admin/models", headers=admin).json()
                if any(m["id"] == "llama-3.1-8b-instruct" and m["replicas"] for m in models):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        # As written, from a checkout's root: data/ and .venv/ there, the router at 127.0.0.1:8640.
        checkout = tmp_path / "checkout"
        checkout.mkdir()
        (checkout / "data").symlink_to(data)
        (checkout / ".venv").symlink_to(Path(sys.prefix))
        script = readme_client_example().replace("127.0.0.1:8640", f"127.0.0.1:{port}")
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=checkout, capture_output=True,
                              text=True, timeout=120, env={k: v for k, v in env.items() if k != "TOKENMILL_DATA_DIR"})
        assert done.returncode == 0, done.stderr
        reply, usage = done.stdout.strip().split("\n", 1)
        assert reply.strip()  # the model's answer
        assert "llama-3.1-8b-instruct" in usage
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
