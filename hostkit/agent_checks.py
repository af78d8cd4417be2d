"""The agent's side of the hardware check: each model is checked once its engine is healthy.

A model is checked when the agent first sees its engine answer /health, and again after every
relaunch of that engine (a new process can find the GPU in a different state); its old result is
dropped the moment the relaunch is seen, so the router never routes on a stale pass. A failed
check is tried again after RETRY_FAILED_S: a passing one stands until the engine is relaunched,
but a transient cause (an engine still warming up) must not bar the host for good.
vLLM engines are checked one at a time, because they share the GPUs and measuring two at once
would slow both; the simulated engine's models are checked together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from hostkit.check import HostChecker
from hostkit.engines import Engine
from hostkit.protocol import CheckResult, ServedModel

log = logging.getLogger(__name__)

RETRY_FAILED_S = 60.0


class ModelChecks:
    def __init__(self, checker: HostChecker, engine: Engine, local_urls: dict[str, str],
                 on_result: Callable[[], None], *, one_at_a_time: bool) -> None:
        self._checker = checker
        self._engine = engine
        self._urls = local_urls
        self._on_result = on_result
        self._serial = asyncio.Lock() if one_at_a_time else None
        self._results: dict[str, tuple[int, CheckResult]] = {}  # model -> (engine instance, latest result)
        self._finished_at: dict[str, float] = {}  # model -> monotonic time of the latest result
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def results(self) -> list[CheckResult]:
        return [result for _, result in self._results.values()]

    def observe(self, models: list[ServedModel]) -> None:
        """Start the checks that this reading of the engines calls for (never waits for them)."""
        for served in models:
            model = served.model
            instance = self._engine.instance(model)
            held = self._results.get(model)
            if held is not None and held[0] != instance:
                log.info("%s: engine relaunched; checking it again once healthy", model)
                del self._results[model]
                held = None
            if not served.ready or model in self._tasks:
                continue
            if held is not None and (held[1].passed or time.monotonic() - self._finished_at[model] < RETRY_FAILED_S):
                continue
            self._tasks[model] = asyncio.create_task(self._check(model, instance), name=f"check {model}")

    def keep_only(self, models: set[str]) -> None:
        """The host serves only `models` now: the others' results go (a heartbeat carries no check of
        a model it does not serve), and their running checks stop."""
        for model in [m for m in self._results if m not in models]:
            del self._results[model]
        for model in [m for m in self._tasks if m not in models]:
            self._tasks.pop(model).cancel()

    async def settle(self, timeout_s: float) -> None:
        """Wait (at most timeout_s) for the checks already running."""
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=timeout_s)

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def _check(self, model: str, instance: int) -> None:
        try:
            if self._serial is not None:
                async with self._serial:
                    report = await self._checker.engine_report(model, self._urls.get(model), self._engine.key)
            else:
                report = await self._checker.engine_report(model, self._urls.get(model), self._engine.key)
            result = report.result()
        except Exception as exc:  # a bug in one check must not stop the agent; the model just stays unchecked
            log.exception("%s: the hardware check crashed", model)
            result = CheckResult(model=model, passed=False, checked_us=time.time_ns() // 1000,
                                 summary=f"FAILED: the check crashed ({type(exc).__name__}: {exc})")
        finally:
            self._tasks.pop(model, None)
        if result.passed:
            log.info("%s: hardware check %s", model, result.summary)
        else:
            log.warning("%s: hardware check %s; the router sends it no traffic (retry in %.0f s)", model,
                        result.summary, RETRY_FAILED_S)
        if self._engine.instance(model) == instance:  # else the engine was relaunched meanwhile: check that one
            self._results[model] = (instance, result)
            self._finished_at[model] = time.monotonic()
            self._on_result()
