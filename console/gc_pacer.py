"""Full garbage collections paced by the console instead of by allocation counts.

Why: with a 1,000-row fleet on screen, one full (generation 2) collection scans every tracked
object and took 100-190 ms on a 2-core VM (measured with gc.callbacks during
bench/console_load.py). CPython starts one whenever enough objects have survived, which in the
console is while it redraws after a key press, so the repaint that key asked for waited for it:
the view-switch spikes of 200-300 ms. Young generations still collect as usual (a few ms each);
what Textual leaves in reference cycles that outlive them (~16,000 objects per full-screen
change: Strips with their caches, virtual nodes for component styles) waits for the next paced
collection, at most `latest_s`.

So: the objects alive once the console is up (modules, classes, Textual's machinery, the widget
tree) are frozen out of every collection, automatic full collections are turned off, and the
console runs one itself after a refresh, when at least `every_s` have passed and no key has
been pressed for `idle_s`, or after `latest_s` whatever the keys (cyclic garbage must not pile
up under an operator who never stops typing). Everything is put back on uninstall, so a process
that runs several apps (the tests) keeps Python's defaults between them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

NEVER = 1_000_000_000  # gen-2 threshold: full collections only when asked for


class GcPacer:
    def __init__(self, *, every_s: float = 10.0, idle_s: float = 0.5, latest_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 collect: Callable[[], int] = gc.collect) -> None:
        if not 0 < every_s <= latest_s or idle_s < 0:
            raise ValueError(f"GcPacer: need 0 < every_s <= latest_s and idle_s >= 0, got every_s={every_s}, "
                             f"idle_s={idle_s}, latest_s={latest_s}")
        self.every_s, self.idle_s, self.latest_s = every_s, idle_s, latest_s
        self._clock, self._collect = clock, collect
        self._saved: tuple[int, int, int] | None = None
        self._last_full = clock()
        self._last_key = float("-inf")
        self.full_collections = 0  # run by this pacer

    @property
    def installed(self) -> bool:
        return self._saved is not None

    def install(self) -> None:
        if self._saved is not None:
            return
        self._saved = gc.get_threshold()
        gc.collect()  # what start-up left as garbage is not frozen with the rest
        gc.freeze()
        gc.set_threshold(self._saved[0], self._saved[1], NEVER)
        self._last_full = self._clock()

    def uninstall(self) -> None:
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        gc.unfreeze()
        self._saved = None

    def key_pressed(self) -> None:
        self._last_key = self._clock()

    def idle(self) -> bool:
        """Called when the console has just finished a refresh: collect if it is time. True if it did."""
        if self._saved is None:
            return False
        now = self._clock()
        since_full = now - self._last_full
        if since_full < self.every_s:
            return False
        if now - self._last_key < self.idle_s and since_full < self.latest_s:
            return False
        self._collect()
        self._last_full = self._clock()
        self.full_collections += 1
        return True
