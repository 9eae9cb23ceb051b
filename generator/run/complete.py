"""The completion stage: every accepted instruction gets its input and output.

Self-instruct style (`generation.instances: self_instruct`, the default): ask whether the task is
a classification task, then write an instance output-first for classification and input-first
otherwise. `generation.instances: response` answers each instruction directly. Tasks that came
with an output (alpaca_batch) are kept as they are. A task that gets nothing usable is dropped
with its reason (stage `instances`). With `generation.preferences`, every task (its instruction
and input) then gets k responses ranked into a preference pair (`PairMaker`,
generator/run/preferences.py, ranks them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from filters.base import BatchChat, FilterContext
from generator.core.records import PREFERENCE, Record
from generator.core.text import copy_key, echo_key
from generator.prompting.examples import ExamplePool, carried
from generator.prompting.parse import Item, parse
from generator.prompting.seeds import SeedTask
from generator.prompting.templates import PromptTemplate
from generator.run.constrain import Constrainer
from generator.run.funnel import RunFunnel
from generator.run.preferences import STAGE, PairMaker, Scored, pick
from generator.run.sender import Sender


@dataclass
class Completion:
    """The stage of one run: its templates (by role), how it answers (`generation.instances`,
    `instances_per_task`) and, with `generation.preferences`, the pair maker."""

    templates: dict[str, PromptTemplate]
    instances_mode: str = "self_instruct"
    per_task: int = 2
    pairs: PairMaker | None = None
    constrain: Constrainer | None = None  # `generation.constraints`
    response_format: dict[str, Any] | None = None  # `generation.response_format`, as the API takes it
    examples: ExamplePool | None = None  # the instance templates' worked examples, drawn per request

    @classmethod
    def for_config(
        cls, config: Any, templates: dict[str, PromptTemplate], seeds: Sequence[SeedTask] = ()
    ) -> Completion:
        """The stage a config asks for; the pair maker's checks and judge are built (and their
        templates read) now."""
        g = config.generation
        pairs = None if g.preferences is None else PairMaker(g.preferences, base_dir=config.base_dir)
        constrain = None if g.constraints is None else Constrainer(g.constraints)
        schema = None
        if g.response_format is not None:
            schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": g.response_format}}
        return cls(templates, g.instances, g.instances_per_task, pairs, constrain, schema, ExamplePool(seeds))

    @property
    def answer_params(self) -> dict[str, Any]:
        """What every answer request adds to its sampling: the answers' schema, when there is one."""
        return {"response_format": self.response_format} if self.response_format is not None else {}

    def setup(self, ctx: FilterContext, chat: BatchChat) -> None:
        if self.pairs is not None:
            self.pairs.setup(ctx, chat)

    def close(self) -> None:
        if self.pairs is not None:
            self.pairs.close()

    async def complete(self, sender: Sender, instructions: list[Record], funnel: RunFunnel) -> list[Record]:
        if self.constrain is not None:  # constrained tasks lose an output written without them
            instructions = [self.constrain(r) for r in instructions]
        done = [r for r in instructions if r.output]
        todo = [r for r in instructions if not r.output]
        if todo and self.instances_mode == "self_instruct":
            todo = await self.instances(sender, await self.classify(sender, todo, funnel), funnel)
        elif todo and self.pairs is None:  # with preferences the pair stage writes the responses
            todo = await self.responses(sender, todo, funnel)
        if self.pairs is not None:
            return await self.preference_pairs(sender, done + todo, funnel)
        return done + todo

    async def classify(self, sender: Sender, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """Each record with `meta.task_type`: `classification` or `generation`."""
        tpl = self.templates["classify"]
        reqs = [sender.request(tpl, {"instruction": r.instruction}, {"stage": "classify"}) for r in records]
        results = await sender.send(reqs)
        out = []
        for r, req, res in zip(records, reqs, results):
            if req.id in sender.unsent:  # the budget ran out: not "generation" by default
                funnel.unfinished(r)
                continue
            flag = False
            if res is not None and res.texts:
                parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
                flag = bool(parsed.items and parsed.items[0].is_classification)
            out.append(r.with_meta(task_type="classification" if flag else "generation"))
        return out

    async def instances(self, sender: Sender, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """The first valid instance of each task. Each request shows worked examples of other tasks
        drawn from the seeds (the template's built-in one where the seeds have none); small models
        copy what they are shown, and an instance that copies an example, or carries its numbers,
        units or names when the task does not, does not count."""
        tpls, shown_ids, reqs = [], [], []
        for r in records:
            classification = r.meta.get("task_type") == "classification"
            tpl = self.templates["instance_output_first" if classification else "instance_input_first"]
            variables: dict[str, Any] = {"instruction": r.instruction, "num_instances": self.per_task}
            drawn = self.examples.draw(r.instruction, classification) if self.examples is not None else []
            if drawn and "examples" in tpl.variables:
                variables["examples"] = [ex.to_dict() for ex in drawn]
            tpls.append(tpl)
            shown_ids.append([ex.seed_id for ex in drawn] if "examples" in variables else [])
            reqs.append(sender.request(tpl, variables, {"stage": "instances"}))
        results = await sender.send(reqs)
        out = []
        for r, tpl, ids, req, res in zip(records, tpls, shown_ids, reqs, results):
            if res is None:
                _missing(funnel, sender, r, req.id)
                continue
            parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
            prompt = "\n".join(m["content"] for m in req.messages or [])
            common = self.examples.common if self.examples is not None else frozenset()
            first = _first_own(parsed.items, prompt, tpl.meta.parser, r.instruction, common)
            if not isinstance(first, Item):
                reason, detail = first if parsed.items else (_no_instance(parsed.rejections), {})
                funnel.drop_task(r, reason, **detail)
                continue
            out.append(
                r.with_(input=first.input.strip(), output=first.output.strip()).with_meta(
                    finish_reason=res.finish_reasons[0],
                    instance_template=tpl.name,
                    instance_template_hash=tpl.digest,
                    **({"instance_examples": ids} if ids else {}),
                )
            )
        return out

    async def responses(self, sender: Sender, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """An answer to each instruction (and its input)."""
        tpl = self.templates["response"]
        reqs = [
            sender.request(
                tpl, {"instruction": r.instruction, "input": r.input}, {"stage": "response"}, **self.answer_params
            )
            for r in records
        ]
        results = await sender.send(reqs)
        out = []
        for r, req, res in zip(records, reqs, results):
            if res is None:
                _missing(funnel, sender, r, req.id)
                continue
            parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
            if not parsed.items:
                funnel.drop_task(r, parsed.rejections[0].reason if parsed.rejections else "empty_response")
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

    async def preference_pairs(self, sender: Sender, records: list[Record], funnel: RunFunnel) -> list[Record]:
        """Each record with its pair: `output` the chosen response, `meta.preference` the rejected one
        and every response's score; sets without a pair are dropped with their reason.

        Each response is its own request: its index is a template variable (`response_index`) and
        its sampling overrides the template's, so request ids differ per response and stay the same
        per run."""
        maker = self.pairs
        if maker is None:
            raise ValueError("preference_pairs needs generation.preferences")
        cfg = maker.cfg
        tpl = self.templates["response"]
        settings = cfg.sampling or [None] * cfg.responses
        requests = [
            sender.request(
                tpl,
                {"instruction": r.instruction, "input": r.input, "response_index": i},
                {"stage": STAGE},
                **self.answer_params,
                **(s.params() if s is not None else {}),
            )
            for r in records
            for i, s in enumerate(settings)
        ]
        results = await sender.send(requests)
        sets = []
        for n, r in enumerate(records):
            responses = []
            for i, res in enumerate(results[n * cfg.responses : (n + 1) * cfg.responses]):
                if res is None or not res.texts:
                    continue  # failed for good: the set has one response fewer
                parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
                text = parsed.items[0].output.strip() if parsed.items else res.texts[0].strip()
                if not text:
                    continue  # nothing to prefer or reject
                reason = (
                    None if parsed.items else (parsed.rejections[0].reason if parsed.rejections else "empty_response")
                )
                responses.append(Scored(i, text, res.finish_reasons[0], reason=reason))
            sets.append((r, responses))
        scored = await asyncio.to_thread(maker.score, sets)
        out = []
        for r, responses in zip(records, scored, strict=True):
            picked = pick(responses, cfg)
            if isinstance(picked, str):
                funnel.drop_task(r, picked, stage=STAGE)
                continue
            chosen, rejected = picked
            out.append(
                r.with_(output=chosen.text).with_meta(
                    finish_reason=chosen.finish_reason,
                    task_type=r.meta.get("task_type", "generation"),
                    chosen_response=chosen.index,
                    rejected_response=rejected.index,
                    **{PREFERENCE: {"rejected": rejected.text, "scores": [s.to_score() for s in responses]}},
                )
            )
        return out


def _missing(funnel: RunFunnel, sender: Sender, record: Record, request_id: str) -> None:
    """A task whose request got no result: it failed for good, or the budget kept it unsent."""
    if request_id in sender.unsent:
        funnel.unfinished(record)
    else:
        funnel.drop_task(record, "request_failed")


def worked_examples(parser: str, prompt: str) -> list[tuple[str, str]]:
    """(input, output) of each worked example in `prompt`, as written: the prompt read by the
    template's own parser, each value cut at its first blank line (the last example would
    otherwise run on into the rest of the prompt)."""
    pairs = []
    for it in parse(parser, prompt).items:
        output = it.output.split("\n\n")[0].strip()
        if output:
            pairs.append((it.input.split("\n\n")[0].strip(), output))
    return pairs


def shown_examples(parser: str, prompt: str) -> list[tuple[str, str]]:
    """The worked examples of `prompt` (`worked_examples`) as `copy_key`s."""
    return [(copy_key(i), copy_key(o)) for i, o in worked_examples(parser, prompt)]


def _first_own(
    items: list[Item], prompt: str, parser: str, instruction: str, common: frozenset[str] = frozenset()
) -> Item | tuple[str, dict[str, Any]]:
    """The first instance with an output that neither copies a worked example of `prompt` nor
    carries one's distinctive tokens (`common` ones aside); else why not (a reason and its detail)."""
    examples = worked_examples(parser, prompt)
    shown = [(copy_key(i), copy_key(o)) for i, o in examples]
    why: tuple[str, dict[str, Any]] = ("copied_from_prompt", {})
    for it in items:
        if not it.output.strip() or _copied(it, prompt, shown, instruction):
            continue
        tokens = carried(f"{it.input}\n{it.output}", it.output, examples, instruction, common)
        if not tokens:
            return it
        why = ("carries_example", {"tokens": list(tokens), "output": it.output[:200]})
    return why


def _no_instance(rejections: list[Any]) -> str:
    return rejections[0].reason if rejections else "no_instance"


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
