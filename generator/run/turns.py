"""Multi-turn conversations (`generation.turns` above 1): after the first exchange the model, playing
the user, writes the user's next message (template role `user_turn`: the conversation so far, and
the persona and goal when the method has them), then answers it as the assistant, turn after turn.

Each later turn is checked by the record filters (all but the dedup filters, which compare whole
records) as a record of its own: the user message as the instruction, the answer as the output.
A turn that gets no usable message or answer, or that a filter drops, drops the conversation or
ends it before that turn (`generation.turn_failure`); the funnel counts either, stage `turns`.

A request depends only on the conversation so far (its id is a hash of it), and the conversations
of a chunk take each turn together, so a resumed run rebuilds the same conversations from the
stored results and sends only what is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from filters.base import Chain
from generator.core.records import Record
from generator.prompting.parse import parse
from generator.prompting.templates import PromptTemplate, render
from generator.run.context import Run
from generator.run.funnel import RunFunnel
from generator.run.sender import Sender

# Filters that compare a record with the others kept: a later turn ("Thanks, and why?") may well
# repeat another conversation's, which is no reason to drop either.
WHOLE_RECORD_FILTERS = frozenset({"exact_dedup", "semantic_dedup"})


@dataclass
class _Turn:
    """One conversation's turn in the making; `failure` is the reason it failed, "" while it has not."""

    index: int  # the conversation's place in the chunk
    message: str = ""
    answer: str = ""
    finish_reason: str = ""
    failure: str = ""
    filter: str = ""  # the filter that dropped the turn, if one did


@dataclass
class Conversations:
    """The later turns of a run's conversations: `turns` user turns in all (`generation.turns`),
    written with the `user_turn` and `response` templates, each turn checked by the record filters
    (`chain`: all but the dedup ones) and a failed one handled as `turn_failure` says."""

    templates: dict[str, PromptTemplate]
    turns: int
    turn_failure: str
    chain: Chain
    funnel: RunFunnel

    @classmethod
    def of(cls, run: Run) -> Conversations:
        g = run.config.generation
        checks = [f for f in run.record_filters if f.name not in WHOLE_RECORD_FILTERS]
        chain = Chain(checks, run.funnel.turns, run.rejected_path)
        return cls(run.templates, g.turns, g.turn_failure, chain, run.funnel)


async def converse(talk: Conversations, sender: Sender, records: list[Record]) -> list[Record]:
    """`records` (first exchanges) as conversations of `talk.turns` user turns, in order; those
    whose later turn failed are dropped or shortened as configured."""
    if talk.turns <= 1 or not records:
        return records
    chain = talk.chain
    talks = list(records)
    alive = list(range(len(talks)))
    dropped: set[int] = set()
    for turn in range(2, talk.turns + 1):
        if not alive:
            break
        turns = await _user_messages(talk, sender, [(i, talks[i]) for i in alive], turn)
        await _answers(talk, sender, talks, [t for t in turns if not t.failure], turn)
        await asyncio.to_thread(_check, chain, talks, [t for t in turns if not t.failure], turn)
        alive = []
        for t in turns:
            if not t.failure:
                talks[t.index] = _extended(talks[t.index], t)
                alive.append(t.index)
                continue
            detail = {"turn": turn, **({"filter": t.filter} if t.filter else {})}
            if talk.turn_failure == "drop":
                talk.funnel.drop_conversation(talks[t.index], t.failure, **detail)
                dropped.add(t.index)
            else:
                talk.funnel.shorten(t.failure)
    return [r.with_meta(user_turns=1 + len(r.turns) // 2) for i, r in enumerate(talks) if i not in dropped]


async def _user_messages(
    talk: Conversations, sender: Sender, talks: list[tuple[int, Record]], turn: int
) -> list[_Turn]:
    """The user's next message in each conversation, written by the model playing the user."""
    tpl = talk.templates["user_turn"]
    turns = talk.turns
    requests = [
        sender.request(
            tpl,
            {
                "conversation": r.messages,
                "persona": str(r.meta.get("persona") or ""),
                "goal": str(r.meta.get("topic") or ""),
                "turn": turn,
                "turns": turns,
            },
            {"stage": "user_turn", "turn": turn},
        )
        for _, r in talks
    ]
    out = []
    for (i, _), res in zip(talks, await sender.send(requests)):
        if res is None or not res.texts:
            out.append(_Turn(i, failure="user_turn_request_failed"))
            continue
        parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
        if not parsed.items:
            reason = parsed.rejections[0].reason if parsed.rejections else "empty_answer"
            out.append(_Turn(i, failure=f"user_turn_{reason}"))
        else:
            out.append(_Turn(i, message=parsed.items[0].instruction))
    return out


async def _answers(talk: Conversations, sender: Sender, talks: list[Record], turns: list[_Turn], turn: int) -> None:
    """The assistant's answer to each new user message: the conversation so far, after the response
    template's system message (the first answer's), sent to the chat endpoint as it is."""
    tpl = talk.templates["response"]
    requests = []
    for t in turns:
        r = talks[t.index]
        system = [m for m in render(tpl, {"instruction": r.instruction, "input": r.input}) if m["role"] == "system"]
        messages = [*system, *r.messages, {"role": "user", "content": t.message}]
        requests.append(sender.chat_request(messages, tpl, {"stage": "turn", "turn": turn}))
    for t, res in zip(turns, await sender.send(requests)):
        if res is None or not res.texts:
            t.failure = "request_failed"
            continue
        parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
        if not parsed.items:
            t.failure = parsed.rejections[0].reason if parsed.rejections else "empty_response"
        else:
            t.answer, t.finish_reason = parsed.items[0].output.strip(), res.finish_reasons[0]


def _check(chain: Chain, talks: list[Record], turns: list[_Turn], turn: int) -> None:
    """Each turn through the record filters as a record of its own; a rewrite (PII redaction) is
    kept, a drop marks the turn failed with the filter's reason."""
    views = [
        Record(
            instruction=t.message,
            output=t.answer,
            meta={
                "finish_reason": t.finish_reason,
                "task_type": talks[t.index].meta.get("task_type", "generation"),
                "turn": turn,
                "conversation_id": talks[t.index].id,
            },
        )
        for t in turns
    ]
    by_conversation: dict[str, list[_Turn]] = {}
    for t, view in zip(turns, views):
        by_conversation.setdefault(view.meta["conversation_id"], []).append(t)
    result = chain.run(views)
    for kept in result.kept:
        t = by_conversation[kept.meta["conversation_id"]].pop(0)
        t.message, t.answer = kept.instruction, kept.output
    for d in result.dropped:
        t = by_conversation[d.record.meta["conversation_id"]].pop(0)
        t.failure, t.filter = d.reason, d.filter


def _extended(record: Record, turn: _Turn) -> Record:
    return record.with_(
        turns=[*record.turns, {"role": "user", "content": turn.message}, {"role": "assistant", "content": turn.answer}]
    )
