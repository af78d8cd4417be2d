"""ProvisionRequest.trust_new_host_key against a real sshd: the key of an instance the job itself
just rented is trusted on first sight (recorded as confirmed, a warning event); without it the
job waits for the operator, saying why it was asked; a changed key fails either way; the
operator's own machine (provider ssh) is never trusted unseen.

Bootstrap is made to fail at once (no such python on the "machine"): a job that reaches it got
past the host key, which is all these tests need to see."""

from __future__ import annotations

import getpass

from backend.provision.known_hosts import KnownHosts
from tests.integration.providers.fake_cloud import KEY
from tests.integration.provision.sshd import openssh_fingerprint
from tests.integration.provision.test_provisioning import (
    MODEL,
    VastOnLoopback,
    finished,
    serving,
    settings_for,
    story,
)
from tests.router_harness import running_router

REASON = "llama-3.1-8b-instruct: utilization 0.86 > 0.80 for 3 decisions; rent vast RTX 4090 at $0.25/h"


def vast_settings(tmp_path, keys, fake, wheel, site):
    return settings_for(tmp_path, keys, wheel, site, vast_api_key=KEY, vast_api_url=f"{fake.url}/api/v0",
                        variables={"python": "/nonexistent/python3"})


async def test_a_new_instance_key_is_trusted_when_asked_and_a_changed_one_still_fails(
        tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    fake = VastOnLoopback(sshd.port)
    await fake.start()
    settings = vast_settings(tmp_path, keys, fake, tokenmill_wheel, shared_site_packages)
    presented = openssh_fingerprint(keys.host_a.with_suffix(".pub"))
    try:
        async with running_router(settings) as router:
            await serving(router)
            r = await router.http.post("/admin/provision", headers=router.admin, json={
                "model": MODEL, "provider": "vast", "engine": "sim", "trust_new_host_key": True, "reason": REASON})
            assert r.status_code == 202, r.text
            job, events = await finished(router, r.json())
            texts = story(events)
            # Past the host key without anyone confirming it: the job failed in bootstrap, further on.
            assert not any("tokenmill does not know" in e["text"] for e in events), texts  # never waited
            assert "bootstrap failed: step 2 'Python 3.11 or newer'" in job["error"], texts
            assert events[0]["kind"] == "reason" and events[0]["text"] == REASON
            assert any(e["kind"] == "host_key" and "trusted on first sight" in e["text"] and presented in e["text"]
                       for e in events), texts
            known = KnownHosts.in_data_dir(settings.data_dir)
            assert [(k.host, k.port, k.fingerprint) for k in known.known()] == [("127.0.0.1", sshd.port, presented)]
            assert known.pending() == []
            (trusted,) = [e for e in router.services.events.since() if e.kind == "host_key.trusted"]
            assert trusted.level == "warning" and trusted.subject == f"127.0.0.1:{sshd.port}"
            assert presented in trusted.message
            assert fake.instances == {}  # the failed job destroyed what it rented

            # Same address, another key (a reinstalled machine, or someone in the middle): refused, even trusting.
            sshd.start(keys.host_b)
            r = await router.http.post("/admin/provision", headers=router.admin, json={
                "model": MODEL, "provider": "vast", "engine": "sim", "trust_new_host_key": True})
            job, events = await finished(router, r.json())
            assert job["state"] == "failed" and "HOST KEY CHANGED" in job["error"], story(events)
            assert [k.fingerprint for k in known.known()] == [presented]  # not replaced
            assert await router.services.provisioner.runs() != [] and fake.instances == {}
            assert len([e for e in router.services.events.since() if e.kind == "host_key.trusted"]) == 1
    finally:
        await fake.stop()


async def test_without_trust_the_job_waits_saying_why_and_an_own_machine_always_waits(
        tmp_path, sshd, keys, tokenmill_wheel, shared_site_packages):
    fake = VastOnLoopback(sshd.port)
    await fake.start()
    settings = vast_settings(tmp_path, keys, fake, tokenmill_wheel, shared_site_packages)
    presented = openssh_fingerprint(keys.host_a.with_suffix(".pub"))
    waiting = lambda j: j["state"] != "running"  # noqa: E731
    try:
        async with running_router(settings) as router:
            await serving(router)
            http, admin = router.http, router.admin
            r = await http.post("/admin/provision", headers=admin, json={
                "model": MODEL, "provider": "vast", "engine": "sim", "reason": REASON})
            job, events = await finished(router, r.json(), until=waiting)
            assert job["state"] == "waiting_host_key", story(events)
            assert job["host_key"]["fingerprint"] == presented
            assert job["phase"].endswith(f"because {REASON}") and job["reason"] == REASON
            (asked,) = [e for e in events if e["kind"] == "host_key"]
            assert presented in asked["text"] and f"Asked because: {REASON}" in asked["text"]
            assert KnownHosts.in_data_dir(settings.data_dir).known() == []
            assert (await http.post(f"/admin/jobs/{job['id']}/cancel", headers=admin)).status_code == 200
            job, events = await finished(router, job)
            assert job["state"] == "failed" and "cancelled" in job["error"] and fake.instances == {}

            # The operator's own machine: trust_new_host_key does not apply (nothing was created for us).
            r = await http.post("/admin/provision", headers=admin, json={
                "model": MODEL, "provider": "ssh", "engine": "sim", "ssh_host": "127.0.0.1", "ssh_port": sshd.port,
                "ssh_user": getpass.getuser(), "trust_new_host_key": True})
            job, events = await finished(router, r.json(), until=waiting)
            assert job["state"] == "waiting_host_key", story(events)
            assert not any("trusted on first sight" in e["text"] for e in events)
            assert (await http.post(f"/admin/jobs/{job['id']}/cancel", headers=admin)).status_code == 200
            job, _ = await finished(router, job)
            assert job["state"] == "failed"
            assert not [e for e in router.services.events.since() if e.kind == "host_key.trusted"]
    finally:
        await fake.stop()
