"""Playbook files are validated strictly on load, and variables when a run starts; every error
names the file (or playbook), the step and the field or variable."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from backend.provision.playbook import (
    CheckStep,
    PlaybookError,
    RunStep,
    TemplateStep,
    UploadStep,
    VariableError,
    load_named,
    load_playbook,
    playbooks_dir,
)


def write(tmp_path: Path, text: str, **files: str) -> Path:
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "pb.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str, **files: str) -> str:
    path = write(tmp_path, text, **files)
    with pytest.raises(PlaybookError) as exc:
        load_playbook(path)
    return str(exc.value).replace(str(path), "pb.yaml")


@pytest.mark.parametrize("name", ["bootstrap", "upgrade", "teardown"])
def test_the_shipped_playbooks_load(name):
    pb = load_named(name)
    assert pb.name == name and pb.path == playbooks_dir() / f"{name}.yaml"
    kinds = {type(s) for s in pb.steps}
    assert kinds <= {RunStep, CheckStep, UploadStep, TemplateStep}
    assert all(s.timeout_s > 0 for s in pb.steps)


def test_the_host_token_is_secret_and_only_in_the_0600_agent_config():
    pb = load_named("bootstrap")
    assert pb.secrets == {"host_token"}
    (uses,) = [s for s in pb.steps if any(p.name == "host_token" for t in s.templates().values()
                                           for p in t.placeholders)]
    assert isinstance(uses, TemplateStep) and uses.mode == 0o600


def test_an_unknown_playbook_name_lists_the_shipped_ones():
    with pytest.raises(PlaybookError, match=r"no playbook 'bootstrapp' \(shipped: bootstrap, teardown, upgrade\)"):
        load_named("bootstrapp")


BASE = """
name: t
description: a test playbook
variables:
  install_dir:
    default: /opt/x
    description: where
  token:
    secret: true
    description: a secret
steps:
"""


def test_an_unknown_variable_names_file_step_field_and_variable(tmp_path):
    error = load_error(tmp_path, BASE + """
  - name: uses a typo
    run: ls {{ instal_dir }} {{ install_dir }}
    always: true
  - name: writes
    template: {source: t.txt, dest: /x, mode: "0600"}
""", **{"t.txt": "{{ token }}\n"})
    assert error == ("pb.yaml: step 1 'uses a typo': field run: unknown variable 'instal_dir' "
                     "(declared: install_dir, token)")


@pytest.mark.parametrize(("step", "expected"), [
    ("  - name: a\n    run: ls {{ install_dir }}\n",
     "step 1 'a': field (step): a run step needs a guard (a command that succeeds when the step is already done), "
     "or `always: true` when it must run every time"),
    ("  - name: a\n    run: ls\n    check: ls\n    message: m\n",
     "step 1 'a': a step has exactly one of run, check, upload, template (found: run, check)"),
    ("  - name: a\n    run: ls\n    always: true\n    tiemout: 3\n",
     "step 1 'a': field tiemout: Extra inputs are not permitted"),
    ("  - name: a\n    run: ls\n    always: true\n    timeout: -1\n",
     "step 1 'a': field timeout: Input should be greater than 0"),
    ("  - name: a\n    check: ls\n",
     "step 1 'a': field message: Field required"),
    ("  - name: a\n    check: ls\n    message: m\n    guard: 'true'\n",
     "step 1 'a': field guard: Extra inputs are not permitted"),
    ("  - name: a\n    upload: {source: /x, dest: '{{ install_dir }}/x', mode: 0644}\n",
     "step 1 'a': field upload.mode: write the mode as a quoted octal string such as '0600', got 420"),
    ("  - name: a\n    run: echo {{ token }}\n    always: true\n",
     "step 1 'a': field run: token is secret: it may only be rendered into a template file, "
     "never into a command, path or message"),
    ("  - name: a\n    template: {source: missing.txt, dest: '{{ install_dir }}/x', mode: '0600'}\n",
     "step 1 'a': field template.source: cannot read"),
    ("  - name: a\n    run: ls {{ install_dir }}\n    run: ls\n    always: true\n",
     "not valid YAML: duplicate key 'run'"),
])
def test_invalid_steps_are_refused_naming_step_and_field(tmp_path, step, expected):
    error = load_error(tmp_path, BASE + step + """
  - name: uses the token
    template: {source: t.txt, dest: /x, mode: "0600"}
""", **{"t.txt": "{{ token }}\n"})
    assert expected in error


def test_a_secret_is_only_rendered_into_a_private_file(tmp_path):
    error = load_error(tmp_path, BASE + """
  - name: config
    template: {source: t.txt, dest: "{{ install_dir }}/agent.toml", mode: "0644"}
