"""How many rows carry a worked example their instance request showed.

    python scripts/bench_leak.py runs/self-instruct [more run directories ...]
    python scripts/bench_leak.py --ab INSTRUCTIONS.jsonl [--n 40] [--config self-instruct.yaml]

`--ab` starts the config's server (the bundled model for self-instruct.yaml) and asks the instance
template for every instruction of the file (`{"instruction": ...}` lines; the built-in seeds' when
the file is `seeds`) twice, at the same sampling: with the template's one built-in example (before)
and with two examples drawn from the seeds (after). For each arm it prints the tasks that got an
instance from the old stage (the first that is no exact copy) and how many of those carry a shown
example (the leak the old check let through), then the tasks the new stage keeps an instance of.

For each run directory (a self-instruct run with the built-in seeds, such as the one
`make demo CONFIG=configs/self-instruct.yaml` writes), reads the rows kept for the dataset
(`kept.jsonl`) and, for each, the examples its instance request showed: drawn from the seeds by its
instruction (rows with `meta.instance_examples`), or the template's one built-in example (runs made
before examples were drawn). Prints per run:

- `carrying`: rows whose input/output copies a shown example or carries its numbers, units or
  names when the task does not (the completion stage's check, generator/prompting/examples.py);
- `temperature`: rows carrying the built-in example's tokens (212, 98.6, °F, °C) when the
  instruction has none of them: the demo's old symptom, judged the same way for every run;
- `stage drops`: instance requests the completion stage rejected as copies (`copied_from_prompt`)
  or carriers (`carries_example`), from funnel.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from generator.core.paths import builtin_path  # noqa: E402 - after the path is set
from generator.core.text import copy_key  # noqa: E402
from generator.prompting.examples import ExamplePool, carried  # noqa: E402
from generator.prompting.parse import Item, parse  # noqa: E402
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


async def _send(base_url: str, key: str | None, model: str, chats: list[list[dict]], params: dict) -> list[str]:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session:

        async def one(messages: list[dict]) -> str:
            body = {"model": model, "messages": messages, **params}
            async with session.post(f"{base_url}/chat/completions", json=body, headers=headers) as resp:
                resp.raise_for_status()
                return (await resp.json())["choices"][0]["message"]["content"] or ""

        return list(await asyncio.gather(*(one(m) for m in chats)))


def ab(instructions: list[str], config_name: str) -> None:
    from generator.config import load_config
    from generator.llm.server import managed_server
    from generator.run.complete import _first_own

    config = load_config(config_name)
    tpl = load_template(builtin_path("prompts", "instance_input_first.jinja"))
    seeds = load_seeds("builtin")
    pool = ExamplePool(seeds)
    arms = ("fixed", "drawn")
    chats, keys = [], []
    for text in instructions:
        for arm in arms:
            values = {**tpl.meta.defaults, "instruction": text, "num_instances": 2}
            if arm == "drawn":
                values["examples"] = [ex.to_dict() for ex in pool.draw(text, False)]
            chats.append(render(tpl, values))
            keys.append((arm, text))
    sampling = tpl.meta.sampling
    params = {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}
    start = time.monotonic()
    if config.server.endpoints:  # a server of your own (or a fake one), its key in `server.api_key_env`
        from generator.llm.server import endpoint_key

        model = config.model.served_name or config.model.name
        texts = asyncio.run(_send(config.server.endpoints[0], endpoint_key(config), model, chats, params))
    else:
        with tempfile.TemporaryDirectory() as logs, managed_server(config, Path(logs)) as server:
            texts = asyncio.run(_send(server.base_url, server.api_key, server.model, chats, params))
    print(f"{len(chats)} requests in {time.monotonic() - start:.0f} s (server start included)")
    for arm in arms:
        got = carrying = kept = 0
        for (key_arm, text), messages, answer in zip(keys, chats, texts):
            if key_arm != arm:
                continue
            prompt = "\n".join(m["content"] for m in messages)
            items = parse("instances", answer).items
            shown = worked_examples("instances", prompt)
            keys_shown = [(copy_key(i), copy_key(o)) for i, o in shown]
            old = next((it for it in items if it.output.strip() and not _copied(it, prompt, keys_shown, text)), None)
            if old is not None:
                got += 1
                carrying += bool(carried(f"{old.input}\n{old.output}", old.output, shown, text, pool.common))
            kept += isinstance(_first_own(items, prompt, "instances", text, pool.common), Item)
        n = len(instructions)
        print(
            f"{arm}: {n} tasks; old stage gave {got} an instance, {carrying} of them ({carrying / max(got, 1):.0%}) "
            f"carrying a shown example; new stage keeps {kept} ({kept / max(n, 1):.0%} of the tasks)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--ab", metavar="INSTRUCTIONS", help="a JSONL file of instructions, or `seeds`")
    parser.add_argument("--n", type=int, default=40, help="with --ab: instructions used (the first n)")
    parser.add_argument("--config", default="self-instruct.yaml", help="with --ab: the config whose server is started")
    args = parser.parse_args()
    pool = ExamplePool(load_seeds("builtin"))
    if args.ab:
        if args.ab == "seeds":
            instructions = [s.instruction for s in load_seeds("builtin")]
        else:
            lines = Path(args.ab).read_text(encoding="utf-8").splitlines()
            instructions = [json.loads(line)["instruction"] for line in lines if line.strip()]
        ab(instructions[: args.n], args.config)
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
