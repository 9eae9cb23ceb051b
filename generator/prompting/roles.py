"""Template roles: which variables each role's template is given, and loading a config's templates.

A run's config names one template per role (`generation.templates`); a user's own template for a
role may read the role's variables (and those it gives defaults for), and nothing else.
"""

from __future__ import annotations

from generator.config import Config, TemplatesConfig
from generator.core.errors import ConfigError
from generator.prompting.templates import PromptTemplate, check_variables, load_template

ROLE_VARIABLES: dict[str, set[str]] = {
    "instructions": {"demonstrations", "num_instructions"},
    "batch": {"demonstrations", "num_tasks"},
    "evol_depth": {"instruction", "operation"},
    "evol_breadth": {"instruction"},
    "custom": {"topic", "persona", "difficulty", "directive", "demonstrations", "num_instructions"},
    "classify": {"instruction"},
    "instance_input_first": {"instruction", "num_instances"},
    "instance_output_first": {"instruction", "num_instances"},
    "response": {"instruction", "input"},
    "user_turn": {"conversation", "persona", "goal", "turn", "turns"},
}


def load_templates(config: Config) -> dict[str, PromptTemplate]:
    """Every role's template, loaded and checked before any request is sent: syntax errors name
    the file and line, and variables a template needs but will not get are listed."""
    out = {}
    for role, ref in config.generation.templates.model_dump().items():
        local = config.resolve(ref)
        tpl = load_template(local if local.is_file() else ref)
        if tpl.meta.parser is None:
            raise ConfigError(
                f"generation.templates.{role}: {ref!r} is a filter's prompt (produces: {tpl.meta.produces}), "
                f"not a generation template; use a template with a parser, such as the built-in "
                f"{TemplatesConfig.model_fields[role].default!r}"
            )
        check_variables(tpl, ROLE_VARIABLES[role])
        out[role] = tpl
    return out
