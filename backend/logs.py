"""Logging to a file, with a last line of defence that masks anything shaped like a secret."""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

from backend.private_files import open_private, private_dir

# Client keys (tm-...), admin tokens (tma-...), host tokens (tmh-...), bearer headers, Stripe
# keys and URL credentials. Code must not log secrets; this catches what slips through.
_SECRET = re.compile(
    r"(?P<k>\btm[ah]?-)[A-Za-z0-9_\-]{8,}"
    r"|(?P<b>Bearer\s+)\S+"
    r"|(?P<s>\b(?:sk|rk|whsec)_(?:live|test)?_?)[A-Za-z0-9]{8,}"
    r"|(?P<u>://[^:/@\s]+:)[^@\s]+(?=@)"
)


def redact(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        prefix = next(g for g in m.groups() if g is not None)
        return prefix + "***"

    return _SECRET.sub(sub, text)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Log files are 0600: they name clients, models and hosts. Rotated files keep the mode."""

    def _open(self):
        return open_private(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors)


def setup_logging(path: Path, level: str = "INFO") -> None:
    private_dir(path.parent)
    handler = _PrivateRotatingFileHandler(path, maxBytes=20_000_000, backupCount=5, encoding="utf-8")
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_tokenmill", False):
            root.removeHandler(h)
    handler._tokenmill = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