""", **{"t.txt": "token = {{ token | toml }}\n"})
    assert error == ("pb.yaml: step 1 'config': field template.mode: the template renders the secret token, "
                     "so its mode must be 0600 or stricter, not 0644")


def test_step_problems_are_all_listed(tmp_path):
    error = load_error(tmp_path, """
        name: t
        description: d
        variables:
          unused:
            description: never used
          models:
            type: list
            description: a list
        steps:
          - name: same
            template: {source: t.txt, dest: /x, mode: "0644"}
          - name: same
            check: test -n {{ models }}
            message: "{{ models }}"
        """, **{"t.txt": "models = {{ models }}\n"})
    assert error.splitlines() == [
        "pb.yaml: step 2 'same': the name is already used by step 1: names identify steps in run records",
        "pb.yaml: step 1 'same': field template.source (t.txt): {{ models }}: models is a list: "
        "write {{ models | toml }} or {{ models | sh }}",
        "pb.yaml: step 2 'same': field message: {{ models }}: models is a list, which cannot stand in a path "
        "or a message",
        "pb.yaml: variables.unused: declared but never used (a typo in a placeholder?)",
    ]


@pytest.mark.parametrize(("variables", "expected"), [
    ("  x:\n    type: int\n    default: '8'\n    description: d\n",
     "pb.yaml: field variables.x: default: must be a int, got '8' (str)"),
    ("  x:\n    secret: true\n    default: abc\n    description: d\n",
     "pb.yaml: field variables.x: a secret has no default: it is given at run time, never written in a file"),
    ("  x:\n    description: d\n    choices: [a, b]\n    default: c\n",
     "pb.yaml: field variables.x: default: must be one of 'a', 'b', got 'c'"),
    ("  Bad-Name:\n    description: d\n",
     "pb.yaml: field variables: variable name 'Bad-Name': use lower_snake_case"),
    ("  x:\n    type: float\n    description: d\n",
     "pb.yaml: field variables.x.type: Input should be 'str', 'int', 'bool' or 'list'"),
])
def test_invalid_variable_declarations_are_refused(tmp_path, variables, expected):
    error = load_error(tmp_path, f"""
name: t
description: d
variables:
{variables}steps:
  - name: a
    run: echo {{{{ x }}}}
    always: true
""")
    assert expected in error


@pytest.fixture
def pb(tmp_path):
    return load_playbook(write(tmp_path, """
        name: vars
        description: variables of every type
        variables:
          dir:
            pattern: '^/\\S+$'
            description: where
          port:
            type: int
            default: 8001
            description: a port
          engine:
            choices: [vllm, sim]
            default: vllm
            description: the engine
          opts:
            type: list
            default: []
            description: options
          on:
            type: bool
            default: false
            description: a switch
          token:
            secret: true
            pattern: '^tmh-\\w+$'
            description: the host token
        steps:
          - name: first
            run: echo {{ port }} {{ engine }} {{ opts }} {{ on }}
            always: true
          - name: uses dir
            run: ls {{ dir }}
            always: true
          - name: config
            template: {source: t.txt, dest: "{{ dir }}/t", mode: "0600"}
        """, **{"t.txt": "{{ token | toml }}\n"}))


def test_resolving_fills_defaults_and_accepts_paths(pb, tmp_path):
    values = pb.resolve({"dir": tmp_path, "token": "tmh-abc", "opts": ("-q",)})
    assert values == {"dir": str(tmp_path), "port": 8001, "engine": "vllm", "opts": ["-q"], "on": False,
                      "token": "tmh-abc"}
    assert pb.redacted(values)["token"] == "***" and pb.redacted(values)["dir"] == str(tmp_path)


def test_missing_and_unknown_variables_name_the_playbook_step_and_variable(pb):
    with pytest.raises(VariableError) as exc:
        pb.resolve({"token": "tmh-abc", "prot": 1})
    assert str(exc.value).splitlines() == [
        "playbook vars: unknown variable 'prot' (this playbook declares: dir, engine, on, opts, port, token)",
        "playbook vars: variable dir is required (used by step 2 'uses dir'): where",
    ]


@pytest.mark.parametrize(("given", "expected"), [
    ({"port": True}, "variable port: must be a int, got True (bool)"),
    ({"port": "8001"}, "variable port: must be a int, got '8001' (str)"),
    ({"on": 1}, "variable on: must be a bool, got 1 (int)"),
    ({"opts": "-q"}, "variable opts: must be a list of strings, got '-q' (str)"),
    ({"engine": "cuda"}, "variable engine: must be one of 'vllm', 'sim', got 'cuda'"),
    ({"dir": "relative"}, "variable dir: 'relative' does not match '^/\\\\S+$'"),
    ({"token": "tmh-not valid!"}, "variable token: the given value does not match"),
    ({"token": 12345}, "variable token: must be a str, got *** (int)"),
])
def test_variables_are_typed_strictly(pb, given, expected):
    with pytest.raises(VariableError) as exc:
        pb.resolve({"dir": "/x", "token": "tmh-abc", **given})
    assert f"playbook vars: {expected}" in str(exc.value)
    assert "not valid!" not in str(exc.value) and "12345" not in str(exc.value)
