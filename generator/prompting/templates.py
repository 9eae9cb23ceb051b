"""Prompt templates: load, check and render Jinja templates into chat messages.

A template is a `.jinja` file that starts with its metadata as YAML inside a Jinja comment,
then one block per chat message:

    {#---
    description: Ask for new task instructions.
    produces: instructions          # what the items are: see TemplateMeta.produces
    parser: instruction_list        # a name in generator.prompting.parse.PARSERS
    sampling: {temperature: 1.0, max_tokens: 512, stop: ["\\n\\n\\n"]}
    json_schema: null               # a JSON schema -> response_format (structured output)
    variables:                      # every variable the template uses, documented
      demonstrations: tasks shown as examples (each with .instruction)
      num_instructions: how many new instructions to ask for
    defaults: {num_instructions: 8}
    ---#}
    {% block system %}You write tasks.{% endblock %}
    {% block user %}...{% endblock %}

The metadata is a Jinja comment, so the file is valid Jinja as a whole and error line numbers
are the file's own. Rendering uses the sandbox of generator/core/sandbox.py with `StrictUndefined`:
a missing variable or an unsafe attribute (`__class__`) is an error, never an empty string.

The filters' prompts (`produces: judge_scores` for the LLM judge, `same_task` for dedup's judge)
have no blocks and no parser: the whole text after the metadata is the one user message, rendered
verbatim (generator.core.sandbox.TextTemplate, which the filters use), and the filter reads the
answer itself.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.core.errors import ConfigError, describe_errors
from generator.core.paths import builtin_dir
from generator.core.sandbox import environment, has_front_matter, read_front_matter, text_template
from generator.prompting.parse import PARSERS

ROLES = ("system", "user")
FILTER_PRODUCES = ("judge_scores", "same_task")
"""What a filter's prompt produces: one text message, no parser (the filter reads the answer)."""


class TemplateSampling(BaseModel):
    """Sampling defaults a template sets; anything left None falls back to the run config."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class TemplateMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(description="One line: what the template asks the model for.")
    criteria: list[str] | None = Field(
        None, description="A judge rubric's criteria, each scored 1-5 (filter `judge`); none: its defaults."
    )
    produces: Literal[
        "instructions",
        "classification_flag",
        "instances",
        "tasks",
        "response",
        "user_turn",
        "judge_scores",
        "same_task",
    ] = Field(
        description="What the parsed items are: instructions, classification_flag, instances "
        "(input/output), tasks (instruction/input/output), response (an output) or user_turn (a "
        "conversation's next user message); or, for a "
        "filter's prompt, judge_scores (the LLM judge's 1-5 scores) or same_task (dedup's yes/no)."
    )
    parser: str | None = Field(
        None,
        description="Name of the parser in generator.prompting.parse.PARSERS; "
        "none for a filter's prompt, whose filter reads the answer itself.",
    )
    sampling: TemplateSampling = Field(
        default_factory=TemplateSampling,
        description="Sampling laid over the config's for this template: temperature, top_p, max_tokens, stop, "
        "presence_penalty, frequency_penalty.",
    )
    json_schema: dict[str, Any] | None = Field(
        None, description="JSON schema of the answer; sent as `response_format` when set."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Every variable the template uses, with what it holds."
    )
    defaults: dict[str, Any] = Field(default_factory=dict, description="Values of optional variables.")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    path: Path
    source: str
    meta: TemplateMeta
    variables: frozenset[str]
    """Every variable the template reads, derived from its source."""
    _template: Any  # jinja2.Template, or a core.sandbox.TextTemplate for a filter's prompt; compiled once

    @functools.cached_property
    def digest(self) -> str:
        """A short hash of the template's text: which version of the template made a record."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]

    @property
    def required(self) -> frozenset[str]:
        """Variables the caller must provide: those without a default."""
        return self.variables - set(self.meta.defaults)

    @property
    def sampling(self) -> dict[str, Any]:
        """Only the sampling settings the template sets (to be laid over the config's)."""
        return self.meta.sampling.model_dump(exclude_none=True)

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The OpenAI `response_format` for the template's JSON schema, or None."""
        if self.meta.json_schema is None:
            return None
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.meta.json_schema, "strict": True},
        }


