"""The tokenmill wheel the bootstrap playbook installs on a host.

settings.host_wheel names one; without it the wheel is built from the source checkout this
backend runs from, once per backend process, into <data_dir>/wheels/ (a host then runs exactly
the code the router runs). An installed backend (no checkout) needs host_wheel.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

BUILD_TIMEOUT_S = 300.0


class WheelError(RuntimeError):
    """No wheel to install: the message says what to set or fix."""


def source_checkout() -> Path | None:
    """The checkout this code runs from (pyproject.toml beside backend/), if it does."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "tokenmill"' in pyproject.read_text(encoding="utf-8"):
        return root
    return None


async def build_wheel(source: Path, into: Path, *, timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Build the tokenmill wheel of `source` into `into` (replacing an older build); its path."""
    await asyncio.to_thread(into.mkdir, parents=True, exist_ok=True)
    # With hatchling importable no network is needed; otherwise pip fetches it into an isolated build.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    with tempfile.TemporaryDirectory(dir=into, prefix=".build-") as tmp:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", *isolation,
            "-w", tmp, str(source), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)  # real I/O: pip in a subprocess
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise WheelError(f"building the tokenmill wheel from {source} took over {timeout_s:g} s; "
                             "build it yourself (pip wheel --no-deps .) and set host_wheel") from None
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        built = await asyncio.to_thread(_replace_build, Path(tmp), into) if proc.returncode == 0 else None
        if built is None:
            tail = "\n".join(out.decode(errors="replace").strip().splitlines()[-15:])
            raise WheelError(f"building the tokenmill wheel from {source} failed (pip wheel exit status "
                             f"{proc.returncode}); set host_wheel to a wheel you built:\n{tail}")
    return built


def _replace_build(tmp: Path, into: Path) -> Path | None:
    """Move the one wheel built in `tmp` into `into`, in place of older builds; None if there is not one."""
    built = sorted(tmp.glob("tokenmill-*.whl"))
    if len(built) != 1:
        return None
    for old in into.glob("tokenmill-*.whl"):
        old.unlink()
    return Path(shutil.move(built[0], into / built[0].name))


class WheelSource:
    """The wheel for hosts: settings.host_wheel, or one build from the checkout shared by every job."""

    def __init__(self, configured: Path | None, data_dir: Path) -> None:
        self.configured = configured
        self.into = data_dir / "wheels"
        self._built: Path | None = None
        self._lock = asyncio.Lock()

    def check(self) -> None:
        """Refuse at once (before renting anything) when there is no way to get a wheel."""
        if self.configured is not None:
            if not self.configured.is_file() or self.configured.suffix != ".whl":
                raise WheelError(f"host_wheel {self.configured} is not a wheel file (.whl)")
        elif source_checkout() is None:
            raise WheelError("this backend is not running from a source checkout, so it cannot build the "
                             "tokenmill wheel hosts install: set host_wheel (TOKENMILL_HOST_WHEEL) to a tokenmill "
                             ".whl of this version")

    async def get(self) -> Path:
        self.check()
        if self.configured is not None:
            return self.configured
        async with self._lock:  # jobs started together share one build
            if self._built is None or not self._built.is_file():
                source = source_checkout()
                assert source is not None  # check() said so
                self._built = await build_wheel(source, self.into)
            return self._built
