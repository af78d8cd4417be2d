"""`{{ name }}` placeholders in playbook commands, paths and template files.

A placeholder is `{{ name }}` or `{{ name | filter }}`; nothing else is special, so shell, TOML
and systemd syntax pass through untouched. How a value is written depends on where it goes:

- in a shell command (run, check, guard, only_if) every value is shell-quoted, so a variable can
  never inject shell syntax: a string is one word, a list is one word per item, bools are
  `true`/`false`. Write `{{ install_dir }}/venv`, not `"{{ install_dir }}/venv"`.
- in a path or a message, and in a template file, the value is written as it is; a template file
  picks a filter where the syntax needs one: `toml` (a TOML value), `sh` (a shell-quoted word).

Filters: `toml`, `sh` (template files only: commands quote everything already), `basename`.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Value = str | int | bool | list[str]
Context = Literal["shell", "text", "file"]
FILTERS = ("toml", "sh", "basename")

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\s*([A-Za-z_]+)\s*)?\}\}")


class TemplateError(ValueError):
    """A placeholder is malformed or cannot be written where it stands."""


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    filter: str | None


@dataclass(frozen=True, slots=True)
class Template:
    """Text with placeholders, parsed once; `render` fills them in for one context."""

    text: str
    context: Context
    parts: tuple[str | Placeholder, ...]

    @classmethod
    def parse(cls, text: str, context: Context) -> Template:
        parts: list[str | Placeholder] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            _literal(text[pos:m.start()], parts)
            name, filt = m.group(1), m.group(2)
            if filt is not None and filt not in FILTERS:
                raise TemplateError(f"{{{{ {name} | {filt} }}}}: unknown filter {filt!r} "
                                    f"(filters: {', '.join(FILTERS)})")
            if filt == "sh" and context == "shell":
                raise TemplateError(f"{{{{ {name} | sh }}}}: commands shell-quote every value already; "
                                    f"write {{{{ {name} }}}}")
            parts.append(Placeholder(name, filt))
            pos = m.end()
        _literal(text[pos:], parts)
        return cls(text, context, tuple(parts))

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    def check_value_kind(self, name: str, kind: str) -> str | None:
        """Why a variable of `kind` (str, int, bool, list) cannot stand here, or None if it can."""
        for p in self.placeholders:
            if p.name != name:
                continue
            if p.filter == "basename" and kind != "str":
                return f"{{{{ {name} | basename }}}}: basename needs a str variable, {name} is a {kind}"
            if kind == "list" and p.filter is None and self.context == "file":
                return f"{{{{ {name} }}}}: {name} is a list: write {{{{ {name} | toml }}}} or {{{{ {name} | sh }}}}"
            if kind == "list" and p.filter is None and self.context == "text":
                return f"{{{{ {name} }}}}: {name} is a list, which cannot stand in a path or a message"
        return None

    def render(self, values: Mapping[str, Value]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = values[part.name]
            if part.filter == "basename":
                value = os.path.basename(str(value))
            if part.filter == "toml":
                value = toml_value(value)
            if self.context == "shell" or part.filter == "sh":
                out.append(shell_words(value))
            else:
                out.append(plain(value))
        return "".join(out)


def _literal(text: str, parts: list[str | Placeholder]) -> None:
    """Keep literal text; a `{{` left in it is a placeholder that did not parse."""
    at = text.find("{{")
    if at >= 0:
        snippet = text[at:at + 40].split("\n")[0]
        raise TemplateError(f"malformed placeholder {snippet!r}: write {{{{ name }}}} or {{{{ name | filter }}}}")
    if text:
        parts.append(text)


def plain(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # refused at load time outside commands; kept total for safety
        return ",".join(value)
    return str(value)


def shell_words(value: Value) -> str:
    if isinstance(value, list):
        return " ".join(shlex.quote(v) for v in value)
    return shlex.quote(plain(value))


def toml_value(value: Value | Sequence[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    return "[" + ", ".join(_toml_string(v) for v in value) + "]"


def _toml_string(s: str) -> str:
    # A TOML basic string: quotes and backslashes escaped, control characters (and DEL, which TOML
    # also forbids raw) as \uXXXX. json.dumps is close but leaves DEL raw.
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
