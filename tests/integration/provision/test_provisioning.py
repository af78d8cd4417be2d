"""Provisioning end to end: a real router, a real sshd on loopback standing for the machine, the
real bootstrap and teardown playbooks, the real admin API and CLI; only the GPU cloud is a fake
(Vast.ai-shaped, on loopback) whose instance's SSH address is the local sshd.

The "machine" is an install directory under the test's tmp_path reached as the login user
(settings.provision_variables point install_dir and friends there), running the simulated engine.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path

import openai
import pytest
from aiohttp import web
from sqlalchemy import text

from backend.provision.hosts import ProvisionedHosts
from backend.provision.known_hosts import entry_name
from console.client import AdminClient, AdminError
from tests.integration.providers.fake_cloud import KEY, Fault
from tests.integration.providers.fake_vast import FakeVast
from tests.integration.provision.conftest import trust
from tests.integration.provision.sshd import openssh_fingerprint
from tests.integration.provision.test_bootstrap import kill_leftovers, processes_mentioning
from tests.ports import quiet_port
from tests.router_harness import Router, router_settings, running_router

MODEL = "llama-3.1-8b-instruct"
RENT, INSTANCE = "/api/v0/asks/{offer_id}/", "/api/v0/instances/{instance_id}/"
CHEAPEST_VAST = "11684738"  # RTX 4090 x1 at $0.2467/h (fake_vast.OFFERS)
JOB_TIMEOUT_S = 120.0


class VastOnLoopback(FakeVast):
    """Vast.ai whose running instances are reached over SSH at the test's sshd, and whose container
    ports in `mapped` are reached at other public ports (as Vast maps every -p port)."""

    def __init__(self, ssh_port: int, mapped: dict[int, int] | None = None) -> None:
        super().__init__()
        self.ssh_port = ssh_port
        self.mapped = mapped or {}

    async def _get(self, request: web.Request) -> web.Response:
        await super()._get(request)
        inst = self.instances.get(int(request.match_info["instance_id"]))
        if inst is None:
            return web.json_response({"instances": None})
        if inst["actual_status"] == "running":
            inst["public_ipaddr"] = "127.0.0.1"
            inst["ports"] = {f"{inside}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(public)}]
                             for inside, public in {22: self.ssh_port, **self.mapped}.items()
                             if inside == 22 or inside in inst["_opened"]}
        return web.json_response({"instances": self._public(inst)})


class PortForward:
    """A public port forwarded to a container's port on loopback: what a cloud's port mapping does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