_ENV = environment()


def _read_meta(source: str, path: Path) -> TemplateMeta:
    data = read_front_matter(source, path)
    if data is None:
        raise ConfigError(
            f"{path}:1: the template has no metadata; start it with a Jinja comment holding YAML, "
            "like '{#---\\ndescription: ...\\nproduces: instructions\\nparser: instruction_list\\n---#}'"
        )
    try:
        info = TemplateMeta.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: template metadata: {describe_errors(err, data)}") from None
    if info.produces in FILTER_PRODUCES:
        if info.parser is not None:
            raise ConfigError(
                f"{path}: template metadata: a filter's prompt (produces: {info.produces}) "
                f"takes no parser, got {info.parser!r}; remove the parser line"
            )
    elif info.parser not in PARSERS:
        raise ConfigError(
            f"{path}: template metadata: unknown parser {info.parser!r}; valid parsers: {', '.join(PARSERS)}"
        )
    return info


def _check_layout(ast: nodes.Template, path: Path) -> None:
    """Text outside the `system`/`user` blocks would be silently lost: reject it."""
    blocks = [n.name for n in ast.find_all(nodes.Block)]
    unknown = sorted(set(blocks) - set(ROLES))
    if unknown:
        raise ConfigError(
            f"{path}: unknown block {', '.join(map(repr, unknown))}; a template has "
            f"a 'system' and/or a 'user' block, one per chat message"
        )
    if "user" not in blocks:
        raise ConfigError(f"{path}: no 'user' block; wrap the prompt in {{% block user %}}...{{% endblock %}}")
    for node in ast.body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if not (isinstance(child, nodes.TemplateData) and not child.data.strip()):
                    raise ConfigError(
                        f"{path}:{child.lineno}: text outside the 'system' and 'user' "
                        "blocks is never sent; move it into a block"
                    )


def _top_level_names(ast: nodes.Template) -> set[str]:
    """Macros and `{% set %}` names defined outside the blocks. Jinja compiles each block as its
    own function, so `find_undeclared_variables` counts their use inside a block as undeclared."""
    names: set[str] = set()
    for node in ast.body:
        if isinstance(node, nodes.Macro):
            names.add(node.name)
        elif isinstance(node, (nodes.Assign, nodes.AssignBlock)):
            names.update(n.name for n in node.target.find_all(nodes.Name))
    return names


def load_template(name_or_path: str | Path) -> PromptTemplate:
    """A built-in template by name (`self_instruct`, `self_instruct.jinja`) or a file by path."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        name = str(name_or_path)
        builtin = builtin_dir("prompts") / (name if name.endswith(".jinja") else f"{name}.jinja")
        if "/" in name or not builtin.is_file():
            raise ConfigError(
                f"template not found: {name_or_path!r}; give a path to a .jinja file "
                f"or one of the built-in names: {', '.join(builtin_names())}"
            )
        path = builtin
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return template_from_string(source, path=path)


def template_from_string(source: str, path: Path | str = "<string>") -> PromptTemplate:
    """Compile and check a template's text; `path` names it in error messages."""
    path = Path(path)
    info = _read_meta(source, path)
    if info.produces in FILTER_PRODUCES:
        text = text_template(source, path)
        _check_documented(info, text.variables, path)
        return PromptTemplate(
            name=_name(path), path=path, source=source, meta=info, variables=text.variables, _template=text
        )
    try:
        ast = _ENV.parse(source, name=path.name, filename=str(path))
    except TemplateSyntaxError as err:
        lines = source.splitlines()
        where = lines[err.lineno - 1].strip() if err.lineno and err.lineno <= len(lines) else ""
        raise ConfigError(
            f"{path}:{err.lineno}: template syntax error: {err.message}" + (f" (in: {where})" if where else "")
        ) from None
    _check_layout(ast, path)
    used = frozenset(meta.find_undeclared_variables(ast) - set(_ENV.globals) - _top_level_names(ast))
    _check_documented(info, used, path)
    compiled = _ENV.from_string(source)
    return PromptTemplate(name=_name(path), path=path, source=source, meta=info, variables=used, _template=compiled)


