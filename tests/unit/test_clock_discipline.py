"""Every service reads and waits on time through its Clock (backend/runtime/clock.py), so that a
VirtualClock can run the production code for a simulated day in a second. This test reads
backend/ and names file:line for each direct use of the wall clock or of the loop's timers.

A timeout that guards real I/O (a socket, a child process, a thread holding a SQLite lock) must
stay real even in a simulation: such a line says so with the marker `# real I/O`."""

from __future__ import annotations

import ast
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"
ALLOWED = {"runtime/clock.py"}
MARKER = "# real I/O"

# module -> attributes that read the clock or schedule on the loop's own time
FORBIDDEN = {
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns", "sleep"},
    "asyncio": {"sleep", "wait_for", "timeout", "timeout_at"},
    "datetime.datetime": {"now", "utcnow", "today"},
    "datetime.date": {"today"},
}
# methods of an event loop that read or schedule on its time
LOOP_METHODS = {"call_later", "call_at", "time"}


class _Finder(ast.NodeVisitor):
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.aliases: dict[str, str] = {}  # local name -> dotted origin ("dt" -> "datetime")
        self.found: list[tuple[int, str]] = []
        self._stmt: tuple[int, int] = (0, 0)  # the lines of the statement being read (a block's header only)

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.stmt):
            outer = self._stmt
            body = getattr(node, "body", None)
            last = body[0].lineno - 1 if isinstance(body, list) and body else node.end_lineno or node.lineno
            self._stmt = (node.lineno, max(last, node.lineno))
            super().visit(node)
            self._stmt = outer
        else:
            super().visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            origin = f"{node.module}.{a.name}"
            self.aliases[a.asname or a.name] = origin
            module, _, attr = origin.rpartition(".")
            if attr in FORBIDDEN.get(module, ()):
                self._note(node, origin)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = self._dotted(node.value)
        if dotted is not None and node.attr in FORBIDDEN.get(dotted, ()):
            self._note(node, f"{dotted}.{node.attr}")
        elif node.attr in LOOP_METHODS and self._is_loop(node.value):
            self._note(node, f"loop.{node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        origin = self.aliases.get(node.id, "")
        module, _, attr = origin.rpartition(".")
        if attr in FORBIDDEN.get(module, ()):
            self._note(node, origin)

    def _dotted(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    @staticmethod
    def _is_loop(node: ast.expr) -> bool:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return node.func.attr in ("get_running_loop", "get_event_loop")
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
        return name in ("loop", "_loop", "event_loop")

    def _note(self, node: ast.AST, what: str) -> None:
        first, last = self._stmt if self._stmt[0] else (node.lineno, node.lineno)
        if any(MARKER in self.lines[i - 1] for i in range(min(first, node.lineno), max(last, node.lineno) + 1)):
            return
        self.found.append((node.lineno, what))


def direct_time_uses(source: str) -> list[tuple[int, str]]:
    finder = _Finder(source.splitlines())
    finder.visit(ast.parse(source))
    return sorted(set(finder.found))


def test_backend_reads_time_only_through_its_clock():
    offences = []
    for path in sorted(BACKEND.rglob("*.py")):
        rel = path.relative_to(BACKEND).as_posix()
        if rel in ALLOWED:
            continue
        for line, what in direct_time_uses(path.read_text()):
            offences.append(f"backend/{rel}:{line}: {what}")
    assert not offences, ("use the service's Clock (backend/runtime/clock.py), or mark a real I/O timeout "
                          f"with {MARKER!r}:\n" + "\n".join(offences))


def test_the_check_sees_each_way_of_reaching_the_clock():
    source = """
import asyncio, time
import datetime as dt
from datetime import datetime
from time import monotonic as mono
async def f(loop):
    time.time(); time.monotonic(); await asyncio.sleep(1); dt.datetime.now(dt.UTC)
    datetime.utcnow(); mono(); loop.call_later(1, f); asyncio.get_running_loop().time()
    await asyncio.wait_for(f(), 1)  # real I/O: a socket
    x = (  # real I/O: a marker on its statement covers the lines after it
        asyncio.wait_for(f(), 2))
    if x:  # real I/O
        await asyncio.sleep(3)
    sleep = time.sleep
"""
    uses = direct_time_uses(source)
    found = [what for _, what in uses]
    lines = source.splitlines()
    assert (lines.index("        await asyncio.sleep(3)") + 1, "asyncio.sleep") in uses  # a block's marker is its own
    assert found.count("time.monotonic") == 3  # the import, the call, the call by its alias
    for what in ("time.time", "asyncio.sleep", "datetime.datetime.now", "datetime.datetime.utcnow",
                 "loop.call_later", "loop.time", "time.sleep"):
        assert what in found, what
    assert "asyncio.wait_for" not in found  # marked as guarding real I/O
