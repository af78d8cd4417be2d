"""Structured output for the simulated engine: a JSON value that fits a JSON schema.

vLLM constrains decoding to a schema for `response_format` (json_object, json_schema) and for a tool
call whose function `tool_choice` names; the simulated engine writes a deterministic instance of
the schema instead. It covers what tool and response schemas use (types, properties and required,
items, enum, const, anyOf/oneOf/allOf, $ref to $defs, bounds on numbers, lengths and item counts,
common string formats); a `pattern` is not followed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Words the generated keys and strings are made of (as in the simulated text).
_WORDS = ("river stone light engine token market signal garden window silver morning harbor lantern orbit "
          "meadow copper velvet thunder quiet").split()
_FORMATS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "12:00:00Z",
            "email": "user@example.com", "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000",
            "hostname": "example.com", "ipv4": "192.0.2.1", "ipv6": "2001:db8::1"}
_MAX_DEPTH = 8  # a recursive schema ($ref to itself) ends in the smallest value there


class _Rand:
    """A deterministic stream of small numbers from a key."""

    def __init__(self, key: str) -> None:
        self._key = hashlib.blake2b(key.encode(), digest_size=32).digest()
        self._block = 0
        self._buf = b""

    def byte(self) -> int:
        if not self._buf:
            self._buf = hashlib.blake2b(self._block.to_bytes(8, "little"), key=self._key, digest_size=64).digest()
            self._block += 1
        b, self._buf = self._buf[0], self._buf[1:]
        return b

    def below(self, n: int) -> int:
        return (self.byte() << 8 | self.byte()) % n if n > 0 else 0

    def word(self) -> str:
        return _WORDS[self.below(len(_WORDS))]


def json_text(key: str, schema: dict[str, Any] | None) -> str:
    """A JSON text (an object when there is no schema: json_object) fitting `schema`."""
    rand = _Rand(key)
    if schema is None:
        keys = list(dict.fromkeys(rand.word() for _ in range(2 + rand.below(3))))
        schema = {"type": "object", "properties": {
            k: {"type": ("string", "integer", "boolean")[rand.below(3)]} for k in keys}}
    return json.dumps(_Instance(schema, rand).value(schema, 0), ensure_ascii=False)


class _Instance:
    def __init__(self, root: dict[str, Any], rand: _Rand) -> None:
        self._root = root
        self._rand = rand

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict):
            return self._rand.word()
        if "$ref" in schema:
            return self.value(self._resolve(schema["$ref"]), depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][self._rand.below(len(schema["enum"]))]
        for key in ("anyOf", "oneOf"):
            options = [o for o in schema.get(key) or [] if isinstance(o, dict)]
            if options:
                return self.value({**_without(schema, key), **options[0]}, depth + 1)
        if schema.get("allOf"):
            merged = _without(schema, "allOf")
            for part in schema["allOf"]:
                if isinstance(part, dict):
                    merged = _merge(merged, part)
            return self.value(merged, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        return getattr(self, f"_{kind}", self._string)(schema, depth)

    def _resolve(self, ref: str) -> Any:
        node: Any = self._root
        if ref.startswith("#"):
            for part in filter(None, ref[1:].split("/")):
                node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = list(schema.get("required") or [])
        # Deep down, only what is required; otherwise every property, as a model usually fills them.
        keys = required if depth >= _MAX_DEPTH else list(dict.fromkeys([*required, *props]))
        out = {k: self.value(props.get(k, schema.get("additionalProperties", {"type": "string"})), depth + 1)
               for k in keys}
        extra = schema.get("additionalProperties", True)
        while len(out) < int(schema.get("minProperties", 0)) and extra is not False:
            out[f"{self._rand.word()}_{len(out)}"] = self.value(extra, depth + 1)
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 3)))
        count = low if depth >= _MAX_DEPTH else min(high, max(low, 1 + self._rand.below(3)))
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", {"type": "string"})
        return [self.value(prefix[i] if i < len(prefix) else items, depth + 1) for i in range(count)]

    def _string(self, schema: dict[str, Any], _depth: int) -> str:
        text = _FORMATS.get(schema.get("format", ""))
        if text is None:
            text = " ".join(self._rand.word() for _ in range(1 + self._rand.below(3)))
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        while len(text) < low:
            text += " " + self._rand.word()
        return text[:int(high)] if high is not None else text

    def _integer(self, schema: dict[str, Any], _depth: int) -> int:
        low, high = _bounds(schema, 1)
        return int(low) + self._rand.below(int(high) - int(low) + 1)

    def _number(self, schema: dict[str, Any], _depth: int) -> float:
        low, high = _bounds(schema, 0)
        return round(low + (high - low) * self._rand.below(1001) / 1000, 3)

    def _boolean(self, _schema: dict[str, Any], _depth: int) -> bool:
        return self._rand.below(2) == 1

    def _null(self, _schema: dict[str, Any], _depth: int) -> None:
        return None


def _bounds(schema: dict[str, Any], step: int) -> tuple[float, float]:
    """[low, high] for a number; `step`: 1 for integers (exclusive bounds move by one), 0 for numbers
    (exclusive bounds move by a thousandth of the range, so the result stays inside)."""
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    low = 0 if low is None else low
    high = max(low, 100) if high is None else high
    nudge = step or (high - low) / 1000
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low += nudge
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high -= nudge
    if step:
        low, high = float(int(-(-low // 1))), float(int(high // 1))  # ceil / floor to whole numbers
    return low, max(low, high)


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    if "properties" in a and "properties" in b:
        out["properties"] = {**a["properties"], **b["properties"]}
    if "required" in a and "required" in b:
        out["required"] = list(dict.fromkeys([*a["required"], *b["required"]]))
    return out