def _name(path: Path) -> str:
    return path.stem if path.suffix == ".jinja" else path.name


def _check_documented(info: TemplateMeta, used: frozenset[str], path: Path) -> None:
    """The metadata lists exactly the variables the template reads, and defaults only for those."""
    undocumented = sorted(used - set(info.variables))
    unused = sorted(set(info.variables) - used)
    if undocumented or unused:
        fix = []
        if undocumented:
            fix.append(f"used but not listed under 'variables': {', '.join(undocumented)}")
        if unused:
            fix.append(f"listed under 'variables' but never used: {', '.join(unused)}")
        raise ConfigError(f"{path}: template metadata does not match the template: " + "; ".join(fix))
    stray_defaults = sorted(set(info.defaults) - used)
    if stray_defaults:
        raise ConfigError(f"{path}: 'defaults' names variables the template never uses: {', '.join(stray_defaults)}")


def missing_variables(template: PromptTemplate, provided: Mapping[str, Any] | set[str]) -> list[str]:
    return sorted(template.required - set(provided))


def check_variables(template: PromptTemplate, provided: Mapping[str, Any] | set[str]) -> None:
    """Raise ConfigError listing every variable the template needs and `provided` lacks."""
    missing = missing_variables(template, provided)
    if missing:
        described = "; ".join(f"{v} ({template.meta.variables.get(v, '')})".replace(" ()", "") for v in missing)
        given = ", ".join(sorted(provided)) or "none"
        raise ConfigError(
            f"template {template.name!r} ({template.path}) needs variables that were "
            f"not given: {described}. Given: {given}."
        )


def render(template: PromptTemplate, variables: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages exactly as they will be sent: a system message when the template has a
    non-empty `system` block, then the user message."""
    check_variables(template, variables)
    values = {**template.meta.defaults, **variables}
    jt = template._template
    try:
        if template.meta.produces in FILTER_PRODUCES:  # one message, verbatim (see the module docstring)
            parts = {"user": jt.render(**values)}
        else:
            ctx = jt.new_context(values)
            # Run the top level once so `{% set %}` and `{% macro %}` outside the blocks exist in ctx.
            for _ in jt.root_render_func(ctx):
                pass
            parts = {role: "".join(jt.blocks[role](ctx)).strip() for role in ROLES if role in jt.blocks}
    except SecurityError as err:
        raise ConfigError(
            f"template {template.name!r} ({template.path}): unsafe access blocked by the sandbox: {err}"
        ) from None
    except TemplateRuntimeError as err:
        raise ConfigError(
            f"template {template.name!r} ({template.path}): rendering failed: {err}; check the variables' values"
        ) from None
    if not parts.get("user"):
        raise ConfigError(
            f"template {template.name!r} ({template.path}) rendered an empty user "
            f"message with variables {sorted(values)}"
        )
    return [{"role": role, "content": parts[role]} for role in ROLES if parts.get(role)]


def builtin_names() -> list[str]:
    return sorted(
        p.stem for p in builtin_dir("prompts").glob("*.jinja") if has_front_matter(p.read_text(encoding="utf-8"))
    )


def list_templates() -> list[PromptTemplate]:
    """Every built-in prompt template (files without metadata, such as the card, are not prompts)."""
    return [load_template(name) for name in builtin_names()]


def preview(
    name_or_path: str | Path, variables: Mapping[str, Any], seeds: str | None = None, num_demonstrations: int = 4
) -> tuple[PromptTemplate, list[dict[str, str]]]:
    """Render a template for a person to read (`instructforge templates render`).

    With `seeds` (`builtin` or a seed file) and a template that reads `demonstrations`,
    `num_demonstrations` seed tasks spread over the file fill it unless `variables` already does.
    """
    template = load_template(name_or_path)
    values = dict(variables)
    if seeds is not None and "demonstrations" in template.variables and "demonstrations" not in values:
        from generator.prompting.seeds import load_seeds

        tasks = list(load_seeds(seeds))
        # Spread over the whole file rather than the first k, which often share one domain.
        k = min(num_demonstrations, len(tasks))
        values["demonstrations"] = [tasks[i * len(tasks) // k] for i in range(k)] if k else []
    return template, render(template, values)
