"""`tokenmill-host check` on a host not enrolled yet: no host token (nor router URL) in its config.
The hardware checks run; the router line says it was not checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENMILL_HOST_")}
    return subprocess.run([sys.executable, "-m", "hostkit.cli", "check", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=60)


def test_check_runs_without_a_host_token(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('engine = "sim"\nmodels = ["qwen2.5-0.5b-instruct"]\n[sim]\nspeed = 0\n')
    done = run_check(config)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split()[1:3] for line in done.stdout.splitlines()[3:] if line.strip()}
    assert lines["router"][0] == "SKIP" and lines["decode"] == ["speed", "PASS"], done.stdout
    assert "no host token" in done.stdout


def test_other_config_errors_still_stop_the_check(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('engine = "sim"\nmodels = ["qwen2.5-0.5b-instruct"]\ncontrol_port = "x"\n')
    done = run_check(config)
    assert done.returncode == 2
    assert "control_port" in done.stderr and "host_token" in done.stderr  # the original error, whole
