"""too_deep() agrees with the depth of the JSON value itself, whatever its strings hold."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.routing.validation import too_deep

TEXT = st.text(alphabet='[]{}"\\ ab,:', max_size=8)
values = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=60)


def depth(v) -> int:
    if isinstance(v, list):
        return 1 + max(map(depth, v), default=0)
    if isinstance(v, dict):
        return 1 + max(map(depth, v.values()), default=0)
    return 0


@given(values, st.integers(min_value=0, max_value=12))
@settings(max_examples=400, deadline=None)
def test_too_deep_is_exact(value, limit):
    body = json.dumps(value).encode()
    assert too_deep(body, limit) == (depth(value) > limit)
