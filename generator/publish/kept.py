"""The records kept for the dataset, spilled to a JSONL file as they are kept, so that a run holds
none of them in memory; the dataset write streams them back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from generator.core.records import Record


class KeptRecords:
    """An append-only file of records: iterable (in the order appended, as often as needed), sized,
    and knowing the templates its records came from (the card lists them).

    The file is started afresh when the object is made: a run rebuilds it from the stored results,
    as it does rejected.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.templates: set[str] = set()
        self._count = 0

    def extend(self, records: Iterable[Record]) -> None:
        lines = []
        for r in records:
            lines.append(
                json.dumps(
                    {
                        "instruction": r.instruction,
                        "input": r.input,
                        "output": r.output,
                        "meta": r.meta,
                        "turns": r.turns,
                    },
                    ensure_ascii=False,
                    default=str,
                )
            )
            if r.meta.get("template"):
                self.templates.add(str(r.meta["template"]))
        if lines:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            self._count += len(lines)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Record]:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                yield Record(d["instruction"], d["input"], d["output"], d["meta"], d["turns"])
