"""The filter registry: a name in the config maps to a filter class here, and nowhere else."""

from __future__ import annotations

import inspect
from typing import Any

from filters.base import Filter
from filters.decontam import Decontaminate
from filters.dedup import ExactDedup, SemanticDedup
from filters.heuristics import (
    BlocklistFilter,
    InstanceFilter,
    InstructionFormFilter,
    LengthFilter,
    TruncatedFilter,
)
from filters.judge import LLMJudge
from filters.language import LanguageFilter
from filters.pii import PIIFilter
from filters.refusal import RefusalFilter
from filters.repetition import RepetitionFilter

FILTERS: dict[str, type[Filter]] = {
    "length": LengthFilter,
    "blocklist": BlocklistFilter,
    "instruction_form": InstructionFormFilter,
    "instance": InstanceFilter,
    "truncated": TruncatedFilter,
    "repetition": RepetitionFilter,
    "refusal": RefusalFilter,
    "pii": PIIFilter,
    "language": LanguageFilter,
    "judge": LLMJudge,
    "exact_dedup": ExactDedup,
    "semantic_dedup": SemanticDedup,
    "decontaminate": Decontaminate,
}


def _params(cls: type[Filter]) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items() if n != "self" and p.kind is p.KEYWORD_ONLY
            or (n != "self" and p.kind is p.POSITIONAL_OR_KEYWORD)}


def check_spec(spec: dict[str, Any]) -> None:
    """Raise ValueError naming the valid choices when a filter spec names an unknown filter or
    parameter."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"each filter needs a 'name' (one of: {', '.join(FILTERS)}), got {spec!r}")
    name = spec["name"]
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; valid filters: {', '.join(FILTERS)}")
    valid = _params(FILTERS[name])
    unknown = sorted(set(spec) - {"name"} - set(valid))
    if unknown:
        listing = ", ".join(valid) or "none"
        raise ValueError(f"filter {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"valid parameters: {listing}")


def build(spec: dict[str, Any]) -> Filter:
    check_spec(spec)
    params = {k: v for k, v in spec.items() if k != "name"}
    return FILTERS[spec["name"]](**params)


def build_chain(specs: list[dict[str, Any]]) -> list[Filter]:
    return [build(spec) for spec in specs]
