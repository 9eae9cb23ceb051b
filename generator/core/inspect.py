"""`instructforge inspect SOURCE`: what the reader will make of a source before a run uses it (the
detected format, rows per split, where each key goes, two rows as read)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.core import readers

KEY_FIELDS = {
    "instruction": "instruction",
    "input": "input",
    "output": "output",
    "id": "id (meta.source_id where it differs from ours)",
    "instances": "input, output (all in meta.instances)",
    "conversations": "messages",
    "messages": "messages",
    "context": "input",
    "response": "output",
    "completion": "output",
    "answer": "output",
    "prompt": "instruction / prompt",
    "question": "instruction",
    "text": "instruction",
    "turns": "messages (user turns)",
    "chosen": "messages (last answer) / chosen",
    "rejected": "rejected",
    "output_1": "output / chosen or rejected",
    "output_2": "chosen or rejected",
    "tools": "tools",
    "meta": "meta",
}
"""Where a consumed key goes, by name (a key a row keeps in `meta` says so instead)."""
SAMPLES = 2
CLIP = 300


@dataclass
class Inspection:
    """What `inspect_source` found: formats and rows per split, each key's destination, samples."""

    source: str
    formats: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)
    keys: dict[str, str] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"source: {self.source}",
            "format: " + ", ".join(f"{f} ({n} rows)" for f, n in self.formats.most_common()),
            "rows per split: " + ", ".join(f"{s} {n}" for s, n in self.splits.items()),
            "keys:",
            *(f"  {key} -> {where}" for key, where in self.keys.items()),
        ]
        for i, sample in enumerate(self.samples, 1):
            lines.append(f"row {i} as read: {json.dumps(sample, ensure_ascii=False)}")
        return "\n".join(lines)


def inspect_source(
    source: str | Path, *, format: str | None = None, columns: Mapping[str, str] | None = None
) -> Inspection:
    """Read `source` as every command does (`readers.open_tables`, `common_rows`) and say how."""
    result = Inspection(str(source))
    renamed = {column: name for name, column in readers.check_column_map(columns).items()}
    for table in readers.open_tables(source, what="source"):
        split = table.split
        raw_rows: list[dict[str, Any]] = []
        table.rows = _recorded(table.rows, raw_rows)
        for row in readers.common_rows(table, format=format, columns=columns):
            result.formats[row.format] += 1
            result.splits[split] += 1
            record = row.to_record()
            for key in raw_rows[-1]:
                result.keys.setdefault(key, _destination(key, renamed, record.meta))
            if len(result.samples) < SAMPLES:
                result.samples.append(_clipped(_sample(record)))
    return result


def _recorded(rows: Any, seen: list[dict[str, Any]]) -> Any:
    for where, row in rows:
        seen.append(row)
        yield where, row


def _destination(key: str, renamed: Mapping[str, str], meta: Mapping[str, Any]) -> str:
    name = renamed.get(key, key)
    if name in meta and name not in ("preference",):
        return f"meta.{name}"
    if name == "category" and "task_type" in meta:
        return "meta.task_type"
    return KEY_FIELDS.get(name, "dropped (repeated elsewhere, or not read)")


def _sample(record: Any) -> dict[str, Any]:
    row = record.to_row()
    pair = record.meta.get("preference")
    if isinstance(pair, dict) and "rejected" in pair:
        row["prompt"], row["chosen"] = row["messages"][:-1], row["messages"][-1:]
        row["rejected"] = [{"role": "assistant", "content": pair["rejected"]}]
        row["meta"] = {k: v for k, v in row["meta"].items() if k != "preference"}
    return row


def _clipped(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= CLIP else value[:CLIP] + " …"
    if isinstance(value, list):
        return [_clipped(v) for v in value]
    if isinstance(value, dict):
        return {k: _clipped(v) for k, v in value.items()}
    return value
