"""The README's configuration and CLI reference, generated from the code so it cannot drift.

`python -m generator.docs` rewrites the marked sections of README.md; a test fails when they
differ from what the code says.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from filters.specs import FilterSpec
from generator.cli import build_parser
from generator.config import Config, FiltersConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, FilterSpec):
        return f"`{value.name}` (see the filter catalogue)"
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "null"
    if isinstance(value, list) and value and all(isinstance(v, dict) and "name" in v for v in value):
        return ", ".join(f"`{v['name']}`" for v in value) + " (see the filter catalogue)"
    if isinstance(value, Path):
        return f"`{value}`"
    text = repr(value) if not isinstance(value, str) else value
    return f"`{text}`"


def _optional_section(ann: Any) -> type[BaseModel] | None:
    """The section of a `Section | None` or `list[Section]` setting; None for anything else (a
    filter spec is documented in the filter catalogue)."""
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return None if issubclass(args[0], FilterSpec) else args[0]
    return None


def config_reference() -> str:
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            key = f"{prefix}{name}"
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")
                continue
            desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            rows.append(f"| `{key}` | {_default(field).replace('|', chr(92) + '|')} | {desc} |")
            section = _optional_section(ann)
            if section is not None:  # an optional section or a list of them: their settings too
                walk(section, key + ("[]." if typing.get_origin(ann) is list else "."))

    walk(Config, "")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _yaml(value: Any) -> str:
    """`value` as YAML on one line, as a config would write it."""
    return yaml.safe_dump([value], default_flow_style=True, sort_keys=False, width=1000).strip()[1:-1]


def filter_catalogue() -> str:
    """The default chains, then per filter: what it drops, its parameters and its reason codes."""
    from filters.registry import FILTERS
    from filters.specs import SPECS

    chains = {
        name: field.default_factory()
        for name, field in FiltersConfig.model_fields.items()
        if name in ("instructions", "records")
    }
    lines = ["Default chains:", "", "```yaml", "filters:"]
    for name, specs in chains.items():
        lines.append(f"  {name}:")
        lines.extend(f"    - {_yaml(spec)}" for spec in specs)
    lines.append("```")
    for name in FILTERS:
        spec = SPECS[name]
        lines += ["", f"### `{name}`", "", " ".join(inspect.cleandoc(spec.__doc__ or "").split()), ""]
        params = [(key, field) for key, field in spec.model_fields.items() if key != "name"]
        if params:
            lines += ["| parameter | default | meaning |", "| --- | --- | --- |"]
            for key, field in params:
                value = None if field.is_required() else field.get_default(call_default_factory=True)
                default = "required" if field.is_required() else f"`{_yaml(value)}`"
                lines.append(f"| `{key}` | {default} | {_cell(field.description or '')} |")
        else:
            lines.append("No parameters.")
        lines += ["", "| reason | meaning |", "| --- | --- |"]
        lines += [f"| `{reason}` | {_cell(meaning)} |" for reason, meaning in spec.reasons.items()]
    return "\n".join(lines)


def cli_reference() -> str:
    parser = build_parser()
    parts = []

    def visit(p: argparse.ArgumentParser, name: str) -> None:
        p.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=100)
        parts.append(f"### `{name}`\n\n```text\n{p.format_help().rstrip()}\n```")
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    visit(sub, f"{name} {sub_name}")

    visit(parser, "instructforge")
    return "\n\n".join(parts)


def template_roles() -> str:
    from generator.config import TemplatesConfig
    from generator.prompting.roles import ROLE_VARIABLES

    rows = [
        "| role (`generation.templates.*`) | built-in | what it asks for | variables it is given |",
        "| --- | --- | --- | --- |",
    ]
    for role, field in TemplatesConfig.model_fields.items():
        variables = ", ".join(f"`{v}`" for v in sorted(ROLE_VARIABLES[role]))
        rows.append(f"| `{role}` | `{field.default}` | {field.description or ''} | {variables} |")
    return "\n".join(rows)


def template_metadata() -> str:
    from generator.prompting.parse import PARSERS
    from generator.prompting.templates import TemplateMeta

    rows = ["| key | meaning |", "| --- | --- |"]
    for name, field in TemplateMeta.model_fields.items():
        desc = (field.description or "").replace("|", chr(92) + "|")
        if name == "parser":
            desc += " One of: " + ", ".join(f"`{p}`" for p in PARSERS) + "."
        rows.append(f"| `{name}` | {desc} |")
    return "\n".join(rows)


def read_formats() -> str:
    """The schemas the reader recognises, how it tells them, and a row of each."""
    from generator.core.readers import EXAMPLES, FORMATS

    rows = ["| `format` | keys | example row |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | {_cell(keys)} | `{_cell(EXAMPLES[name])}` |" for name, keys in FORMATS.items()]
    return "\n".join(rows)


def method_list() -> str:
    """Every generation method: what it does, its section, its template roles, its example config."""
    from generator.methods.registry import METHODS

    rows = ["| `method` | what it does | settings | template roles | example |", "| --- | --- | --- | --- | --- |"]
    for name, method in METHODS.items():
        section = f"`generation.{method.section}`" if method.section else "-"
        roles = ", ".join(f"`{r}`" for r in method.roles) or "- (a raw prompt)"
        rows.append(f"| `{name}` | {_cell(method.summary)} | {section} | {roles} | `configs/{method.example}` |")
    return "\n".join(rows)


def constraint_types() -> str:
    """The constraint registry (filters/constraints.py): each type's kwargs, check and conflicts."""
    from filters.constraints import CONSTRAINTS, conflicts

    clash = conflicts()
    lines = ["| type | kwargs | the answer must | IFEval id | conflicts with |", "| --- | --- | --- | --- | --- |"]
    for name, cls in CONSTRAINTS.items():
        kwargs = ", ".join(f"`{k}`" for k in cls.model_fields) or "none"
        others = sorted(clash[name] - {name})
        free = sorted(set(CONSTRAINTS) - clash[name])
        said = "all but " + ", ".join(free) if len(others) > len(CONSTRAINTS) // 2 else ", ".join(others) or "none"
        lines.append(f"| `{name}` | {kwargs} | {_cell(cls.about)} | `{cls.ifeval}` | {said} |")
    return "\n".join(lines)


SECTIONS = {
    "methods": method_list,
    "read-formats": read_formats,
    "config-reference": config_reference,
    "filter-catalogue": filter_catalogue,
    "template-metadata": template_metadata,
    "template-roles": template_roles,
    "cli-reference": cli_reference,
    "constraint-types": constraint_types,
}


def render(text: str) -> str:
    for marker, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- BEGIN {marker} -->\n).*?(<!-- END {marker} -->)", re.DOTALL)
        m = pattern.search(text)
        if m is None:
            raise SystemExit(f"README.md lacks the markers <!-- BEGIN {marker} --> ... <!-- END {marker} -->")
        text = text[: m.end(1)] + make() + "\n" + text[m.start(2) :]
    return text


def main() -> int:
    old = README.read_text(encoding="utf-8")
    new = render(old)
    if "--check" in sys.argv[1:]:
        return 0 if new == old else 1
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
