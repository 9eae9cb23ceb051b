"""Structured answers: the `schema` filter validates each output, read as JSON, against a JSON schema
with `jsonschema`."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from filters.base import KEEP, Filter, Verdict, drop
from filters.constraints import unfenced
from generator.core.records import Record


class SchemaFilter(Filter):
    """Drops outputs that are not JSON (`not_json`) or do not match the schema (`schema_mismatch`,
    with the failing path and rule); counts every check (`pass_rates()`)."""

    name = "schema"

    def __init__(self, json_schema: dict[str, Any]):
        from jsonschema import validators

        cls = validators.validator_for(json_schema)
        self.validator = cls(json_schema, format_checker=cls.FORMAT_CHECKER)
        self.tally: Counter[str] = Counter()

    def judge(self, records: list[Record]) -> list[Verdict]:
        out = [self._one(r.output) for r in records]
        self.tally["checked"] += len(out)
        self.tally["passed"] += sum(v.keep for v in out)
        return out

    def _one(self, output: str) -> Verdict:
        try:
            value = json.loads(unfenced(output))
        except ValueError as err:
            return drop("not_json", error=f"{err.msg} at character {err.pos}" if hasattr(err, "msg") else str(err))
        error = next(iter(sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))), None)
        if error is not None:
            where = "/".join(map(str, error.absolute_path)) or "(top level)"
            return drop("schema_mismatch", error=f"{where}: {error.message}"[:300], rule=str(error.validator))
        return KEEP

    def pass_rates(self) -> dict[str, int]:
        return {"checked": self.tally["checked"], "passed": self.tally["passed"]}
