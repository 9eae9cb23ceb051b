"""The generation engine against the fault-injecting fake server (and, marked `vllm`, a real one)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import aclosing
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from generator.config import EngineConfig
from generator.core.errors import EngineError
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.requests import ErrorKind, Request, Result, request_id
from generator.run.progress import Progress

pytestmark = pytest.mark.fake_server

MODEL = "fake-model"
FAST = {"timeout_s": 5.0, "backoff_base_s": 0.01, "probe_interval_s": 0.05, "retry_budget": 10.0}
HANG = 1.0  # the timeout in tests with hangs: short, yet long enough for a busy CI machine


def chat(text: str, i: int = 0, **params: Any) -> Request:
    return Request(f"{i}:{text}", messages=[{"role": "user", "content": text}], params=params, meta={"i": i})


async def collect(
    urls: list[str], requests: Iterable[Request] | Any, model: str = MODEL, key: str | None = None, **config: Any
) -> tuple[list[Result], Engine]:
    engine = Engine([Endpoint(u, key) for u in urls], model, EngineConfig(**{**FAST, **config}))
    async with engine:
        results = [r async for r in engine.run(requests)]
    return results, engine


def run_one(script: str, **config: Any) -> tuple[Result, Engine]:
    async def go() -> tuple[Result, Engine]:
        async with FakeOpenAI(hang_s=5) as server:
            results, engine = await collect([server.url], [chat(f"x #faults={script}")], **config)
        assert len(results) == 1
        return results[0], engine

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("script", "error", "attempts", "errors_seen"),
    [
        ("ok", None, 1, {}),
        ("500,ok", None, 2, {"http_5xx": 1}),
        ("503,500,ok", None, 3, {"http_5xx": 2}),
        ("429,ok", None, 2, {"http_429": 1}),
        ("close,ok", None, 2, {"connection": 1}),
        ("garbage,ok", None, 2, {"bad_response": 1}),
        ("hang,ok", None, 2, {"timeout": 1}),
        ("500,429,close,garbage,ok", None, 5, {"http_5xx": 1, "http_429": 1, "connection": 1, "bad_response": 1}),
        ("503", "http_5xx", 3, {"http_5xx": 3}),
        ("hang", "timeout", 3, {"timeout": 3}),
        ("garbage", "bad_response", 3, {"bad_response": 3}),
        ("400", "bad_request", 1, {"bad_request": 1}),
    ],
    ids=[
        "ok",
        "500",
        "503-500",
        "429",
        "closed",
        "not-json",
        "hang",
        "all-kinds",
        "5xx-for-good",
        "hang-for-good",
        "not-json-for-good",
        "400-not-retried",
    ],
)
def test_faults_are_retried_then_recorded(script: str, error: str | None, attempts: int, errors_seen: dict) -> None:
    result, engine = run_one(script, max_retries=2 if error else 4, timeout_s=HANG)
    assert result.error == error
    assert error is None or isinstance(result.error, ErrorKind)
    assert result.attempts == attempts
    assert engine.stats.errors == errors_seen
    assert json.loads(json.dumps(engine.stats.to_dict()))["errors"] == errors_seen
    assert engine.stats.retried == attempts - 1
    assert (engine.stats.ok, engine.stats.failed) == ((1, 0) if error is None else (0, 1))
    if error is None:
        assert result.texts == [f"echo: x #faults={script}"]
        assert result.meta == {"i": 0}


def test_retry_after_is_honoured_instead_of_backoff() -> None:
    start = time.monotonic()
    result, _ = run_one("429,429,ok", backoff_base_s=30)  # backoff alone would wait 30 s and more
    assert result.ok and result.attempts == 3
    assert time.monotonic() - start < 5


def test_mixed_faults_counts_match_what_the_server_injected() -> None:
    scripts = ["ok", "500,ok", "429,ok", "close,ok", "garbage,ok", "hang,ok", "503,503,ok", "503", "400"]

    async def go() -> None:
        async with FakeOpenAI(hang_s=5) as server:
            requests = [chat(f"r{i} #faults={s}", i) for i, s in enumerate(scripts * 20)]
            results, engine = await collect([server.url], requests, max_retries=3, concurrency=32, timeout_s=2 * HANG)
            served = dict(server.served)
        by_script = {}
        for r in results:
            by_script.setdefault(r.texts[0].split("#faults=")[1] if r.ok else r.error, []).append(r)
        assert len(results) == len(requests)
        assert len({r.request_id for r in results}) == len(requests)
        # Every request that could succeed did; the two hopeless scripts failed with their kind.
        assert sum(r.ok for r in results) == 7 * 20
        assert len(by_script["http_5xx"]) == 20 and len(by_script["bad_request"]) == 20
        kinds = {
            "500": "http_5xx",
            "503": "http_5xx",
            "429": "http_429",
            "close": "connection",
            "garbage": "bad_response",
            "hang": "timeout",
            "400": "bad_request",
        }
        expected: dict[str, int] = {}
        for fault, count in served.items():
            if fault != "ok":
                expected[kinds[fault]] = expected.get(kinds[fault], 0) + count
        assert engine.stats.errors == expected
        assert expected == {
            "http_5xx": 20 * (1 + 2 + 4),
            "http_429": 20,
            "connection": 20,
            "bad_response": 20,
            "timeout": 20,
            "bad_request": 20,
        }
        assert engine.stats.retried == sum(expected.values()) - 40  # all but the final failures

    asyncio.run(go())


def test_random_faults_stress_run_finishes_and_succeeds() -> None:
    rates = {"500": 0.08, "429": 0.04, "close": 0.04, "garbage": 0.04, "hang": 0.01}

    async def go() -> None:
        async with FakeOpenAI(rates=rates, seed=1, hang_s=5) as server:
            requests = (chat(f"p{i}", i) for i in range(1000))
            results, engine = await collect([server.url], requests, max_retries=8, concurrency=64, timeout_s=HANG)
        assert len(results) == 1000 and all(r.ok for r in results)
        assert sorted(int(r.request_id.split(":")[0]) for r in results) == list(range(1000))
        # Retries that waited for a taken-out endpoint (a slow machine's timeouts) are not counted.
        assert 100 < engine.stats.retried <= sum(engine.stats.errors.values())

    asyncio.run(go())


def test_retry_budget_limits_retries_over_the_run() -> None:
    async def go() -> None:
        async with FakeOpenAI() as server:
            requests = [chat(f"b{i} #faults=500,500,ok", i) for i in range(50)]
            results, engine = await collect([server.url], requests, concurrency=64, retry_budget=0.2)
        assert engine.stats.retried == 20 + 10  # the floor plus 0.2 x 50 requests started
        assert all(not r.ok for r in results)
        assert "retry budget exhausted" in results[-1].error_message

    asyncio.run(go())


@pytest.mark.parametrize(
    ("server_kwargs", "model", "key", "match"),
    [
        ({"api_key": "right"}, MODEL, "wrong", r"rejected the API key \(HTTP 401: invalid API key\)"),
        ({"api_key": "right"}, MODEL, None, r"rejected the API key"),
        ({}, "nope", None, r"answered 404 for model 'nope'.*it serves: fake-model"),
    ],
    ids=["wrong-key", "no-key", "unknown-model"],
)
def test_fatal_answers_stop_the_run_at_once(server_kwargs: dict, model: str, key: str | None, match: str) -> None:
    async def go() -> None:
        async with FakeOpenAI(**server_kwargs) as server:
            with pytest.raises(EngineError, match=match):
                await collect([server.url], (chat(f"q{i}", i) for i in range(100)), model=model, key=key)
            assert sum(server.served.values()) == 0

    asyncio.run(go())


@pytest.mark.parametrize(
    ("endpoints", "match"),
    [([], "no endpoint given"), (["http://h:1/v1", "http://h:1/v1/"], "endpoint listed twice: http://h:1/v1")],
    ids=["none", "twice"],
)
def test_endpoint_list_is_checked(endpoints: list[str], match: str) -> None:
    with pytest.raises(EngineError, match=match):
        Engine([Endpoint(u) for u in endpoints], MODEL, EngineConfig())


def test_refused_endpoint_is_taken_out_and_the_other_serves_everything() -> None:
    async def go() -> None:
        async with FakeOpenAI(delay_s=0.01) as server:
            dead = "http://127.0.0.1:9/v1"
            results, engine = await collect([dead, server.url], [chat(f"e{i}", i) for i in range(200)])
        assert all(r.ok for r in results) and len(results) == 200
        assert {r.endpoint for r in results} == {server.url}
        assert engine.stats.endpoints[dead].taken_out == 1
        assert engine.stats.endpoints[server.url].ok == 200

    asyncio.run(go())


def test_requests_go_to_the_endpoint_with_fewest_in_flight() -> None:
    async def go() -> None:
        async with FakeOpenAI(delay_s=0.02) as a, FakeOpenAI(delay_s=0.02) as b:
            _, engine = await collect([a.url, b.url], [chat(f"l{i}", i) for i in range(400)], concurrency=16)
        assert 160 <= engine.stats.endpoints[a.url].ok <= 240
        assert engine.stats.endpoints[a.url].ok + engine.stats.endpoints[b.url].ok == 400

    asyncio.run(go())


def test_endpoint_that_comes_back_is_probed_and_used_again() -> None:
    async def go() -> None:
        async with FakeOpenAI() as server:
            server.down = True
            asyncio.get_running_loop().call_later(0.5, setattr, server, "down", False)
            start = time.monotonic()
            results, engine = await collect([server.url], [chat(f"d{i}", i) for i in range(50)], endpoint_down_after=2)
            assert all(r.ok for r in results)
            assert time.monotonic() - start >= 0.5
            assert engine.stats.endpoints[server.url].taken_out >= 1
            assert server.models_calls >= 1

    asyncio.run(go())


def test_no_endpoint_left_raises() -> None:
    async def go() -> None:
        with pytest.raises(EngineError, match=r"no endpoint left: none answered for 0.3 s: http://127.0.0.1:9/v1"):
            await collect(["http://127.0.0.1:9/v1"], [chat("z")], no_endpoint_timeout_s=0.3)

    asyncio.run(go())


def test_requests_are_drawn_lazily_from_an_endless_source() -> None:
    pulled = itertools.count()

    def endless() -> Iterator[Request]:
        for i in itertools.count():
            next(pulled)
            yield chat(f"n{i}", i)

    async def go() -> None:
        async with FakeOpenAI() as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**FAST, concurrency=8))
            async with engine, aclosing(engine.run(endless())) as results:
                got = [r async for r in _take(results, 100)]
        assert len(got) == 100
        # At most: what was yielded, what waits in the result queue, what is in flight.
        assert next(pulled) <= 100 + 8 + 8 + 1

    asyncio.run(go())


async def _take(results: AsyncIterator[Result], n: int) -> AsyncIterator[Result]:
    async for r in results:
        yield r
        n -= 1
        if n == 0:
            return


def test_async_source_and_completions_endpoint() -> None:
    async def source() -> AsyncIterator[Request]:
        for i in range(30):
            await asyncio.sleep(0)
            yield Request(f"c{i}", prompt=f"complete {i}", meta={"i": i})

    async def go() -> None:
        async with FakeOpenAI() as server:
            results, _ = await collect([server.url], source())
        assert sorted(r.texts[0] for r in results) == sorted(f"echo: complete {i}" for i in range(30))

    asyncio.run(go())


def test_n_choices_in_index_order_and_truncation_recorded() -> None:
    async def go() -> None:
        async with FakeOpenAI() as server:
            (many,), _ = await collect([server.url], [chat("hi there", n=3)])
            (cut,), engine = await collect([server.url], [chat("one two three four", max_tokens=2)])
        assert many.texts == ["echo 0: hi there", "echo 1: hi there", "echo 2: hi there"]
        assert many.finish_reasons == ["stop"] * 3 and not many.truncated
        assert cut.texts == ["echo: one"] and cut.truncated and cut.ok
        assert (cut.prompt_tokens, cut.completion_tokens) == (4, 2)
        assert engine.stats.to_dict()["completion_tokens"] == 2

    asyncio.run(go())


def test_stop_lets_in_flight_finish_within_grace_then_ends() -> None:
    async def go() -> None:
        async with FakeOpenAI(delay_s=0.3) as server:
            config = EngineConfig(**{**FAST, "timeout_s": 5}, concurrency=4)
            engine = Engine([Endpoint(server.url)], MODEL, config)
            asyncio.get_running_loop().call_later(0.1, engine.stop, 5)
            async with engine:
                results = [r async for r in engine.run(chat(f"s{i}", i) for i in range(40))]
        assert engine.stopped
        assert len(results) == 4 and all(r.ok for r in results)

    asyncio.run(go())


def test_stop_cancels_in_flight_after_grace() -> None:
    async def go() -> None:
        async with FakeOpenAI(delay_s=10) as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**{**FAST, "timeout_s": 60}))
            asyncio.get_running_loop().call_later(0.1, engine.stop, 0.2)
            start = time.monotonic()
            async with engine:
                results = [r async for r in engine.run(chat(f"s{i}", i) for i in range(40))]
        assert results == [] and time.monotonic() - start < 3

    asyncio.run(go())


def test_fail_cancels_at_once_and_raises_after_what_finished() -> None:
    async def go() -> None:
        async with FakeOpenAI() as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**{**FAST, "timeout_s": 60}, concurrency=4))
            dead = RuntimeError("the server died")
            seen: list[Result] = []
            start = time.monotonic()
            async with engine:
                assert [r.ok async for r in engine.run([chat("quick", 0)])] == [True]
                server.delay_s = 10
                asyncio.get_running_loop().call_later(0.1, engine.fail, dead)
                with pytest.raises(RuntimeError, match="the server died"):
                    async for r in engine.run(chat(f"s{i}", i) for i in range(40)):
                        seen.append(r)
                with pytest.raises(RuntimeError, match="the server died"):  # and every later run
                    [r async for r in engine.run([chat("again", 1)])]
        assert engine.stopped and engine.failure is dead
        assert seen == [] and time.monotonic() - start < 3  # not after the 10 s answers

    asyncio.run(go())


def test_progress_counts_what_caller_and_engine_report() -> None:
    async def go() -> None:
        p = Progress(enabled=False)
        async with FakeOpenAI() as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**FAST))
            p.restart(10)
            async with engine:
                async for r in engine.run([chat(f"k{i} #faults={'400' if i < 3 else 'ok'}", i) for i in range(10)]):
                    p.update(r)
                    p.add_kept(r.ok)
        assert (p.total, p.done, p.failed, p.kept) == (10, 10, 3, 7)
        assert p.tokens == engine.stats.completion_tokens > 0

    asyncio.run(go())


def test_concurrency_bounds_concurrent_runs_together() -> None:
    async def go() -> None:
        async with FakeOpenAI(delay_s=0.05) as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**FAST, concurrency=5))

            async def one_run(tag: str) -> list[Result]:
                return [r async for r in engine.run(chat(f"{tag}{i}", i) for i in range(30))]

            async with engine:
                first, second = await asyncio.gather(one_run("a"), one_run("b"))
            assert len(first) == len(second) == 30
            assert server.max_in_flight == 5

    asyncio.run(go())


def test_run_left_early_frees_its_slots_for_the_next_run() -> None:
    def source(tag: str) -> Iterator[Request]:
        yield chat(f"{tag} #faults=hang", 0)  # still in flight when the caller leaves
        for i in itertools.count(1):
            yield chat(f"{tag}{i}", i)

    async def go() -> None:
        async with FakeOpenAI(delay_s=0.02) as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**FAST, concurrency=5))
            async with engine:
                for tag in "abc":
                    async with aclosing(engine.run(source(tag))) as results:
                        got = [r async for r in _take(results, 7)]
                    assert all(r.ok and "#faults" not in r.texts[0] for r in got)
                for _ in range(300):  # until the server has seen the hanging requests go
                    if server.in_flight == 0:
                        break
                    await asyncio.sleep(0.01)
                server.max_in_flight = 0
                rest = [r async for r in engine.run(chat(f"f{i}", i) for i in range(30))]
            assert len(rest) == 30 and all(r.ok for r in rest)
            assert server.max_in_flight == 5

    asyncio.run(go())


def test_progress_bar_shows_counts(capsys: pytest.CaptureFixture[str]) -> None:
    async def go() -> None:
        async with FakeOpenAI() as server:
            engine = Engine([Endpoint(server.url)], MODEL, EngineConfig(**FAST))
            bar = Progress(enabled=True)
            bar.start()
            async with engine:
                bar.restart(5)
                async for r in engine.run([chat(f"p{i}", i) for i in range(5)]):
                    bar.update(r)
                    bar.add_kept()
            bar.stop()

    asyncio.run(go())
    assert "5/5 done  5 kept  0 failed" in capsys.readouterr().err


BASE = ("t.jinja", {"a": 1, "b": [1, 2]}, "m", {"temperature": 0.7, "n": 1})


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (("t.jinja", {"b": [1, 2], "a": 1}, "m", {"n": 1, "temperature": 0.7}), True),
        (("u.jinja", {"a": 1, "b": [1, 2]}, "m", {"temperature": 0.7, "n": 1}), False),
        (("t.jinja", {"a": 2, "b": [1, 2]}, "m", {"temperature": 0.7, "n": 1}), False),
        (("t.jinja", {"a": 1, "b": [1, 2]}, "m2", {"temperature": 0.7, "n": 1}), False),
        (("t.jinja", {"a": 1, "b": [1, 2]}, "m", {"temperature": 0.8, "n": 1}), False),
    ],
    ids=["key-order-ignored", "template", "variables", "model", "params"],
)
def test_request_id_depends_on_content_not_order(other: tuple, same: bool) -> None:
    assert (request_id(*BASE) == request_id(*other)) is same
    assert len(request_id(*BASE)) == 32


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"messages": [{"role": "user", "content": "a"}], "prompt": "a"}],
    ids=["neither", "both"],
)
def test_request_needs_messages_or_prompt(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="exactly one of messages .chat. or prompt"):
        Request("r1", **kwargs)


# -- against the real vLLM server ------------------------------------------------------------


def _real(vllm_server: Any, requests: list[Request]) -> list[Result]:
    endpoints = [Endpoint(vllm_server.base_urls[0], vllm_server.api_key)]

    async def go() -> list[Result]:
        async with Engine(endpoints, vllm_server.model, EngineConfig(concurrency=8)) as engine:
            return [r async for r in engine.run(requests)]

    results = asyncio.run(go())
    assert all(r.ok for r in results), [r.error_message for r in results]
    return results


@pytest.mark.vllm
def test_real_server_n_choices(vllm_server: Any) -> None:
    (result,) = _real(vllm_server, [chat("Name a fruit.", n=3, max_tokens=16, temperature=1.0)])
    assert len(result.texts) == len(result.finish_reasons) == 3
    assert result.prompt_tokens > 0 and result.completion_tokens > 0


@pytest.mark.vllm
def test_real_server_json_schema_output_parses(vllm_server: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"instruction": {"type": "string", "maxLength": 80}},
        "required": ["instruction"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "task", "schema": schema}}
    (result,) = _real(
        vllm_server, [chat("Write one task as JSON.", response_format=fmt, max_tokens=128, temperature=0.0)]
    )
    assert result.finish_reasons == ["stop"], result.texts
    data = json.loads(result.texts[0])
    assert set(data) == {"instruction"} and isinstance(data["instruction"], str)


@pytest.mark.vllm
def test_real_server_honours_stop_sequence(vllm_server: Any) -> None:
    prompt = "Count from 1 to 10, separated by commas."
    (free,) = _real(vllm_server, [chat(prompt, max_tokens=40, temperature=0.0)])
    (stopped,) = _real(vllm_server, [chat(prompt, max_tokens=40, temperature=0.0, stop=["5"])])
    assert "5" in free.texts[0], free.texts  # the model does count past 5 without the stop
    assert "5" not in stopped.texts[0]
    assert stopped.finish_reasons == ["stop"]
    assert free.texts[0].startswith(stopped.texts[0])
