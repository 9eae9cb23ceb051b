"""Loading a config's templates, one per role.

A run's config names one template per role (`generation.templates`); a user's own template for a
role may read the role's variables (and those it gives defaults for), and nothing else. The roles
are declared by the methods (generator/methods/) and the shared stages (`STAGE_ROLES`).
"""

from __future__ import annotations

from generator.config import Config
from generator.core.errors import ConfigError
from generator.methods.registry import all_roles
from generator.prompting.templates import PromptTemplate, check_variables, load_template

# Every role's variables, by role.
ROLE_VARIABLES: dict[str, set[str]] = {name: set(role.variables) for name, role in all_roles().items()}


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
                f"{all_roles()[role].default!r}"
            )
        check_variables(tpl, ROLE_VARIABLES[role])
        out[role] = tpl
    return out
