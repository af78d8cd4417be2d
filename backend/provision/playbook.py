"""Playbooks: named steps run over SSH, loaded from YAML and validated strictly.

A playbook file declares its variables and lists its steps. Each step does one thing:

    run: COMMAND           a shell script (sh -e); needs a `guard`, or `always: true`
    check: COMMAND         asserted to succeed, else the run stops with `message`; with `wait: true`
                           it is retried every `interval` seconds until it succeeds or times out
    upload: {source, dest, mode}     a local file to the host, by SFTP
    template: {source, dest, mode}   a template file (next to the playbook) rendered to the host

and may have:

    guard: COMMAND         if it succeeds the step is already done and is skipped (re-runs are safe);
                           uploads and templates are skipped by themselves when the remote file
                           already has the same content and mode
    only_if: COMMAND       if it fails the step does not apply to this host and is skipped
    timeout: SECONDS       for each command of the step (default: the playbook's `timeout`)

Variables are declared with a type (str, int, bool, list), a description, an optional default
(without one they are required), optional `choices`, and `secret: true` for values such as the
host token: a secret may only be rendered into a template file whose mode is 0600 or stricter,
never into a command, path or message, and never appears in run output or records.
Placeholders are described in backend/provision/template.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike, fspath
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backend.provision.template import Template, TemplateError, Value

DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 24 * 3600.0
STEP_KINDS = ("run", "check", "upload", "template")


class PlaybookError(ValueError):
    """A playbook file is invalid. The message names the file, the step and the field."""


class VariableError(PlaybookError):
    """The variables given to a playbook are missing, unknown or of the wrong type."""


# ---------------------------------------------------------------------------------------------
# The file's shape (validated by pydantic; every model refuses unknown fields)


class VariableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["str", "int", "bool", "list"] = "str"
    description: str = Field(min_length=1)
    default: Value | None = None
    secret: bool = False
    choices: list[str | int] | None = Field(default=None, min_length=1)
    pattern: str | None = Field(default=None, description="a regular expression every str value must match")

    @model_validator(mode="after")
    def _coherent(self) -> VariableSpec:
        if "default" in self.model_fields_set:
            if self.secret:
                raise ValueError("a secret has no default: it is given at run time, never written in a file")
            if self.default is None:
                raise ValueError("default: null is not a value; leave default out to make the variable required")
            problem = value_problem(self, self.default)
            if problem:
                raise ValueError(f"default: {problem}")
        if self.pattern is not None:
            if self.type != "str":
                raise ValueError("pattern applies to str variables only")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a regular expression: {exc}") from None
        return self

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class _StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    only_if: str | None = Field(default=None, min_length=1)


class RunSpec(_StepSpec):
    run: str = Field(min_length=1)
    guard: str | None = Field(default=None, min_length=1)
    always: bool = False

    @model_validator(mode="after")
    def _guarded(self) -> RunSpec:
        if self.always and self.guard:
            raise ValueError("`always: true` and a guard contradict each other: keep one")
        if not self.always and not self.guard:
            raise ValueError("a run step needs a guard (a command that succeeds when the step is already "
                             "done), or `always: true` when it must run every time")
        return self


class CheckSpec(_StepSpec):
    check: str = Field(min_length=1)
    message: str = Field(min_length=1, description="what it means when the check fails")
    wait: bool = False
    interval: float = Field(default=1.0, gt=0, le=300)


class FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1)
    dest: str = Field(min_length=1)
    mode: int

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, v: Any) -> int:
        # YAML reads 0600 as the integer 384 and 600 as 600: only a quoted octal string is unambiguous.
        if not isinstance(v, str) or not re.fullmatch(r"0?[0-7]{3}", v):
            raise ValueError(f"write the mode as a quoted octal string such as '0600', got {v!r}")
        return int(v, 8)


class UploadSpec(_StepSpec):
    upload: FileSpec
    guard: str | None = Field(default=None, min_length=1)


class TemplateSpec(_StepSpec):
    template: FileSpec
    guard: str | None = Field(default=None, min_length=1)


_SPECS: dict[str, type[_StepSpec]] = {"run": RunSpec, "check": CheckSpec, "upload": UploadSpec,
                                      "template": TemplateSpec}


class PlaybookFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = Field(min_length=1)
    timeout: float = Field(default=DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S,
                           description="default timeout of each step's commands, seconds")
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    steps: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("variables")
    @classmethod
    def _names(cls, v: dict[str, VariableSpec]) -> dict[str, VariableSpec]:
        for name in v:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"variable name {name!r}: use lower_snake_case")
        return v


# ---------------------------------------------------------------------------------------------
# The loaded playbook


@dataclass(frozen=True, slots=True)
class Step:
    index: int  # 1-based, as shown to the operator
    name: str
    timeout_s: float
    only_if: Template | None
    guard: Template | None

    @property
    def kind(self) -> str:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return f"step {self.index} {self.name!r}"

    def templates(self) -> dict[str, Template]:
        """Every template of the step, by the field it came from (for validation)."""
        out = {"only_if": self.only_if, "guard": self.guard}
        return {k: t for k, t in out.items() if t is not None}


@dataclass(frozen=True, slots=True)
class RunStep(Step):
    command: Template

    @property
    def kind(self) -> str:
        return "run"

    def templates(self) -> dict[str, Template]:
        return {**Step.templates(self), "run": self.command}


@dataclass(frozen=True, slots=True)
class CheckStep(Step):
    command: Template
    message: Template
    wait: bool
    interval_s: float

    @property
    def kind(self) -> str:
        return "check"

    def templates(self) -> dict[str, Template]:
        return {**Step.templates(self), "check": self.command, "message": self.message}


@dataclass(frozen=True, slots=True)
class UploadStep(Step):
    source: Template  # a path on the operator's machine
    dest: Template
    mode: int

    @property
    def kind(self) -> str:
        return "upload"

    def templates(self) -> dict[str, Template]:
        return {**Step.templates(self), "upload.source": self.source, "upload.dest": self.dest}


@dataclass(frozen=True, slots=True)
class TemplateStep(Step):
    source: Path  # the template file, read at load time
    content: Template
    dest: Template
    mode: int

    @property
    def kind(self) -> str:
        return "template"

    def templates(self) -> dict[str, Template]:
        return {**Step.templates(self), f"template.source ({self.source.name})": self.content,
                "template.dest": self.dest}


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    description: str
    path: Path
    variables: dict[str, VariableSpec]
    steps: tuple[Step, ...]

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(n for n, v in self.variables.items() if v.secret)

    def resolve(self, given: Mapping[str, object]) -> dict[str, Value]:
        """The values every step renders with: the given ones, checked, over the defaults."""
        problems: list[str] = []
        values: dict[str, Value] = {}
        for name in given:
            if name not in self.variables:
                known = ", ".join(sorted(self.variables)) or "none"
                problems.append(f"unknown variable {name!r} (this playbook declares: {known})")
        for name, spec in self.variables.items():
            if name in given:
                value = _normalise(given[name])
                problem = value_problem(spec, value)
                if problem:
                    problems.append(f"variable {name}: {problem}")
                else:
                    values[name] = value
            elif spec.required:
                first = self.first_use(name)
                used = f" (used by {first.label})" if first else ""
                problems.append(f"variable {name} is required{used}: {spec.description}")
            else:
                values[name] = spec.default
        if problems:
            raise VariableError("\n".join(f"playbook {self.name}: {p}" for p in problems))
        return values

    def first_use(self, name: str) -> Step | None:
        for step in self.steps:
            if any(p.name == name for t in step.templates().values() for p in t.placeholders):
                return step
        return None

    def redacted(self, values: Mapping[str, Value]) -> dict[str, Value]:
        """The values as they may be shown and recorded: secrets replaced by ***."""
        return {k: ("***" if k in self.secrets else v) for k, v in values.items()}


def _normalise(value: object) -> object:
    if isinstance(value, PathLike):
        return fspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def value_problem(spec: VariableSpec, value: object) -> str | None:
    """Why `value` does not fit `spec`, or None. Types are strict: True is not 1, "1" is not 1."""
    kinds = {"str": lambda v: isinstance(v, str), "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
             "bool": lambda v: isinstance(v, bool),
             "list": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v)}
    if not kinds[spec.type](value):
        shown = "***" if spec.secret else repr(value)
        want = "a list of strings" if spec.type == "list" else f"a {spec.type}"
        return f"must be {want}, got {shown} ({type(value).__name__})"
    if spec.choices is not None and value not in spec.choices:
        return f"must be one of {', '.join(map(repr, spec.choices))}, got {value!r}"
    if spec.pattern is not None and not re.fullmatch(spec.pattern, str(value)):
        shown = "the given value" if spec.secret else repr(value)
        return f"{shown} does not match {spec.pattern!r}"
    return None


# ---------------------------------------------------------------------------------------------
# Loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and, as YAML 1.2
    does, reads only true/false as booleans: `on`, `yes` and `no` stay strings."""


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def playbooks_dir() -> Path:
    """The shipped playbooks: playbooks/ in a source checkout, else inside the installed package."""
    checkout = Path(__file__).resolve().parents[2] / "playbooks"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "playbooks"


