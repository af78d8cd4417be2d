"""The shipped playbooks end to end: a "host" (an install directory on this machine, reached
through a real sshd) is bootstrapped with the simulated engine against a real router, serves a
client request, is upgraded without a failed request, and is torn down leaving nothing behind."""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import shutil
import signal
import sys
import zipfile
from pathlib import Path

import openai
import pytest
from sqlalchemy import text

from backend.provision.playbook import load_named
from backend.provision.run_events import StepFailed, StepFinished, StepOutput, StepSkipped
from hostkit.engine_tls import ensure_engine_cert
from tests.ports import free_port
from tests.router_harness import router_settings, running_router

MODEL = "llama-3.1-8b-instruct"


def processes_mentioning(fragment: str) -> list[tuple[int, str]]:
    """Running processes whose command line contains `fragment`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if fragment in cmdline and state != "Z":
            found.append((int(proc.name), cmdline))
    return found


def kill_leftovers(fragment: str) -> None:
    """After a failed test: stop the agent and supervisor it started, so they do not outlive it."""
    for pid, _ in processes_mentioning(fragment):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def explain(events) -> str:
    failed = [e for e in events if isinstance(e, StepFailed)]
    return "\n".join(f"{e.step}: {e.reason}\n  " + "\n  ".join(e.output) for e in failed) or "no step failed"


class Events(list):
    def __call__(self, event) -> None:
        self.append(event)

    def of(self, kind) -> list:
        return [e for e in self if isinstance(e, kind)]


def rebuilt(wheel: Path, into: Path) -> Path:
    """The same wheel with different bytes (an archive comment): a new build to upgrade to."""
    into.mkdir()
    copy = into / wheel.name
    shutil.copy(wheel, copy)
    with zipfile.ZipFile(copy, "a") as z:
        z.comment = b"rebuilt for the upgrade test"
    return copy


async def test_bootstrap_serve_upgrade_and_teardown(tmp_path, runner, target, tokenmill_wheel,
                                                    shared_site_packages):
    host_root = tmp_path / "host"
    install_dir, config_file = host_root / "opt" / "tokenmill-host", host_root / "etc" / "tokenmill-host" / "agent.toml"
    try:
        async with running_router(router_settings(tmp_path / "router")) as router:
            enrolled = (await router.http.post("/admin/hosts", json={"name": "ssh-host", "provider": "ssh"},
                                               headers=router.admin)).json()
            host_id, token = enrolled["host"]["id"], enrolled["token"]
            common = {"install_dir": str(install_dir), "config_file": str(config_file)}
            variables = {
                **common, "engine": "sim", "models": [MODEL], "router_url": router.url, "host_token": token,
                "service_user": getpass.getuser(),  # the login user: the test creates no system user
                "wheel": tokenmill_wheel, "python": sys._base_executable,
                # pip comes from the shared packages: a venv without its own copy is made in a blink.
                "venv_options": ["--without-pip"],
                "pip_options": ["--no-index", "--no-cache-dir"], "shared_site_packages": str(shared_site_packages),
                "engine_host": "127.0.0.1", "engine_port": 0, "control_port": free_port(),
                "engine_tls": "on",  # as off loopback: the certificate is made on the host and pinned
            }
            bootstrap = load_named("bootstrap")

            events = Events()
            result = await runner.run(bootstrap, target, variables, on_event=events, host_id=host_id)
            assert result.outcome == "succeeded", explain(events)
            lines = [e.line for e in events.of(StepOutput)]
            assert any("systemd is not running on this host" in line for line in lines)
            assert token not in repr(events)
            assert (config_file.stat().st_mode & 0o777) == 0o600 and token in config_file.read_text()

            fleet = router.services.fleet
            host = fleet.host(host_id)
            assert fleet.is_up(host) and host.replicas[MODEL].engine == "sim"
            tls_dir = install_dir / "run" / "tls"
            assert host.replicas[MODEL].url.startswith("https://")
            assert host.engine_tls_sha256 == ensure_engine_cert(tls_dir).sha256
            assert (tls_dir / "engine-key.pem").stat().st_mode & 0o777 == 0o600
            # The agent reported its hardware check; the router hears of it with a heartbeat at most.
            assert await chosen(fleet, host)

            _, secret = await router.client_with_key()
            sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
            reply = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                      max_tokens=5)
            assert reply.usage.completion_tokens > 0
            await router.services.ledger.flush()
            async with router.services.engine.connect() as conn:
                served_by = (await conn.execute(text("SELECT host_id FROM usage_event"))).scalars().all()
            assert served_by == [host_id]

            # Re-running changes nothing: every step that does something is skipped as done.
            again = Events()
            result = await runner.run(bootstrap, target, variables, on_event=again, host_id=host_id)
            assert result.outcome == "succeeded", explain(again)
            acting = {s.name for s in bootstrap.steps if s.kind != "check"}
            assert acting <= {e.step for e in again.of(StepSkipped)}
            assert not acting & {e.step for e in again.of(StepFinished)}  # only checks ran
            assert fleet.is_up(host)

            # Upgrade to a new build while a client keeps asking, with a second host to serve meanwhile:
            # drained, restarted, back in rotation, and not one request failed or was refused.
            staying = await router.add_host("staying", [MODEL])
            upgrade = load_named("upgrade")
            new_wheel = rebuilt(tokenmill_wheel, tmp_path / "new")
            asking = asyncio.create_task(keep_asking(sdk))
            upgraded = Events()
            result = await runner.run(upgrade, target, {**common, "wheel": new_wheel, "drain_timeout_s": 60,
                                                        "pip_options": ["--no-index", "--no-cache-dir"]},
                                      on_event=upgraded, host_id=host_id)
            assert result.outcome == "succeeded", explain(upgraded)
            assert {"drain the agent", "install the new wheel", "restart the agent under tokenmill's supervisor"
                    } <= {e.step for e in upgraded.of(StepFinished)}
            # The drain was the old agent's own (asked on the host): the new agent starts undrained, so
            # "take requests again" finds it active and is skipped, or resumes it if asked meanwhile.
            assert "take requests again" in {e.step for e in upgraded.of((StepFinished, StepSkipped))}
            outcomes = await stop_asking(asking)
            assert outcomes and set(outcomes) == {"ok"}, outcomes
            new_sha = hashlib.sha256(new_wheel.read_bytes()).hexdigest()
            assert (install_dir / "run" / "running-wheel").read_text().split()[0] == new_sha
            assert fleet.status(host) == "active", (fleet.status(host), host.state, fleet.is_up(host),
                                                    {m: (r.check, r.ejected_until) for m, r in host.replicas.items()})
            (await router.http.post(f"/admin/hosts/{staying.host_id}/drain", headers=router.admin)).raise_for_status()
            assert await chosen(fleet, host)
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "again"}],
                                              max_tokens=5)
            await router.services.ledger.flush()
            async with router.services.engine.connect() as conn:
                last = (await conn.execute(text("SELECT host_id FROM usage_event ORDER BY id DESC LIMIT 1"))).scalar()
            assert last == host_id  # the upgraded host serves again

            teardown = load_named("teardown")
            gone = Events()
            result = await runner.run(teardown, target, {**common, "service_user": getpass.getuser()},
                                      on_event=gone, host_id=host_id)
            assert result.outcome == "succeeded", explain(gone)
            await sdk.close()
            assert not host.registered  # the agent drained and left the fleet
            assert processes_mentioning(str(install_dir)) == []
            assert not install_dir.exists() and not config_file.parent.exists()
            assert sorted(p.name for p in host_root.rglob("*")) == ["etc", "opt"]  # what the test itself made

            runs = await runner.runs.recent(host_id=host_id)
            assert [(r.playbook, r.outcome) for r in runs] == [
                ("teardown", "succeeded"), ("upgrade", "succeeded"), ("bootstrap", "succeeded"),
                ("bootstrap", "succeeded")]
            assert all(r.variables.get("host_token", "***") == "***" for r in runs)
    finally:
        kill_leftovers(str(install_dir))


async def chosen(fleet, host, timeout_s: float = 10.0) -> bool:
    """Whether the router comes to route MODEL to `host` within timeout_s."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        replica = fleet.choose(MODEL)
        if replica is not None and replica.host is host:
            return True
        await asyncio.sleep(0.05)
    return False


async def keep_asking(sdk: openai.AsyncOpenAI) -> list[str]:
    """Requests one after another until cancelled: "ok", or what went wrong."""
    outcomes: list[str] = []
    try:
        while True:
            try:
                await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}],
                                                  max_tokens=3)
                outcomes.append("ok")
            except openai.APIError as exc:
                outcomes.append(f"failed: {exc!r}")
                await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        return outcomes


async def stop_asking(task: asyncio.Task) -> list[str]:
    task.cancel()
    return await task


@pytest.fixture(autouse=True)
def _no_agent_outlives(tmp_path):
    yield
    kill_leftovers(str(tmp_path / "host"))
