"""Free TCP ports on loopback, for tests that start servers as separate processes."""

from __future__ import annotations

import random
import socket

# Outside Linux's default ephemeral range (32768-60999), from which the kernel hands out the
# local ports of outgoing connections and of bind(0).
_QUIET = (20000, 32000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_port() -> int:
    """A free port outside the ephemeral range, for a server started later (minutes, in a
    playbook test): the kernel will not give it meanwhile to an outgoing connection or a bind(0)
    as it may a port free_port() returned."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(*_QUIET)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()