def load_named(name: str) -> Playbook:
    """A shipped playbook by name: bootstrap, upgrade, teardown."""
    path = playbooks_dir() / f"{name}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in playbooks_dir().glob("*.yaml"))
        raise PlaybookError(f"no playbook {name!r} (shipped: {', '.join(shipped) or 'none'})")
    return load_playbook(path)


def load_playbook(path: str | Path) -> Playbook:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: a playbook is a mapping with name, description, variables and steps")
    try:
        pb = PlaybookFile.model_validate(raw)
    except ValidationError as exc:
        raise PlaybookError("\n".join(_pydantic_lines(path, exc, lambda loc: ("", loc)))) from None

    problems: list[str] = []
    steps: list[Step] = []
    for i, raw_step in enumerate(pb.steps, start=1):
        try:
            steps.append(_compile_step(path, pb, i, raw_step))
        except _StepProblems as exc:
            problems.extend(exc.lines)
    if not problems:
        problems.extend(_check_names(path, steps))
        problems.extend(_check_placeholders(path, pb, steps))
    if problems:
        raise PlaybookError("\n".join(problems))
    return Playbook(pb.name, pb.description.strip(), path, dict(pb.variables), tuple(steps))


class _StepProblems(Exception):
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines


def _step_label(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return f"step {index} {name!r}" if isinstance(name, str) and name else f"step {index}"


def _compile_step(path: Path, pb: PlaybookFile, index: int, raw: Any) -> Step:
    if not isinstance(raw, dict):
        raise _StepProblems([f"{path}: step {index}: a step is a mapping, got {type(raw).__name__}"])
    label = _step_label(index, raw)
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise _StepProblems([f"{path}: {label}: a step has exactly one of {', '.join(STEP_KINDS)} (found: {found})"])
    kind = kinds[0]
    try:
        spec = _SPECS[kind].model_validate(raw)
    except ValidationError as exc:
        raise _StepProblems(_pydantic_lines(path, exc, lambda loc: (label, loc))) from None

    problems: list[str] = []

    def parse(text: str | None, context: Literal["shell", "text", "file"], field: str) -> Template | None:
        if text is None:
            return None
        try:
            return Template.parse(text, context)
        except TemplateError as exc:
            problems.append(f"{path}: {label}: field {field}: {exc}")
            return None

    guard = getattr(spec, "guard", None)  # checks have none: a check is evaluated every time
    common = dict(index=index, name=spec.name, timeout_s=spec.timeout or pb.timeout,
                  only_if=parse(spec.only_if, "shell", "only_if"), guard=parse(guard, "shell", "guard"))
    step: Step | None = None
    if isinstance(spec, RunSpec):
        command = parse(spec.run, "shell", "run")
        if command:
            step = RunStep(**common, command=command)
    elif isinstance(spec, CheckSpec):
        command, message = parse(spec.check, "shell", "check"), parse(spec.message, "text", "message")
        if command and message:
            step = CheckStep(**common, command=command, message=message, wait=spec.wait, interval_s=spec.interval)
    elif isinstance(spec, UploadSpec):
        source = parse(spec.upload.source, "text", "upload.source")
        dest = parse(spec.upload.dest, "text", "upload.dest")
        if source and dest:
            step = UploadStep(**common, source=source, dest=dest, mode=spec.upload.mode)
    elif isinstance(spec, TemplateSpec):
        source = (path.parent / spec.template.source).resolve()
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(f"{path}: {label}: field template.source: cannot read {source}: "
                            f"{exc.strerror or exc}")
            text = None
        content = parse(text, "file", f"template.source ({source.name})") if text is not None else None
        dest = parse(spec.template.dest, "text", "template.dest")
        if content and dest:
            step = TemplateStep(**common, source=source, content=content, dest=dest, mode=spec.template.mode)
    if problems or step is None:
        raise _StepProblems(problems)
    return step


def _check_names(path: Path, steps: list[Step]) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for step in steps:
        if step.name in seen:
            problems.append(f"{path}: {step.label}: the name is already used by step {seen[step.name]}: "
                            "names identify steps in run records")
        seen.setdefault(step.name, step.index)
    return problems


def _check_placeholders(path: Path, pb: PlaybookFile, steps: list[Step]) -> list[str]:
    problems: list[str] = []
    used: set[str] = set()
    for step in steps:
        for field, template in step.templates().items():
            for p in template.placeholders:
                used.add(p.name)
                spec = pb.variables.get(p.name)
                if spec is None:
                    problems.append(f"{path}: {step.label}: field {field}: unknown variable {p.name!r} "
                                    f"(declared: {', '.join(sorted(pb.variables)) or 'none'})")
                    continue
                if spec.secret and template.context != "file":
                    problems.append(f"{path}: {step.label}: field {field}: {p.name} is secret: it may only be "
                                    "rendered into a template file, never into a command, path or message")
                    continue
                if spec.secret and isinstance(step, TemplateStep) and step.mode & 0o077:
                    problems.append(f"{path}: {step.label}: field template.mode: the template renders the "
                                    f"secret {p.name}, so its mode must be 0600 or stricter, not {step.mode:04o}")
                problem = template.check_value_kind(p.name, spec.type)
                if problem:
                    problems.append(f"{path}: {step.label}: field {field}: {problem}")
    for name in sorted(set(pb.variables) - used):
        problems.append(f"{path}: variables.{name}: declared but never used (a typo in a placeholder?)")
    return _unique(problems)


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _pydantic_lines(path: Path, exc: ValidationError, where: Any) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        label, loc = where(tuple(err["loc"]))
        field = ".".join(str(p) for p in loc) or "(step)"
        msg = err["msg"].removeprefix("Value error, ")
        prefix = f"{path}: {label}: " if label else f"{path}: "
        lines.append(f"{prefix}field {field}: {msg}")
    return _unique(lines)
