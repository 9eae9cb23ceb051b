"""The one Jinja sandbox every template renders in, and the metadata a template starts with.

Prompt templates (generator/prompting/templates.py), the filters' prompts (the LLM judge, dedup's
judge) and the dataset card all render here: a sandboxed environment with `StrictUndefined`, so a
missing variable or an unsafe attribute (`__class__`) is an error, never an empty string.

A template's metadata is YAML inside a leading Jinja comment, `{#--- ... ---#}`; being a comment,
the file stays valid Jinja as a whole and error line numbers are the file's own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment

from generator.core.errors import ConfigError

FRONT_MATTER = re.compile(r"\A\{#-?[ \t]*---[ \t]*\n(.*?)\n[ \t]*---[ \t]*-?#\}", re.DOTALL)


def to_json(value: Any) -> str:
    """JSON as a model should read it: keys in the given order, text unescaped (Jinja's own
    `tojson` sorts keys and escapes `<`, `>`, `&` and `'` for HTML)."""
    return json.dumps(value, ensure_ascii=False)


def environment(
    *, trim: bool = True, keep_trailing_newline: bool = False, filters: dict[str, Callable[..., Any]] | None = None
) -> SandboxedEnvironment:
    """A sandboxed environment with `StrictUndefined`, no autoescaping and the `to_json` filter.

    `trim` sets `trim_blocks` and `lstrip_blocks` (a tag alone on its line leaves no blank line);
    `filters` adds filters of the caller's own.
    """
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        trim_blocks=trim,
        lstrip_blocks=trim,
        autoescape=False,
        keep_trailing_newline=keep_trailing_newline,
    )
    env.filters["to_json"] = to_json
    env.filters.update(filters or {})
    return env


def has_front_matter(source: str) -> bool:
    return FRONT_MATTER.match(source) is not None


def read_front_matter(source: str, path: Path | str) -> dict[str, Any] | None:
    """The YAML mapping in the template's leading metadata comment, or None when it has none.
    Invalid YAML is a ConfigError naming `path` and the line."""
    m = FRONT_MATTER.match(source)
    if m is None:
        return None
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1  # +1 for 0-based, +1 for the `{#---` line
        raise ConfigError(
            f"{path}:{line}: template metadata is not valid YAML: {getattr(err, 'problem', err)}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:2: template metadata must be a YAML mapping, got {type(data).__name__}")
    return data


def body_source(source: str) -> str:
    """The source with its metadata comment and the newline after it reduced to an empty comment
    over as many lines: what follows renders from its first character, at its own line number,
    whatever the environment's trimming."""
    m = FRONT_MATTER.match(source)
    if m is None:
        return source
    end = m.end() + (1 if source.startswith("\n", m.end()) else 0)
    return "{#" + "\n" * source.count("\n", 0, end) + "#}" + source[end:]


# -- text templates: the whole file is one message --------------------------------------------------

TEXT_ENV = environment(trim=False, keep_trailing_newline=True)
"""Text templates render verbatim: no trimming, the file's final newline kept."""


@dataclass(frozen=True)
class TextTemplate:
    """A template whose text after its metadata is one message, rendered verbatim (the filters'
    prompts). The metadata is optional: `meta` is empty without it."""

    path: Path
    source: str
    meta: dict[str, Any]
    variables: frozenset[str]
    """Every variable the template reads, derived from its source."""
    _template: Any = field(repr=False)

    def render(self, **values: Any) -> str:
        return self._template.render(**values)


def text_template(source: str, path: Path | str = "<string>") -> TextTemplate:
    """Compile a text template; invalid metadata or Jinja is a ConfigError naming `path` and the line."""
    path = Path(path)
    info = read_front_matter(source, path) or {}
    body = body_source(source)
    try:
        ast = TEXT_ENV.parse(body, name=path.name, filename=str(path))
        compiled = TEXT_ENV.from_string(body)
    except TemplateError as err:
        line = getattr(err, "lineno", None) or 1
        why = getattr(err, "message", None) or err
        raise ConfigError(f"{path}:{line}: the template is not valid Jinja: {why}") from None
    used = frozenset(meta.find_undeclared_variables(ast) - set(TEXT_ENV.globals))
    return TextTemplate(path=path, source=source, meta=info, variables=used, _template=compiled)


def load_text_template(path: Path) -> TextTemplate:
    try:
        source = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return text_template(source, path)
