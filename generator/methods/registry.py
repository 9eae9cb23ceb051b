"""Every generation method by name (one dict literal), and every template role: the methods' own,
then the roles of the stages all methods share (completion, conversations)."""

from __future__ import annotations

from generator.core.errors import ConfigError
from generator.methods.alpaca_batch import AlpacaBatch
from generator.methods.base import Method, Role
from generator.methods.custom import Custom
from generator.methods.documents import Documents
from generator.methods.evol_instruct import EvolInstruct
from generator.methods.magpie import Magpie
from generator.methods.paraphrase import Paraphrase
from generator.methods.private_evolution import PrivateEvolution
from generator.methods.self_instruct import SelfInstruct

METHODS: dict[str, type[Method]] = {
    "self_instruct": SelfInstruct,
    "alpaca_batch": AlpacaBatch,
    "evol_instruct": EvolInstruct,
    "custom": Custom,
    "magpie": Magpie,
    "paraphrase": Paraphrase,
    "documents": Documents,
    "private_evolution": PrivateEvolution,
}

# The roles of the stages every method's instructions go through.
STAGE_ROLES: dict[str, Role] = {
    "classify": Role("classify", "Is an instruction a classification task?", frozenset({"instruction"})),
    "instance_input_first": Role(
        "instance_input_first", "Input, then output.", frozenset({"instruction", "num_instances", "examples"})
    ),
    "instance_output_first": Role(
        "instance_output_first",
        "Label first, then input (classification).",
        frozenset({"instruction", "num_instances", "examples"}),
    ),
    "response": Role("response", "Answer an instruction (and its input).", frozenset({"instruction", "input"})),
    "user_turn": Role(
        "user_turn",
        "The user's next message in a conversation (`generation.turns` above 1).",
        frozenset({"conversation", "persona", "goal", "turn", "turns"}),
    ),
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ConfigError(f"unknown generation method {name!r}; valid methods: {', '.join(METHODS)}")
    return METHODS[name]


def all_roles() -> dict[str, Role]:
    """Every role by name: each method's, in registry order, then the shared stages'."""
    out: dict[str, Role] = {}
    for method in METHODS.values():
        out.update(method.roles)
    out.update(STAGE_ROLES)
    return out
