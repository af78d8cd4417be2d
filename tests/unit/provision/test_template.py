"""Placeholders: values can never become shell syntax, TOML values are always valid TOML."""

from __future__ import annotations

import subprocess
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.provision.template import Template, TemplateError

# What a shell argument can carry: any text without NUL.
shell_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(value=shell_text)
def test_a_value_in_a_command_is_one_literal_word(value):
    command = Template.parse("printf '%s|' {{ v }}", "shell").render({"v": value})
    out = subprocess.run(["sh", "-c", command], capture_output=True, check=True).stdout
    assert out.decode("utf-8", errors="surrogateescape") == value + "|"


def test_lists_are_one_word_per_item_and_nothing_when_empty():
    t = Template.parse("pip install {{ opts }} x", "shell")
    assert t.render({"opts": ["--index-url", "https://x/simple", "a b"]}) == (
        "pip install --index-url https://x/simple 'a b' x")
    assert t.render({"opts": []}) == "pip install  x"
    assert Template.parse("run {{ flag }} {{ n }}", "shell").render({"flag": True, "n": 3}) == "run true 3"


@settings(max_examples=100, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
       items=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=10), max_size=4))
def test_the_toml_filter_writes_valid_toml_of_the_same_value(text, items):
    rendered = Template.parse("a = {{ a | toml }}\nb = {{ b | toml }}\nc = {{ c | toml }}\n", "file").render(
        {"a": text, "b": items, "c": 8001})
    assert tomllib.loads(rendered) == {"a": text, "b": items, "c": 8001}


def test_file_templates_write_values_as_they_are_unless_filtered():
    t = Template.parse("path={{ dir }}/x quoted={{ dir | sh }} name={{ wheel | basename }} on={{ on }}", "file")
    assert t.render({"dir": "/opt/a b", "wheel": "/tmp/w/tokenmill-0.1.0-py3-none-any.whl", "on": False}) == (
        "path=/opt/a b/x quoted='/opt/a b' name=tokenmill-0.1.0-py3-none-any.whl on=false")


def test_shell_toml_and_systemd_syntax_pass_untouched():
    text = "echo ${HOME} $((1 + 2)) { x; } [Service] {x} a = { b = 1 }"
    assert Template.parse(text, "shell").render({}) == text


@pytest.mark.parametrize(("text", "context", "error"), [
    ("{{ x | upper }}", "file", "unknown filter 'upper' (filters: toml, sh, basename)"),
    ("{{ x | sh }}", "shell", "commands shell-quote every value already; write {{ x }}"),
    ("{{ x.y }}", "shell", "malformed placeholder '{{ x.y }}'"),
    ("{{ x }", "text", "malformed placeholder"),
])
def test_malformed_placeholders_are_refused(text, context, error):
    with pytest.raises(TemplateError) as exc:
        Template.parse(text, context)
    assert error in str(exc.value)


def test_where_a_list_cannot_stand_is_said():
    assert Template.parse("models = {{ m }}", "file").check_value_kind("m", "list") == (
        "{{ m }}: m is a list: write {{ m | toml }} or {{ m | sh }}")
    assert "cannot stand in a path" in Template.parse("/opt/{{ m }}", "text").check_value_kind("m", "list")
    assert Template.parse("{{ m | toml }}", "file").check_value_kind("m", "list") is None
    assert Template.parse("{{ m }}", "shell").check_value_kind("m", "list") is None
    assert "basename needs a str" in Template.parse("{{ n | basename }}", "text").check_value_kind("n", "int")
