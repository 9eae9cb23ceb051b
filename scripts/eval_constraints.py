"""How an IFEval-format file's instructions map onto the constraint registry (filters/constraints.py).

For every instruction id in the file: whether a type here checks it, and whether its kwargs (IFEval's
names, null values left out) validate as that type's typed kwargs; then how many of the file's
prompts combine two types declared in conflict here (IFEval's prompts avoid IFEval's own conflicts,
so a hit is a conflict declared here and not there). With --answers, a JSONL of {prompt, response}
(IFEval's response format), the pass rate per type of those responses.

    .venv/bin/python scripts/eval_constraints.py ifeval_input_data.jsonl [--answers responses.jsonl]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from filters.constraints import CONSTRAINTS, ConstraintError, conflicts, parse_constraint

BY_IFEVAL = {cls.ifeval: name for name, cls in CONSTRAINTS.items()}


def _entries(row: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    kwargs = row.get("kwargs") or [{}] * len(row["instruction_id_list"])
    return [
        (i, {k: v for k, v in (kw or {}).items() if v is not None}) for i, kw in zip(row["instruction_id_list"], kwargs)
    ]


def measure(rows: list[dict[str, Any]], answers: dict[str, str]) -> dict[str, Any]:
    seen, valid, errors = Counter(), Counter(), Counter()
    passed, checked = Counter(), Counter()
    unknown: Counter[str] = Counter()
    clash = conflicts()
    conflicting = 0
    for row in rows:
        names = []
        for ifeval_id, kwargs in _entries(row):
            name = BY_IFEVAL.get(ifeval_id)
            if name is None:
                unknown[ifeval_id] += 1
                continue
            seen[name] += 1
            names.append(name)
            try:
                _, constraint = parse_constraint({"type": name, "kwargs": kwargs})
            except ConstraintError as err:
                errors[str(err)] += 1
                continue
            valid[name] += 1
            answer = answers.get(row["prompt"])
            if answer is not None:
                checked[name] += 1
                passed[name] += constraint.check(answer)
        conflicting += any(b in clash[a] for a, b in itertools.combinations(names, 2))
    return {
        "prompts": len(rows),
        "instructions": sum(seen.values()) + sum(unknown.values()),
        "types": {
            n: {
                "seen": seen[n],
                "kwargs_valid": valid[n],
                **({"checked": checked[n], "passed": passed[n]} if checked[n] else {}),
            }
            for n in sorted(seen)
        },
        "not_defined_here": dict(unknown),
        "kwargs_errors": dict(errors),
        "prompts_combining_conflicting_types": conflicting,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="IFEval input data (JSONL: prompt, instruction_id_list, kwargs)")
    parser.add_argument("--answers", type=Path, help="JSONL of {prompt, response} to check")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.file.read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = {}
    if args.answers is not None:
        for line in args.answers.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                answers[item["prompt"]] = item["response"]
    json.dump(measure(rows, answers), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
