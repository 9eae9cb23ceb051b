"""How many rows of a finished run carry a worked example their instance request showed.

    python scripts/bench_leak.py runs/default [more run directories ...]

For each run directory (a self-instruct run with the built-in seeds, such as `make demo`'s), reads
the rows kept for the dataset (`kept.jsonl`) and, for each, the examples its instance request
showed: drawn from the seeds by its instruction (rows with `meta.instance_examples`), or the
template's one built-in example (runs made before examples were drawn). Prints per run:

- `carrying`: rows whose input/output copies a shown example or carries its numbers, units or
  names when the task does not (the completion stage's check, generator/prompting/examples.py);
- `temperature`: rows carrying the built-in example's tokens (212, 98.6, °F, °C) when the
  instruction has none of them: the demo's old symptom, judged the same way for every run;
- `stage drops`: instance requests the completion stage rejected as copies (`copied_from_prompt`)
  or carriers (`carries_example`), from funnel.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from generator.core.paths import builtin_path  # noqa: E402 - after the path is set
from generator.core.text import copy_key  # noqa: E402
from generator.prompting.examples import ExamplePool, carried  # noqa: E402
from generator.prompting.parse import Item  # noqa: E402
from generator.prompting.seeds import load_seeds  # noqa: E402
from generator.prompting.templates import load_template, render  # noqa: E402
from generator.run.complete import _copied, worked_examples  # noqa: E402

TEMPERATURE = re.compile(r"(?<![\w.])(?:212|98\.6)(?![\w])|°\s?[CF]\b")


def _prompt(template: str, instruction: str, examples: list[dict[str, str]] | None) -> tuple[str, str]:
    tpl = load_template(builtin_path("prompts", f"{template}.jinja"))
    values = {**tpl.meta.defaults, "instruction": instruction, "num_instances": 2}
    if examples:
        values["examples"] = examples
    return "\n".join(m["content"] for m in render(tpl, values)), tpl.meta.parser or "instances"


def carries_shown(row: dict, pool: ExamplePool) -> bool:
    meta = row.get("meta") or {}
    template = meta.get("instance_template", "instance_input_first").removesuffix(".jinja")
    examples = None
    if meta.get("instance_examples"):
        drawn = pool.draw(row["instruction"], meta.get("task_type") == "classification")
        examples = [ex.to_dict() for ex in drawn]
    prompt, parser = _prompt(template, row["instruction"], examples)
    shown = worked_examples(parser, prompt)
    item = Item(input=row.get("input", ""), output=row.get("output", ""))
    keys = [(copy_key(i), copy_key(o)) for i, o in shown]
    return _copied(item, prompt, keys, row["instruction"]) or bool(
        carried(f"{item.input}\n{item.output}", item.output, shown, row["instruction"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    pool = ExamplePool(load_seeds("builtin"))
    for run in args.runs:
        rows = [json.loads(line) for line in (run / "kept.jsonl").read_text(encoding="utf-8").splitlines() if line]
        carrying = sum(carries_shown(r, pool) for r in rows)
        temperature = sum(
            bool(TEMPERATURE.search(f"{r.get('input', '')}\n{r.get('output', '')}"))
            and not TEMPERATURE.search(r["instruction"])
            for r in rows
        )
        funnel = (
            json.loads((run / "funnel.json").read_text(encoding="utf-8")) if (run / "funnel.json").is_file() else {}
        )
        drops = (funnel.get("generation") or funnel).get("drops", {}).get("instances", {})
        print(
            f"{run}: {len(rows)} rows; carrying a shown example {carrying} ({carrying / max(len(rows), 1):.0%}); "
            f"temperature example {temperature} ({temperature / max(len(rows), 1):.0%}); stage drops: "
            f"copied_from_prompt {drops.get('copied_from_prompt', 0)}, "
            f"carries_example {drops.get('carries_example', 0)}"
        )


if __name__ == "__main__":
    main()
