"""The README's configuration and CLI reference, generated from the code so it cannot drift.

`python -m generator.docs` rewrites the marked sections of README.md; a test fails when they
differ from what the code says.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from generator.cli import build_parser
from generator.config import Config

README = Path(__file__).resolve().parent.parent / "README.md"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""
    if value is None:
        return "null"
    if isinstance(value, Path):
        return f"`{value}`"
    text = repr(value) if not isinstance(value, str) else value
    return f"`{text}`"


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

    walk(Config, "")
    return "\n".join(rows)


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

    rows = ["| role (`generation.templates.*`) | built-in | what it asks for | variables it is given |",
            "| --- | --- | --- | --- |"]
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


SECTIONS = {"config-reference": config_reference, "cli-reference": cli_reference,
            "template-roles": template_roles, "template-metadata": template_metadata}


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
