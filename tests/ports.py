"""Free TCP ports on loopback, for tests that start servers as separate processes.

A port picked now is bound later (a child process starting up: seconds; a playbook: minutes), so
it is taken outside Linux's default ephemeral range (32768-60999), from which the kernel hands out
the local ports of outgoing connections and of bind(0): meanwhile, none of the suite's connections
can take it. Under pytest-xdist each worker picks from its own slice of that range, so two workers
never pick the same port; within a process, picks go round the slice from a random start (another
run of the suite on the machine starts elsewhere), each checked free by binding it.
"""

from __future__ import annotations

import os
import random
import socket

_QUIET = (20000, 32000)
_SLICES = 16  # enough for `-n` up to 16; more workers share slices (still checked free by binding)


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw0", "gw1", ...; absent without xdist
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    width = (_QUIET[1] - _QUIET[0]) // _SLICES
    start = _QUIET[0] + (index % _SLICES) * width
    return range(start, start + width)


_ports = _slice()
_next = random.SystemRandom().randrange(len(_ports))


def quiet_port() -> int:
    """A free port outside the ephemeral range, this worker's own, not handed out before by this
    process (until it has gone round its 750 ports)."""
    global _next
    for _ in range(len(_ports)):
        port = _ports[_next % len(_ports)]
        _next += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_ports.start}-{_ports.stop - 1}")


# One kind of port serves both: a server started "at once" by a test still starts after other
# workers' connections may have taken an ephemeral port.
free_port = quiet_port
