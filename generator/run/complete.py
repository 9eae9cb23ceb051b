"""The completion stage: every accepted instruction gets its input and output.

Self-instruct style (`generation.instances: self_instruct`, the default): ask whether the task is
a classification task, then write an instance output-first for classification and input-first
otherwise. `generation.instances: response` answers each instruction directly. Tasks that came
with an output (alpaca_batch) are kept as they are. A task that gets nothing usable is dropped
with its reason (stage `instances`).
"""

from __future__ import annotations

from generator.core.records import Record
from generator.prompting.parse import Item, parse
from generator.run.context import Run
from generator.run.sender import Sender


async def complete(run: Run, sender: Sender, instructions: list[Record]) -> list[Record]:
    done = [r for r in instructions if r.output]
    todo = [r for r in instructions if not r.output]
    if not todo:
        return done
    if run.config.generation.instances == "self_instruct":
        todo = await classify(run, sender, todo)
        return done + await instances(run, sender, todo)
    return done + await responses(run, sender, todo)


async def classify(run: Run, sender: Sender, records: list[Record]) -> list[Record]:
    """Each record with `meta.task_type`: `classification` or `generation`."""
    tpl = run.templates["classify"]
    results = await sender.send(
        [sender.request(tpl, {"instruction": r.instruction}, {"stage": "classify"}) for r in records]
    )
    out = []
    for r, res in zip(records, results):
        flag = False
        if res is not None and res.texts:
            parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
            flag = bool(parsed.items and parsed.items[0].is_classification)
        out.append(r.with_meta(task_type="classification" if flag else "generation"))
    return out


async def instances(run: Run, sender: Sender, records: list[Record]) -> list[Record]:
    """The first valid instance of each task; small models copy the template's worked example
    instead of writing their own, and such copies do not count."""
    per_task = run.config.generation.instances_per_task
    tpls = [
        run.templates[
            "instance_output_first" if r.meta.get("task_type") == "classification" else "instance_input_first"
        ]
        for r in records
    ]
    reqs = [
        sender.request(tpl, {"instruction": r.instruction, "num_instances": per_task}, {"stage": "instances"})
        for r, tpl in zip(records, tpls)
    ]
    results = await sender.send(reqs)
    out = []
    for r, tpl, req, res in zip(records, tpls, reqs, results):
        if res is None:
            run.funnel.drop_task(r, "request_failed")
            continue
        parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
        prompt = "\n".join(m["content"] for m in req.messages or [])
        good = [it for it in parsed.items if it.output.strip() and not _copied(it, prompt)]
        if not good:
            reason = (
                "copied_from_prompt"
                if parsed.items
                else parsed.rejections[0].reason
                if parsed.rejections
                else "no_instance"
            )
            run.funnel.drop_task(r, reason)
            continue
        first = good[0]
        out.append(
            r.with_(input=first.input.strip(), output=first.output.strip()).with_meta(
                finish_reason=res.finish_reasons[0], instance_template=tpl.name
            )
        )
    return out


async def responses(run: Run, sender: Sender, records: list[Record]) -> list[Record]:
    """An answer to each instruction (and its input)."""
    tpl = run.templates["response"]
    results = await sender.send(
        [sender.request(tpl, {"instruction": r.instruction, "input": r.input}, {"stage": "response"}) for r in records]
    )
    out = []
    for r, res in zip(records, results):
        if res is None:
            run.funnel.drop_task(r, "request_failed")
            continue
        parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
        if not parsed.items:
            run.funnel.drop_task(r, parsed.rejections[0].reason if parsed.rejections else "empty_response")
            continue
        out.append(
            r.with_(output=parsed.items[0].output.strip()).with_meta(
                finish_reason=res.finish_reasons[0], task_type=r.meta.get("task_type", "generation")
            )
        )
    return out


def _copied(item: Item, prompt: str) -> bool:
    """The instance stands in the prompt as it is: its input and output, or (with no input) an
    output long enough not to be a short label or number that may well recur."""
    output, input_ = item.output.strip(), item.input.strip()
    if input_:
        return input_ in prompt and output in prompt
    return len(output) >= 20 and output in prompt
