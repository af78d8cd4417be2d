"""The config file the wizard writes: TOML that load_settings reads back, 0600 (it may hold API
keys), merged over the file it replaces (whose other settings stay), never half written.

No TOML writer ships with Python, and the settings need only tables, strings, numbers, booleans,
lists and dates, so a small one is here (tests read what it writes back with tomllib)."""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from backend.cli_quickstart.answers import KEY_FIELDS, Answers
from backend.field_errors import FieldError
from backend.private_files import open_private, private_dir
from backend.runtime.clock import from_us
from backend.settings import Settings


def config_values(answers: Answers) -> dict[str, Any]:
    values: dict[str, Any] = {"profit_target_daily_usd": answers.profit_target_usd}
    for cloud, key in answers.keys.items():
        values[KEY_FIELDS[cloud]] = key
    values["pricing"] = {"enabled": answers.policy == "dynamic"}
    values["autoscaler"] = {"enabled": answers.autoscale, "budget_per_hour_usd": answers.budget_usd}
    return values


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_str(k)


def _toml_str(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(values: dict[str, Any], prefix: str = "") -> str:
    """A settings dict as TOML (what tomllib reads back): scalars first, then one table per dict."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for k, v in values.items():
        if isinstance(v, dict):
            name = f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)
            lines.append(f"\n[{name}]")
            lines.append(dump_toml(v, name))
    return "\n".join(line for line in lines if line)


def config_text(answers: Answers, existing: dict[str, Any], now_us: int) -> str:
    when = from_us(now_us).strftime("%Y-%m-%d %H:%M UTC")
    plan = [f"#   models to sell: {', '.join(answers.models)}",
            f"#   starting fleet: {answers.fleet}"]
    if answers.ssh:
        plan.append(f"#   your machine:   {answers.ssh.target} ({answers.ssh.gpu})")
    policy = answers.policy + (f" at ${answers.pin[0]} / ${answers.pin[1]} per 1M tokens (prompt / completion)"
                               if answers.pin else "")
    plan.append(f"#   price policy:   {policy}")
    head = [f"# tokenmill settings, written by `tokenmill quickstart` on {when}.",
            "# It may hold provider API keys: keep it private (mode 0600). `tokenmill info` shows where",
            "# every setting comes from; the README lists them all.",
            "#",
            "# The plan you chose (the backend has no setting for these: it serves every enabled model and",
            "# runs the hosts you provision or its autoscaler rents):",
            *plan, ""]
    return "\n".join(head) + "\n" + dump_toml(merge(existing, config_values(answers))) + "\n"


def check_config(text: str) -> None:
    """Refuse to write what the settings could not read back (a FieldError naming the setting)."""
    from pydantic import ValidationError

    try:
        Settings.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise FieldError(".".join(str(p) for p in err["loc"]) or "config", err["msg"]) from None


def write_config(path: Path, text: str, *, overwrite: bool) -> None:
    """Write 0600 (it may hold API keys): a new file only if none is there (O_EXCL), else, when the
    operator agreed, a private temporary file moved over the old one (never half written)."""
    private_dir(path.parent)
    if not overwrite:
        with open_private(path, "x", encoding="utf-8") as fh:
            fh.write(text)
        return
    tmp = path.with_name(f".{path.name}.quickstart-{os.getpid()}")
    try:
        with open_private(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
