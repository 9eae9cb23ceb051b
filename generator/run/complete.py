"""The completion stage: every accepted instruction gets its input and output.

Self-instruct style (`generation.instances: self_instruct`, the default): ask whether the task is
a classification task, then write an instance output-first for classification and input-first
otherwise. `generation.instances: response` answers each instruction directly. Tasks that came
with an output (alpaca_batch) are kept as they are. A task that gets nothing usable is dropped
with its reason (stage `instances`). With `generation.preferences`, every task (its instruction
and input) then gets k responses ranked into a preference pair (generator/run/preferences.py).
"""

from __future__ import annotations

from generator.core.records import Record
from generator.core.text import copy_key, echo_key
from generator.prompting.parse import Item, parse
from generator.run.context import Run
from generator.run.preferences import preference_pairs
from generator.run.sender import Sender


async def complete(run: Run, sender: Sender, instructions: list[Record]) -> list[Record]:
    done = [r for r in instructions if r.output]
    todo = [r for r in instructions if not r.output]
    if todo and run.config.generation.instances == "self_instruct":
        todo = await instances(run, sender, await classify(run, sender, todo))
    elif todo and run.preferences is None:  # with preferences the pair stage writes the responses
        todo = await responses(run, sender, todo)
    if run.preferences is not None:
        return await preference_pairs(run, sender, done + todo)
    return done + todo


async def classify(run: Run, sender: Sender, records: list[Record]) -> list[Record]:
    """Each record with `meta.task_type`: `classification` or `generation`."""
    tpl = run.templates["classify"]
    reqs = [sender.request(tpl, {"instruction": r.instruction}, {"stage": "classify"}) for r in records]
    results = await sender.send(reqs)
    out = []
    for r, req, res in zip(records, reqs, results):
        if req.id in sender.unsent:  # the budget ran out: not "generation" by default
            run.funnel.unfinished(r)
            continue
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
            _missing(run, sender, r, req.id)
            continue
        parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
        prompt = "\n".join(m["content"] for m in req.messages or [])
        shown = shown_examples(tpl.meta.parser, prompt)
        good = [it for it in parsed.items if it.output.strip() and not _copied(it, prompt, shown, r.instruction)]
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
                finish_reason=res.finish_reasons[0], instance_template=tpl.name, instance_template_hash=tpl.digest
            )
        )
    return out


async def responses(run: Run, sender: Sender, records: list[Record]) -> list[Record]:
    """An answer to each instruction (and its input)."""
    tpl = run.templates["response"]
    reqs = [
        sender.request(tpl, {"instruction": r.instruction, "input": r.input}, {"stage": "response"}) for r in records
    ]
    results = await sender.send(reqs)
    out = []
    for r, req, res in zip(records, reqs, results):
        if res is None:
            _missing(run, sender, r, req.id)
            continue
        parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
        if not parsed.items:
            run.funnel.drop_task(r, parsed.rejections[0].reason if parsed.rejections else "empty_response")
            continue
        out.append(
            r.with_(output=parsed.items[0].output.strip()).with_meta(
                finish_reason=res.finish_reasons[0],
                task_type=r.meta.get("task_type", "generation"),
                response_template=tpl.name,
                response_template_hash=tpl.digest,
            )
        )
    return out


def _missing(run: Run, sender: Sender, record: Record, request_id: str) -> None:
    """A task whose request got no result: it failed for good, or the budget kept it unsent."""
    if request_id in sender.unsent:
        run.funnel.unfinished(record)
    else:
        run.funnel.drop_task(record, "request_failed")


def shown_examples(parser: str, prompt: str) -> list[tuple[str, str]]:
    """(input, output) of each worked example in `prompt`, as `copy_key`s: the prompt read by the
    template's own parser, each value cut at its first blank line (the last example would
    otherwise run on into the rest of the prompt)."""
    pairs = []
    for it in parse(parser, prompt).items:
        output = copy_key(it.output.split("\n\n")[0])
        if output:
            pairs.append((copy_key(it.input.split("\n\n")[0]), output))
    return pairs


def _contains(text: str, part: str) -> bool:
    """`part` stands in `text` as whole words (case and punctuation ignored)."""
    part = echo_key(part)
    return bool(part) and f" {part} " in f" {echo_key(text)} "


def _copied(item: Item, prompt: str, shown: list[tuple[str, str]], instruction: str) -> bool:
    """The instance copies the prompt: its input and output stand in the prompt as they are, or
    (with no input) an output of 20 characters or more does; or its output (or the output's first
    paragraph) is, as `copy_key`s, the output of a worked example (`shown`), whatever its length.
    That last one is no copy when the task makes it the right answer: the instance's input is that
    example's input (or, with no input, the instruction holds it: "Convert 100 °C to
    Fahrenheit."), or the instruction names the output ("... as positive or negative")."""
    output, input_ = item.output.strip(), item.input.strip()
    if input_ and input_ in prompt and output in prompt:
        return True
    if not input_ and len(output) >= 20 and output in prompt:
        return True
    keys = {copy_key(output), copy_key(output.split("\n\n")[0])}  # the copy, then chatter after it
    examples = [shown_input for shown_input, shown_output in shown if shown_output in keys]
    if not examples or _contains(instruction, output):
        return False
    if input_:
        return copy_key(input_) not in examples
    return not any(_contains(instruction, shown_input) for shown_input in examples if shown_input)
