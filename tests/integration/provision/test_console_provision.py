"""The console's Provision view driving a real provisioning end to end: a machine reached over a
real sshd is bootstrapped from the console (host key confirmed in the console, every step's
output shown as it runs), serves, and is torn down from the console."""

from __future__ import annotations

import asyncio
import getpass
import time

from textual.widgets import Log

from console.app import TokenmillApp
from console.client import AdminClient
from console.widgets.confirm import ConfirmScreen
from console.widgets.pick import PickScreen
from console.widgets.prompt import PromptScreen
from tests.integration.provision.sshd import openssh_fingerprint
from tests.integration.provision.test_provisioning import (
    JOB_TIMEOUT_S,
    MODEL,
    agent_logs,
    ask,
    assert_machine_clean,
    serving,
    settings_for,
    until_routed,
)
from tests.router_harness import running_router


async def wait_for(pilot, predicate, limit_s: float, why) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, why()
        await pilot.pause(0.05)


async def test_provision_and_teardown_from_the_console(tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    settings = settings_for(tmp_path, keys, tokenmill_wheel, shared_site_packages)
    async with running_router(settings) as router:
        await serving(router)
        app = TokenmillApp(AdminClient(router.url, router.services.admin_token), refresh_s=0.3, owns_api=True,
                           initial_view="provision")
        async with app.run_test(size=(120, 40)) as pilot:
            view = app.view
            log = view.query_one("#job-log", Log)

            def story() -> str:
                return "\n".join(log.lines) + "\n" + agent_logs(router)

            await wait_for(pilot, lambda: app.refreshes >= 1, 10, lambda: "no refresh")
            view.model = MODEL
            await pilot.press("s")  # a machine the operator already has
            await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), 5, lambda: "no prompt")
            await pilot.press(*f"{getpass.getuser()}@127.0.0.1:{sshd.port}", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), 5, lambda: "no engine choice")
            await pilot.press("down", "enter")  # the simulated engine: this machine has no GPU
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, lambda: "no confirmation")
            await pilot.press("y")

            # The unknown host key: the job waits and the view shows the fingerprint; `k` confirms it.
            presented = openssh_fingerprint(keys.host_a.with_suffix(".pub"))
            await wait_for(pilot, lambda: view.job is not None and view.job.state == "waiting_host_key", 60, story)
            keys_line = str(view.query_one("#host-keys").render())
            assert presented in keys_line, keys_line
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), 5, lambda: "no key list")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, lambda: "no confirmation")
            await pilot.press("y")

            # Each step's output arrives while the job runs, not only at its end.
            seen_running = []
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while view.job.state != "succeeded":
                assert view.job.state != "failed" and time.monotonic() < deadline, story()
                if view.job.state == "running" and any("step_finished" in line for line in log.lines):
                    seen_running.append(True)
                await pilot.pause(0.1)
            assert seen_running, "no step output was shown before the job ended"
            assert any("step_started" in line and "[" in line for line in log.lines)
            host_id = view.job.host_id
            await until_routed(router, host_id)
            _, secret = await router.client_with_key()
            assert await ask(router, secret, "hello from the console") == host_id

            # Teardown, confirmed, from the same view.
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, PickScreen), 5, lambda: "no host list")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, lambda: "no confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: view.job.kind == "teardown" and view.job.state == "succeeded",
                           JOB_TIMEOUT_S, story)
        host = router.services.fleet.host(host_id)
        assert host.state == "removed"
        await asyncio.sleep(0)
    assert_machine_clean(tmp_path)
