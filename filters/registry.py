"""The filter registry: a name in the config maps to a filter class here, and nowhere else. What
each filter accepts is its spec in filters/specs.py, checked when the config loads."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from filters.base import Filter
from filters.code_exec import CodeExecFilter
from filters.constraints import ConstraintsFilter
from filters.decontam import Decontaminate
from filters.dedup import ExactDedup, SemanticDedup
from filters.grounded import GroundedFilter
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
from filters.query import QueryFormFilter
from filters.refusal import RefusalFilter
from filters.repetition import RepetitionFilter
from filters.schema import SchemaFilter
from filters.specs import FilterSpec

FILTERS: dict[str, type[Filter]] = {
    "length": LengthFilter,
    "blocklist": BlocklistFilter,
    "instruction_form": InstructionFormFilter,
    "query_form": QueryFormFilter,
    "instance": InstanceFilter,
    "truncated": TruncatedFilter,
    "repetition": RepetitionFilter,
    "refusal": RefusalFilter,
    "grounded": GroundedFilter,
    "pii": PIIFilter,
    "language": LanguageFilter,
    "judge": LLMJudge,
    "exact_dedup": ExactDedup,
    "semantic_dedup": SemanticDedup,
    "decontaminate": Decontaminate,
    "constraints": ConstraintsFilter,
    "schema": SchemaFilter,
    "code_exec": CodeExecFilter,
}


def build(spec: FilterSpec, *, base_dir: str | Path | None = None, where: str | None = None) -> Filter:
    """The filter a validated spec describes; one that reads files (`spec.reads_files`) reads them
    now, relative paths from `base_dir`, errors naming the key `where`."""
    params = spec.params()
    if spec.reads_files:
        params.update(base_dir=base_dir, where=where or spec.name)
    return FILTERS[spec.name](**params)


def build_chain(
    specs: Iterable[FilterSpec], *, base_dir: str | Path | None = None, where: str = "filters"
) -> list[Filter]:
    """The filters of a chain; `where` is the chain's key (`filters.records`) in errors."""
    return [build(spec, base_dir=base_dir, where=f"{where}[{i}]") for i, spec in enumerate(specs)]
