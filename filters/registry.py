"""The filter registry: a name in the config maps to a filter class here, and nowhere else. What
each filter accepts is its spec in filters/specs.py, checked when the config loads."""

from __future__ import annotations

from collections.abc import Iterable

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
from filters.specs import FilterSpec

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


def build(spec: FilterSpec) -> Filter:
    """The filter a validated spec describes."""
    return FILTERS[spec.name](**spec.params())


def build_chain(specs: Iterable[FilterSpec]) -> list[Filter]:
    return [build(spec) for spec in specs]