def machine(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "host"
    return root / "opt" / "tokenmill-host", root / "etc" / "tokenmill-host" / "agent.toml"


def settings_for(tmp_path, keys, wheel, shared_site_packages, **overrides):
    install_dir, config_file = machine(tmp_path)
    variables = {
        "install_dir": str(install_dir), "config_file": str(config_file),
        "service_user": getpass.getuser(),  # the login user: the test creates no system user
        "python": sys._base_executable,
        # pip and the dependencies come from the test's own environment: a real install, no network.
        "venv_options": ["--without-pip"], "pip_options": ["--no-index", "--no-cache-dir"],
        "shared_site_packages": str(shared_site_packages),
        "engine_host": "127.0.0.1", "engine_port": 0, "control_port": quiet_port(),
        **overrides.pop("variables", {}),
    }
    return router_settings(
        tmp_path / "router", ssh_key_path=keys.client, ssh_public_key_path=keys.client.with_suffix(".pub"),
        host_wheel=wheel, provision_variables=variables, provision_poll_interval_s=0.05,
        provision_boot_timeout_s=30, host_key_timeout_s=60, provision_ready_timeout_s=30, **overrides)


async def serving(router: Router) -> Router:
    # The router listens on a port chosen at start: that is the URL hosts must reach it at.
    router.services.settings.public_url = router.url
    return router


async def finished(router: Router, job: dict, *, until=lambda j: j["state"] in ("succeeded", "failed"),
                   timeout_s: float = JOB_TIMEOUT_S) -> tuple[dict, list[dict]]:
    """Poll the job as the CLI does until `until`; the job and every event seen (and, if it never
    gets there, the agent's log beside them in the assertion)."""
    events: list[dict] = list(job.get("events", []))
    after = events[-1]["seq"] if events else 0
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        r = await router.http.get(f"/admin/jobs/{job['id']}", params={"after": after}, headers=router.admin)
        r.raise_for_status()
        job = r.json()
        events += job["events"]
        after = events[-1]["seq"] if events else after
        if until(job):
            return job, events
        assert asyncio.get_running_loop().time() < deadline, \
            f"job still {job['state']}:\n{story(events)}\n{agent_logs(router)}"
        await asyncio.sleep(0.1)


def agent_logs(router: Router) -> str:
    """The end of the test machine's agent log, if the agent was installed."""
    install_dir = router.services.settings.provision_variables.get("install_dir")
    logs = sorted(Path(str(install_dir)).glob("logs/*.log")) if install_dir else []
    return "\n".join(f"--- {p}:\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:]) for p in logs)


def story(events: list[dict]) -> str:
    return "\n".join(f"{e['kind']:>13} {e['text']}" for e in events)


async def ask(router: Router, secret: str, note: str) -> str:
    """One client request through the router; the host that served it."""
    sdk = openai.AsyncOpenAI(base_url=router.url + "/v1", api_key=secret, max_retries=0)
    try:
        reply = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": note}],
                                                  max_tokens=5)
    finally:
        await sdk.close()
    assert reply.usage.completion_tokens > 0
    await router.services.ledger.flush()
    async with router.services.engine.connect() as conn:
        return (await conn.execute(text("SELECT host_id FROM usage_event ORDER BY id DESC LIMIT 1"))).scalar()


async def until_routed(router: Router, host_id: str, timeout_s: float = 10.0) -> None:
    fleet = router.services.fleet
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (replica := fleet.choose(MODEL)) is None or replica.host.id != host_id:
        assert asyncio.get_running_loop().time() < deadline, f"{host_id} is not chosen for {MODEL}"
        await asyncio.sleep(0.05)


def assert_machine_clean(tmp_path: Path) -> None:
    install_dir, config_file = machine(tmp_path)
    assert processes_mentioning(str(install_dir)) == []
    assert not install_dir.exists() and not config_file.parent.exists()


@pytest.fixture(autouse=True)
def _no_agent_outlives(tmp_path):
    yield
    kill_leftovers(str(tmp_path / "host"))


# ------------------------------------------------------------------------------------------ ssh
async def test_an_ssh_machine_waits_for_its_host_key_serves_and_leaves_clean(
        tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    settings = settings_for(tmp_path, keys, tokenmill_wheel, shared_site_packages)
    async with running_router(settings) as router:
        await serving(router)
        http, admin, fleet = router.http, router.admin, router.services.fleet
        r = await http.post("/admin/provision", headers=admin, json={
            "model": MODEL, "provider": "ssh", "engine": "sim", "name": "my-box",
            "ssh_host": "127.0.0.1", "ssh_port": sshd.port, "ssh_user": getpass.getuser()})
        assert r.status_code == 202, r.text
        job, events = await finished(router, r.json(), until=lambda j: j["state"] != "running")

        # The machine's key is unknown: the job waits, showing the fingerprint OpenSSH computes.
        presented = openssh_fingerprint(keys.host_a.with_suffix(".pub"))
        assert job["state"] == "waiting_host_key", story(events)
        assert job["host_key"]["fingerprint"] == presented and job["host_key"]["port"] == sshd.port
        assert any(e["kind"] == "host_key" and presented in e["text"] for e in events)
        pending = (await http.get("/admin/host-keys/pending", headers=admin)).json()
        assert [(k["host"], k["port"], k["fingerprint"]) for k in pending] == [("127.0.0.1", sshd.port, presented)]
        host_id = job["host_id"]
        assert fleet.status(fleet.host(host_id)) == "down"  # enrolled, not serving yet

        # A wrong fingerprint is refused, naming both; the job keeps waiting.
        other = openssh_fingerprint(keys.host_b.with_suffix(".pub"))
        r = await http.post("/admin/host-keys/confirm", headers=admin,
                            json={"host": "127.0.0.1", "port": sshd.port, "fingerprint": other})
        assert r.status_code == 400 and other in r.text and presented in r.text, r.text
        await asyncio.sleep(0.3)
        job, more = await finished(router, job, until=lambda j: True)
        assert job["state"] == "waiting_host_key"

        r = await http.post("/admin/host-keys/confirm", headers=admin,
                            json={"host": "127.0.0.1", "port": sshd.port, "fingerprint": presented})
        assert r.status_code == 200 and r.json()["fingerprint"] == presented
        job, events = await finished(router, job)
        events = [*more, *events]
        assert job["state"] == "succeeded", f"{job['error']}\n{story(events)}"
        assert job["address"] == f"{getpass.getuser()}@127.0.0.1:{sshd.port}" and job["instance_id"] is None
        kinds = {e["kind"] for e in events}
        assert {"phase", "step_started", "step_finished", "output", "done"} <= kinds
        assert not any(router.services.admin_token in e["text"] or "tmh-" in e["text"] for e in events)

        host = fleet.host(host_id)
        assert host.name == "my-box" and host.provider == "ssh" and fleet.is_up(host)
        assert host.replicas[MODEL].check.passed
        await until_routed(router, host_id)
        _, secret = await router.client_with_key()
        assert await ask(router, secret, "hello") == host_id

        # Teardown through the API: drained, agent and files gone, host removed.
        r = await http.post(f"/admin/hosts/{host_id}/teardown", headers=admin)
        assert r.status_code == 202, r.text
        down, events = await finished(router, r.json())
        assert down["state"] == "succeeded", f"{down['error']}\n{story(events)}"
        phases = [e["text"] for e in events if e["kind"] == "phase"]
        assert phases[0].startswith("draining my-box") and any("teardown: succeeded" in p for p in phases)
        assert host.state == "removed" and not host.registered
        assert_machine_clean(tmp_path)

        runs = (await http.get("/admin/provision/runs", params={"host_id": host_id}, headers=admin)).json()
        assert [(r["playbook"], r["outcome"]) for r in runs] == [("teardown", "succeeded"), ("bootstrap", "succeeded")]
        jobs = (await http.get("/admin/jobs", headers=admin)).json()
        assert [(j["kind"], j["state"], j["events"]) for j in jobs] == [("provision", "succeeded", []),
                                                                         ("teardown", "succeeded", [])]
        again = await http.post(f"/admin/hosts/{host_id}/teardown", headers=admin)
        assert again.status_code == 409 and "torn down already" in again.json()["error"]["message"]


# ------------------------------------------------------------------------------------------ cloud, CLI
async def cli(router: Router, tmp_path: Path, *args: str, timeout_s: float = JOB_TIMEOUT_S) -> tuple[int, str]:
    """`tokenmill ARGS` as the operator runs it, against the router; its exit status and output."""
    exe = Path(sys.executable).with_name("tokenmill")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "console.cli"]
    port = router.url.rsplit(":", 1)[1]
    env = {**os.environ, "TOKENMILL_ADMIN_HOST": "127.0.0.1", "TOKENMILL_ADMIN_PORT": port,
           "TOKENMILL_ADMIN_TOKEN": router.services.admin_token, "TOKENMILL_DATA_DIR": str(tmp_path / "cli")}
    proc = await asyncio.create_subprocess_exec(*command, *args, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"tokenmill {' '.join(args)} did not end:\n{out.decode()}") from None
    return proc.returncode, out.decode()


async def test_a_rented_vast_machine_through_the_cli(tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    # The engine listens on a fixed container port, which Vast maps to another public port: the router
    # must reach it there (a real forwarder stands for the mapping), the agent itself on the engine port.
    engine_port = quiet_port()
    forward = PortForward(engine_port)
    await forward.start()
    fake = VastOnLoopback(sshd.port, {engine_port: forward.port})
    await fake.start()
    settings = settings_for(tmp_path, keys, tokenmill_wheel, shared_site_packages, vast_api_key=KEY,
                            vast_api_url=f"{fake.url}/api/v0", variables={"engine_port": engine_port})
    try:
        async with running_router(settings) as router:
            await serving(router)
            http, admin, fleet = router.http, router.admin, router.services.fleet
            # Demand first: a host already serving the model earns, so offers carry an expected profit.
            seed = await router.add_host("seed", [MODEL])
            _, secret = await router.client_with_key()
            assert await ask(router, secret, "demand") == seed.host_id
            before = await _margin_per_h(router)
            offers = (await http.get("/admin/offers", params={"model": MODEL}, headers=admin)).json()
            after = await _margin_per_h(router)
            assert [o["offer_id"] for o in offers["offers"]] == [CHEAPEST_VAST, "11684739", "11684740"]
            bases = {o["expected_profit_per_h_nano"] + o["price_per_hour_nano"] for o in offers["offers"]}
            assert len(bases) == 1 and before >= bases.pop() >= after > 0  # revenue/h less payouts, less the price
            assert any("RunPod has no API key" in u for u in offers["unavailable"])
            assert any("Lambda has no API key" in u for u in offers["unavailable"])

            rc, out = await cli(router, tmp_path, "offers", "--model", MODEL)
            assert rc == 0 and CHEAPEST_VAST in out and "RTX 4090 x1" in out and "$0.25" in out, out
            assert "unavailable: RunPod has no API key" in out and KEY not in out

            (await http.post(f"/admin/hosts/{seed.host_id}/drain", headers=admin)).raise_for_status()
            presented = openssh_fingerprint(keys.host_a.with_suffix(".pub"))
            rc, out = await cli(router, tmp_path, "provision", "--provider", "vast", "--model", MODEL,
                                "--engine", "sim", "--yes", "--accept-host-key", presented)
            assert rc == 0, out
            assert f"vast offer {CHEAPEST_VAST}: RTX 4090 x1" in out and f"confirmed ssh-ed25519 {presented}" in out
            assert "-> " in out and "OK " in out and KEY not in out

            (rent,) = fake.seen("PUT", RENT)
            assert rent.path == f"/api/v0/asks/{CHEAPEST_VAST}/"
            assert rent.body["env"] == {f"-p {engine_port}:{engine_port}": "1"}  # the port the engine listens on
            assert f"the engine's port {engine_port} is reached at 127.0.0.1:{forward.port}" in out
            (instance_id,) = fake.instances
            assert fake.keys[instance_id] == [keys.client.with_suffix(".pub").read_text().strip()]
            (host,) = [h for h in fleet.hosts() if h.provider == "vast"]
            assert host.cost_per_hour == 246_675_926 and fleet.is_up(host)
            record = await ProvisionedHosts(router.services.engine).get(host.id)
            assert (record.instance_id, record.ssh_port, record.state) == (str(instance_id), sshd.port, "serving")
            await until_routed(router, host.id)
            assert [r.url for r in host.replicas.values()] == [f"http://127.0.0.1:{forward.port}"]
            used = forward.connections
            assert await ask(router, secret, "on the rented machine") == host.id
            assert forward.connections > used  # the request went through the mapped public port

            rc, out = await cli(router, tmp_path, "teardown", host.name, "--yes")
            assert rc == 0, out
            assert f"destroyed Vast.ai instance {instance_id}" in out
            assert len(fake.seen("DELETE", INSTANCE)) == 1 and fake.instances == {}  # the cloud stopped billing
            assert host.state == "removed" and (await ProvisionedHosts(router.services.engine).get(host.id)).state \
                == "removed"
            assert_machine_clean(tmp_path)
    finally:
        await fake.stop()
        await forward.stop()


async def _margin_per_h(router: Router) -> int:
    r = await router.http.get(f"/admin/models/{MODEL}/metrics", headers=router.admin)
    rates = r.json()["rates"]
    return rates["revenue_per_h_nano"] - rates["payouts_per_h_nano"]


# ------------------------------------------------------------------------------------------ failures
async def test_a_failed_bootstrap_destroys_the_rented_instance_and_removes_the_host(
        tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    fake = VastOnLoopback(sshd.port)
    await fake.start()
    # The cheapest offer is taken meanwhile: the next one is rented. Then the machine lacks the python asked for.
    fake.fail("PUT", RENT, Fault(status=404, body={"success": False, "error": "no_such_ask",
                                                    "msg": f"Instance type {CHEAPEST_VAST} is no longer available."}))
    settings = settings_for(tmp_path, keys, tokenmill_wheel, shared_site_packages, vast_api_key=KEY,
                            vast_api_url=f"{fake.url}/api/v0", variables={"python": "/nonexistent/python3"})
    trust(router_known_hosts(settings), sshd)
    try:
        async with running_router(settings) as router:
            await serving(router)
            r = await router.http.post("/admin/provision", headers=router.admin,
                                       json={"model": MODEL, "provider": "vast", "engine": "sim"})
            assert r.status_code == 202, r.text
            job, events = await finished(router, r.json())
            assert job["state"] == "failed", story(events)
            error = job["error"]
            assert "bootstrap failed: step 2 'Python 3.11 or newer'" in error, error
            assert "/nonexistent/python3" in error and "not found" in error  # the step's own output
            assert [s.path for s in fake.seen("PUT", RENT)] == [f"/api/v0/asks/{CHEAPEST_VAST}/",
                                                                "/api/v0/asks/11684739/"]
            texts = story(events)
            assert "was taken by someone else" in texts and "trying the next cheapest offer" in texts
            assert f"destroyed Vast.ai instance {job['instance_id']}" in texts
            assert len(fake.seen("DELETE", INSTANCE)) == 1 and fake.instances == {}

            host = router.services.fleet.host(job["host_id"])
            assert host.state == "removed" and host.cost_per_hour == 800_000_000  # the offer actually rented
            record = await ProvisionedHosts(router.services.engine).get(host.id)
            assert record.state == "removed"
            runs = (await router.http.get("/admin/provision/runs", headers=router.admin)).json()
            assert [(r["playbook"], r["outcome"], r["failed_step"]) for r in runs] == [
                ("bootstrap", "failed", "Python 3.11 or newer")]
            failed = [e for e in router.services.events.since() if e.kind == "provision.failed"]
            assert failed and failed[0].level == "warning"  # cleaned up: nothing left billing
    finally:
        await fake.stop()


def router_known_hosts(settings):
    from backend.provision.known_hosts import KnownHosts

    return KnownHosts.in_data_dir(settings.data_dir)


async def test_a_changed_host_key_fails_the_job_and_a_cancelled_wait_cleans_up(
        tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    """Through the console's AdminClient, as its Provision view does it."""
    settings = settings_for(tmp_path, keys, tokenmill_wheel, shared_site_packages)
    known = router_known_hosts(settings)
    key_type, b64 = keys.host_b.with_suffix(".pub").read_text().split()[:2]
    known.directory.mkdir(mode=0o700, parents=True)
    known.path.write_text(f"{entry_name('127.0.0.1', sshd.port)} {key_type} {b64}\n")  # not the key sshd has
    request = dict(model=MODEL, provider="ssh", engine="sim", ssh_host="127.0.0.1", ssh_port=sshd.port,
                   ssh_user=getpass.getuser())
    async with running_router(settings) as router:
        await serving(router)
        api = AdminClient(router.url, router.services.admin_token)
        try:
            job = await follow(api, await api.provision(**request))
            assert job.state == "failed" and "HOST KEY CHANGED" in job.error, job
            assert router.services.fleet.host(job.host_id).state == "removed"
            assert await api.provision_runs() == []  # refused before any playbook ran

            # Forget the old key: now the key is unknown, and the operator cancels instead of confirming.
            known.forget("127.0.0.1", sshd.port)
            job = await follow(api, await api.provision(**request), until=("waiting_host_key",))
            assert job.host_key.fingerprint == openssh_fingerprint(keys.host_a.with_suffix(".pub"))
            assert [k.fingerprint for k in await api.pending_host_keys()] == [job.host_key.fingerprint]
            await api.cancel_job(job.id)
            job = await follow(api, job)
            assert job.state == "failed" and "cancelled" in job.error and job.host_key is None
            assert router.services.fleet.host(job.host_id).state == "removed"
            assert [(j.state, j.events) for j in await api.jobs()] == [("failed", []), ("failed", [])]
            with pytest.raises(AdminError, match="has ended"):
                await api.cancel_job(job.id)

            # Unattended, a key other than the one expected is refused and the job cancelled.
            presented = openssh_fingerprint(keys.host_a.with_suffix(".pub"))
            expected = openssh_fingerprint(keys.host_b.with_suffix(".pub"))
            rc, out = await cli(router, tmp_path, "provision", "--provider", "ssh", "--ssh-host", "127.0.0.1",
                                "--ssh-port", str(sshd.port), "--ssh-user", getpass.getuser(), "--model", MODEL,
                                "--engine", "sim", "--yes", "--accept-host-key", expected)
            assert rc == 1 and f"presented ssh-ed25519 {presented}, not the {expected}" in out, out
            assert "ERROR the job was cancelled" in out and "job job_" in out and "failed" in out
            assert all(h.state == "removed" for h in router.services.fleet.hosts())
        finally:
            await api.aclose()


async def follow(api: AdminClient, job, *, until=("succeeded", "failed")):
    deadline = asyncio.get_running_loop().time() + JOB_TIMEOUT_S
    while job.state not in until:
        assert asyncio.get_running_loop().time() < deadline, job
        await asyncio.sleep(0.1)
        job = await api.job(job.id)
    return job


async def test_requests_are_refused_before_any_job_starts(tmp_path, keys):
    settings = router_settings(tmp_path / "router", ssh_key_path=keys.client,
                               ssh_public_key_path=keys.client.with_suffix(".pub"),
                               provision_variables={"host_token": "tmh-mine"})
    async with running_router(settings) as router:
        async def refused(body: dict) -> tuple[int, str]:
            r = await router.http.post("/admin/provision", headers=router.admin, json=body)
            return r.status_code, r.json()["error"]["message"]

        status, message = await refused({"model": "no-such-model", "provider": "vast"})
        assert status == 404 and "no-such-model" in message
        status, message = await refused({"model": MODEL, "provider": "local"})
        assert status == 400 and "tokenmill serve --local" in message
        status, message = await refused({"model": MODEL, "provider": "ssh"})
        assert status == 400 and "needs ssh_host" in message
        status, message = await refused({"model": MODEL, "provider": "ssh", "ssh_host": "10.0.0.9"})
        assert status == 400 and "engine vllm needs gpu" in message
        status, message = await refused({"model": MODEL, "provider": "ssh", "ssh_host": "10.0.0.9", "engine": "sim"})
        assert status == 400 and "host_token" in message  # settings.provision_variables may not set it
        router.services.settings.provision_variables = {}
        status, message = await refused({"model": MODEL, "provider": "runpod"})
        assert status == 400 and "RunPod has no API key" in message and "runpod_api_key" in message
        assert (await router.http.get("/admin/jobs", headers=router.admin)).json() == []

        api = AdminClient(router.url, router.services.admin_token)
        try:
            offers = await api.offers(MODEL, provider="local")
            assert offers.offers == [] and "serve --local" in offers.unavailable[0]
            with pytest.raises(AdminError, match="unknown GPU 'tpu'"):
                await api.offers(MODEL, gpu="tpu")
            with pytest.raises(AdminError, match=r"no host key of 127\.0\.0\.1:2222 waits"):
                await api.confirm_host_key("127.0.0.1", 2222, "SHA256:abc")
            with pytest.raises(AdminError, match="no job 'job_nope'"):
                await api.job("job_nope")
            host, _ = await router.services.fleet.enroll("by-hand")
            with pytest.raises(AdminError, match="was not provisioned by tokenmill"):
                await api.teardown(host.id)
        finally:
            await api.aclose()


async def test_a_job_cut_short_by_a_restart_is_reported_and_can_be_torn_down(tmp_path, keys):
    settings = router_settings(tmp_path / "router", ssh_key_path=keys.client)
    async with running_router(settings) as router:
        host, _ = await router.services.fleet.enroll("half-done", provider="ssh")
        await router.services.provisioner.records.add(host_id=host.id, provider="ssh", instance_name="half-done",
                                                      model=MODEL)
        cut = await router.services.provisioner.runner.runs.begin(playbook="bootstrap", address="u@h:22",
                                                                  variables={}, host_id=host.id)
    async with running_router(settings) as router:
        assert (await router.services.provisioner.runner.runs.get(cut)).outcome == "cancelled"
        (event,) = [e for e in router.services.events.since() if e.kind == "provision.interrupted"]
        assert event.level == "error" and f"tokenmill teardown {host.id}" in event.message
        r = await router.http.post(f"/admin/hosts/{host.id}/teardown", headers=router.admin)
        job, events = await finished(router, r.json())
        assert job["state"] == "succeeded", story(events)
        assert "never came up" in story(events) and router.services.fleet.host(host.id).state == "removed"
