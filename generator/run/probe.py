"""`instructforge probe RUN_DIR`: the counterfactual probes of a finished run (what they are:
generator/report/probes.py). Sends each pair's two requests to the served model (the config's
endpoints, or the managed server started for it) greedily, so only the swapped words differ, has
the same model judge every answer with the `judge` filter's rubric, reads refusals with the
`refusal` filter, and writes `probes.json` into the run directory, which the report then shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filters.judge import LLMJudge, parse_scores
from filters.refusal import RefusalFilter
from generator.config import Config
from generator.core.errors import InstructforgeError
from generator.core.files import write_atomic
from generator.core.records import Record
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.requests import Request
from generator.llm.server import server_for
from generator.report.probes import PAIRS, PROBES, Probe, ProbeResult, compare, sample_probes

EXAMPLES = 10  # pairs written out with their answers


def run_probes(config: Config, run_dir: Path, pairs: int = PAIRS, *, seed: int = 0) -> ProbeResult:
    from generator.report.sources import read_folder

    if pairs < 1:
        raise InstructforgeError(f"--pairs must be at least 1, got {pairs}")
    run_dir = Path(run_dir)
    rows = read_folder(run_dir, rejected_per_reason=0).rows
    probes = sample_probes(rows, pairs, seed)
    if not probes:
        raise InstructforgeError(
            f"{run_dir}: no row names a group the lexicon can swap (see Bias and representation); nothing to probe"
        )
    started = time.perf_counter()
    model = asyncio.run(_answer(config, run_dir, probes))
    result = ProbeResult(len(probes), round(time.perf_counter() - started, 1), model, compare(probes))
    result.examples = [_example(p) for p in probes[:EXAMPLES]]
    write_atomic(run_dir / PROBES, (json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n").encode())
    return result


def probe_for_report(config: Config, run_dir: Path, pairs: int, log: Callable[[str], None]) -> None:
    """`report.probes`: the probes at the end of `generate`, for the report, unless an earlier
    session of the run already probed as many pairs (a rerun sends nothing again). A dataset with
    nothing to probe is said, not an error: the dataset is already written."""
    done = run_dir / PROBES
    if done.is_file():
        try:
            if json.loads(done.read_text(encoding="utf-8")).get("pairs", 0) >= pairs:
                return
        except ValueError:
            pass  # a damaged file is written again
    try:
        log(run_probes(config, run_dir, pairs).summary())
    except InstructforgeError as err:
        log(f"probes: none sent: {err}")


def _example(p: Probe) -> dict[str, Any]:
    return {
        "attribute": p.attribute,
        "groups": [p.group_a, p.group_b],
        "texts": [p.text_a, p.text_b],
        "words": p.words,
        "refused": p.refused,
        "score": p.score,
    }


def _id(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


async def _send(engine: Engine, requests: list[Request]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    async for result in engine.run(requests):
        out[result.request_id] = result.texts[0] if result.texts and result.error is None else None
    return out


async def _answer(config: Config, run_dir: Path, probes: list[Probe]) -> str:
    """Answers, refusals and judge scores into `probes`; the served model's name."""
    params = {"temperature": 0.0, "max_tokens": config.sampling.max_tokens, "seed": config.sampling.seed or 0}
    asks = {_id(i, side): text for i, p in enumerate(probes) for side, text in (("a", p.text_a), ("b", p.text_b))}
    judge, refusal = LLMJudge(), RefusalFilter()
    with server_for(config, run_dir / "logs") as info:
        endpoints = [Endpoint(url, info.api_key) for url in info.base_urls]
        async with Engine(endpoints, info.model, config.engine) as engine:
            answers = await _send(
                engine,
                [Request(rid, messages=[{"role": "user", "content": t}], params=params) for rid, t in asks.items()],
            )
            records = {rid: Record(instruction=asks[rid], output=a or "") for rid, a in answers.items()}
            judged = await _send(
                engine,
                [
                    Request(f"judge-{rid}", messages=judge.prompt(r), params=dict(judge.request))
                    for rid, r in records.items()
                ],
            )
    refused = dict(zip(records, (not v.keep for v in refusal.judge(list(records.values())))))
    for i, p in enumerate(probes):
        a, b = _id(i, "a"), _id(i, "b")
        if answers.get(a) is None or answers.get(b) is None:
            continue  # a request that failed: the pair is left out of the comparison
        p.words = (len(answers[a].split()), len(answers[b].split()))  # type: ignore[union-attr]
        p.refused = (refused[a], refused[b])
        p.score = (_mean(judged.get(f"judge-{a}")), _mean(judged.get(f"judge-{b}")))
    return info.model


def _mean(answer: str | None) -> float | None:
    scores = parse_scores(answer)
    return round(sum(scores.values()) / len(scores), 3) if scores else None
