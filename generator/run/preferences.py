"""Preference pairs for DPO (`generation.preferences`): k responses to each instruction, each with
its own sampling; rule checks (filters that judge one output) and the LLM judge rank them; the best
becomes `chosen` (the record's output), the worst (or one that failed a check) `rejected`. The
completion stage (generator/run/complete.py) asks for the responses; this module ranks them.

Ranking: a response that failed a check or the judge ranks below every response that passed; among
equals the judge's mean score decides. A set is dropped (stage `preferences`) when fewer than two
responses came back (`too_few_responses`), none passed (`all_bad`), the best does not beat the
rejected one by `min_margin` judge points (`tie`), or `rejected: failed_check` finds no response
that failed a check (`no_failed_check`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from filters.base import BatchChat, Filter, FilterContext
from filters.judge import LLMJudge
from filters.registry import build, build_chain
from generator.config import PreferencesConfig
from generator.core.records import Record

STAGE = "preferences"
JUDGE_REASONS = frozenset({"low_judge_score", "judge_failed"})


@dataclass(frozen=True)
class Scored:
    """One response as ranked: `reason` is None when it passed every check and the judge."""

    index: int
    text: str
    finish_reason: str | None
    score: float | None = None
    reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.reason is None

    @property
    def failed_check(self) -> bool:
        """Failed a rule check (or could not be read), not merely the judge."""
        return self.reason is not None and self.reason not in JUDGE_REASONS

    def to_score(self) -> dict[str, object]:
        return {"response": self.index, "score": self.score, "reason": self.reason}


def pick(scored: list[Scored], cfg: PreferencesConfig) -> tuple[Scored, Scored] | str:
    """(chosen, rejected), or the reason the set gives no pair. Responses are ordered passed first,
    then by judge score, then by index (so the pick is the same on every run); `rejected` is the
    last of them (a response that failed a check, whose score is none, comes last)."""
    if len(scored) < 2:
        return "too_few_responses"
    ordered = sorted(scored, key=lambda s: (not s.passed, -(s.score or 0.0), s.index))
    chosen = ordered[0]
    if not chosen.passed:
        return "all_bad"
    rest = ordered[1:]
    if cfg.rejected == "failed_check":
        rest = [s for s in rest if s.failed_check]
        if not rest:
            return "no_failed_check"
    rejected = rest[-1]
    if rejected.passed and (
        chosen.score is None or rejected.score is None or chosen.score - rejected.score < cfg.min_margin
    ):
        return "tie"
    if rejected.text == chosen.text:
        return "tie"
    return chosen, rejected


class PairMaker:
    """The preference stage of one run: its checks and judge are built (and their templates read)
    when the run opens, and get the run's chat client with the other filters."""

    def __init__(self, cfg: PreferencesConfig, *, base_dir: Path | None = None):
        self.cfg = cfg
        self.checks: list[Filter] = build_chain(cfg.checks, base_dir=base_dir, where="generation.preferences.checks")
        self.judge: LLMJudge | None = None
        if cfg.judge is not None:
            judge = build(cfg.judge, base_dir=base_dir, where="generation.preferences.judge")
            assert isinstance(judge, LLMJudge)
            self.judge = judge

    def setup(self, ctx: FilterContext, chat: BatchChat) -> None:
        for flt in self.checks:
            flt.setup(ctx)
        if self.judge is not None:
            self.judge.setup(FilterContext(state_dir=ctx.state_dir, chat=chat))

    def close(self) -> None:
        for flt in self.checks:
            flt.close()

    def score(self, sets: list[tuple[Record, list[Scored]]]) -> list[list[Scored]]:
        """Each set's responses with the rule checks' and the judge's verdicts, all sets in one batch
        per check and one for the judge (runs in a worker thread: the judge asks the server through
        the run's chat client)."""
        flat = [(r, s) for r, responses in sets for s in responses]
        flat = self._checked(flat)
        flat = self._judged(flat)
        out: list[list[Scored]] = []
        at = 0
        for _, responses in sets:
            out.append([s for _, s in flat[at : at + len(responses)]])
            at += len(responses)
        return out

    def _checked(self, flat: list[tuple[Record, Scored]]) -> list[tuple[Record, Scored]]:
        cfg = self.cfg
        out = []
        for r, s in flat:
            words = len(s.text.split())
            if s.passed and words < cfg.min_words:
                s = replace(s, reason="too_short")
            elif s.passed and cfg.max_words is not None and words > cfg.max_words:
                s = replace(s, reason="too_long")
            out.append((r, s))
        for flt in self.checks:
            alive = [n for n, (_, s) in enumerate(out) if s.passed]
            if not alive:
                break
            records = [
                out[n][0].with_(output=out[n][1].text).with_meta(finish_reason=out[n][1].finish_reason) for n in alive
            ]
            for n, verdict in zip(alive, flt.judge(records), strict=True):
                r, s = out[n]
                if not verdict.keep:
                    out[n] = (r, replace(s, reason=verdict.reason))
                elif verdict.record is not None:  # a rewrite (PII redaction)
                    out[n] = (r, replace(s, text=verdict.record.output))
        return out

    def _judged(self, flat: list[tuple[Record, Scored]]) -> list[tuple[Record, Scored]]:
        alive = [n for n, (_, s) in enumerate(flat) if s.passed]
        if self.judge is None or not alive:
            return flat
        # Identical answers to one task are judged once (they would be one request id).
        keys = list(dict.fromkeys((flat[n][0].instruction, flat[n][0].input, flat[n][1].text) for n in alive))
        verdicts = self.judge.judge([Record(instruction, input, text) for instruction, input, text in keys])
        by_key = dict(zip(keys, verdicts, strict=True))
        out = list(flat)
        for n in alive:
            r, s = flat[n]
            v = by_key[(r.instruction, r.input, s.text)]
            score = (v.scores or v.detail).get("judge")
            out[n] = (r, replace(s, score=score, reason=None if v.keep else v.reason))
        return out
