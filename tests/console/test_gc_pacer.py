"""The console's paced full garbage collections (console/gc_pacer.py): the policy on a fake clock,
what install/uninstall do to the process's collector, and the app wiring on a real router."""

from __future__ import annotations

import gc

import pytest

from console.gc_pacer import NEVER, GcPacer
from tests.console.test_pilot import make_app, router, wait_for  # noqa: F401  (router: a fixture)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pacer(clock):
    collected: list[float] = []
    p = GcPacer(every_s=10, idle_s=0.5, latest_s=60, clock=clock, collect=lambda: collected.append(clock.t) or 0)
    p.collected = collected
    p.install()
    yield p
    p.uninstall()


def test_install_freezes_and_turns_automatic_full_collections_off_then_uninstall_puts_them_back():
    before = gc.get_threshold()
    p = GcPacer()
    p.install()
    try:
        assert gc.get_threshold() == (before[0], before[1], NEVER)
        assert gc.get_freeze_count() > 0
        p.install()  # twice is once
        assert gc.get_threshold()[2] == NEVER
    finally:
        p.uninstall()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    p.uninstall()  # twice is once
    assert gc.get_threshold() == before


def test_collects_when_due_and_idle(pacer, clock):
    clock.t += 9.9
    assert not pacer.idle() and pacer.collected == []  # not due yet
    clock.t += 0.2
    assert pacer.idle() and pacer.collected == [clock.t]
    clock.t += 5
    assert not pacer.idle()  # due again 10 s after the last one
    clock.t += 5
    assert pacer.idle() and pacer.full_collections == 2


def test_waits_while_keys_are_pressed_but_not_past_latest_s(pacer, clock):
    clock.t += 11
    pacer.key_pressed()
    assert not pacer.idle()  # a key was just pressed: its repaint must not wait for a collection
    clock.t += 0.6
    assert pacer.idle()  # quiet for idle_s
    start = clock.t
    while clock.t - start < 59:  # an operator who never stops typing
        clock.t += 0.25
        pacer.key_pressed()
        assert not pacer.idle()
    clock.t = start + 60.01
    pacer.key_pressed()
    assert pacer.idle()  # garbage must not pile up for ever
    assert pacer.full_collections == 2


def test_an_uninstalled_pacer_never_collects(clock):
    p = GcPacer(clock=clock, collect=lambda: pytest.fail("collected while not installed"))
    clock.t += 1000
    assert not p.idle()


@pytest.mark.parametrize("kw", [dict(every_s=0), dict(every_s=100, latest_s=60), dict(idle_s=-1)])
def test_bad_settings_are_refused_by_name(kw):
    with pytest.raises(ValueError, match="every_s"):
        GcPacer(**kw)


async def test_the_app_installs_it_after_its_first_refresh_and_puts_python_back_on_exit(router):  # noqa: F811
    before = gc.get_threshold()
    pacer = GcPacer(every_s=0.3, idle_s=0.1, latest_s=1.0)
    app = make_app(router, gc_pacer=pacer)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: pacer.installed)
        assert gc.get_threshold()[2] == NEVER
        await wait_for(pilot, lambda: pacer.full_collections >= 2)  # run between refreshes
        await pilot.press("down")
        assert pacer._last_key > 0  # the app tells it about keys
    assert not pacer.installed and gc.get_threshold() == before and gc.get_freeze_count() == 0
