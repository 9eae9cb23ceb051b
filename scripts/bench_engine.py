"""Benchmarks of the generation engine (generator/llm/: engine, endpoints, transport + generator/run/store.py).

--stub   requests/s through the whole engine against a local fake server that answers at once
         (render a Jinja template, hash the request id, send, parse, a length filter, append to
         a run directory), and peak memory, at 10k and 100k requests, each in a fresh process.
--real   output tokens/s of the engine against a real vLLM server versus a minimal raw
         asyncio + aiohttp loop sending the same kind of prompts at the same concurrency, run in
         the order raw, engine, engine, raw so that drift cancels out.

    python scripts/bench_engine.py --stub
    python scripts/bench_engine.py --real [URL] [--prompts 64 --max-tokens 64 --concurrency 64 --rounds 1]
    python scripts/bench_engine.py --real --paired --rounds 2   # raw and engine at the same time

--real reads the URL, key and model from /tmp/shared_vllm/{endpoint,key,model} when not given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path

import aiohttp

from generator.config import EngineConfig
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.requests import Request, request_id
from generator.run.progress import Progress
from generator.run.store import Flush, RunStore

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path("/tmp/shared_vllm")
TEMPLATE = "Write a task about {{ topic }} for a student of {{ level }} level, number {{ i }}."
TOPICS = ["algebra", "poetry", "cooking", "history", "chemistry", "travel", "music", "finance"]


# -- stub ----------------------------------------------------------------------------------------


async def _stub_one(url: str, n: int, concurrency: int, run_dir: Path) -> dict[str, float]:
    from jinja2.sandbox import SandboxedEnvironment

    template = SandboxedEnvironment().from_string(TEMPLATE)
    params = {"max_tokens": 64, "temperature": 0.7}
    model = "fake-model"

    def requests():
        for i in range(n):
            variables = {"topic": TOPICS[i % len(TOPICS)], "level": "high school", "i": i}
            content = template.render(**variables)
            rid = request_id("bench.jinja", variables, model, params)
            yield Request(rid, messages=[{"role": "user", "content": content}], params=params, meta={"i": i})

    config = EngineConfig(concurrency=concurrency)
    store = RunStore(run_dir, {"bench": n}, fresh=True, flush=Flush(config.flush_every))
    start, cpu = time.perf_counter(), time.process_time()
    async with Engine([Endpoint(url)], model, config) as engine:
        bar = Progress(enabled=False)  # counted as a run counts, not drawn
        bar.restart(n)
        async with aclosing(engine.run(requests())) as results:
            async for result in results:
                bar.update(result)
                if result.ok and len(result.texts[0]) > 10:  # stands for the filter chain
                    bar.add_kept()
                store.append(result)
    store.close()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert engine.stats.ok == n, engine.stats.to_dict()
    return {
        "requests": n,
        "seconds": round(seconds, 2),
        "requests_per_s": round(n / seconds),
        "cpu_us_per_request": round(cpu / n * 1e6),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def _stub_raw(url: str, n: int, concurrency: int) -> dict[str, float]:
    """The ceiling on this machine: a bare aiohttp loop against the same fake server."""
    body = {"model": "fake-model", "max_tokens": 64, "temperature": 0.7}
    headers = {"Content-Type": "application/json"}
    todo = iter(range(n))
    start, cpu = time.perf_counter(), time.process_time()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            for i in todo:
                data = json.dumps({**body, "messages": [{"role": "user", "content": f"task {i}"}]}).encode()
                async with session.post(url + "/chat/completions", data=data, headers=headers) as resp:
                    json.loads(await resp.read())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "requests": n,
        "seconds": round(seconds, 2),
        "requests_per_s": round(n / seconds),
        "cpu_us_per_request": round(cpu / n * 1e6),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def stub(sizes: list[int], concurrency: int) -> None:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        print(f"fake server {url}, concurrency {concurrency}")
        runs = [("raw aiohttp loop", "--stub-raw", min(sizes))] + [("engine", "--stub-one", n) for n in sizes]
        for name, flag, n in runs:
            with tempfile.TemporaryDirectory() as run_dir:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        flag,
                        str(n),
                        "--url",
                        url,
                        "--concurrency",
                        str(concurrency),
                        "--run-dir",
                        run_dir,
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            # CPU time per request is what a busy machine distorts least: 1e6 / it is the rate
            # the client sustains on one free core.
            print(
                f"{name:<17} {row['requests']:>7} requests  {row['seconds']:>6} s  "
                f"{row['requests_per_s']:>5} req/s  client CPU {row['cpu_us_per_request']} us/request  "
                f"peak RSS {row['peak_rss_mib']} MiB"
            )
    finally:
        server.terminate()
        server.wait()


# -- real ----------------------------------------------------------------------------------------


def _prompts(offset: int, count: int) -> list[str]:
    return [f"Write a long story about {TOPICS[i % len(TOPICS)]}, chapter {offset + i}." for i in range(count)]


async def _raw(url: str, key: str | None, model: str, prompts: list[str], concurrency: int, max_tokens: int) -> int:
    """The reference: one semaphore, one session, nothing else."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=3600)
    ) as session:

        async def one(prompt: str) -> int:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "ignore_eos": True,
            }
            async with sem, session.post(url + "/chat/completions", json=body, headers=headers) as resp:
                return (await resp.json())["usage"]["completion_tokens"]

        return sum(await asyncio.gather(*(one(p) for p in prompts)))


async def _engine(url: str, key: str | None, model: str, prompts: list[str], concurrency: int, max_tokens: int) -> int:
    params = {"max_tokens": max_tokens, "temperature": 0.0, "ignore_eos": True}
    requests = [
        Request(request_id("bench", {"p": p}, model, params), messages=[{"role": "user", "content": p}], params=params)
        for p in prompts
    ]
    with tempfile.TemporaryDirectory() as run_dir:
        store = RunStore(Path(run_dir), {"bench": "real"})
        async with Engine([Endpoint(url, key)], model, EngineConfig(concurrency=concurrency)) as eng:
            async for result in eng.run(requests):
                store.append(result)
        store.close()
    assert eng.stats.failed == 0, eng.stats.to_dict()
    return eng.stats.completion_tokens


def real(url: str, key: str | None, model: str, prompts: int, concurrency: int, max_tokens: int, rounds: int) -> None:
    print(f"vLLM {url} model {model}: {prompts} prompts, {max_tokens} tokens each, concurrency {concurrency}")
    totals = {"raw": [0, 0.0], "engine": [0, 0.0]}
    # Fresh prompts every run, so that no run profits from another's prefix cache.
    for round_, name in enumerate(["raw", "engine", "engine", "raw"] * rounds):
        func = _raw if name == "raw" else _engine
        start, cpu = time.perf_counter(), time.process_time()
        tokens = asyncio.run(func(url, key, model, _prompts(round_ * prompts, prompts), concurrency, max_tokens))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        totals[name][0] += tokens
        totals[name][1] += seconds
        # The client's own CPU time shows whether it could be the bottleneck, whatever the server does.
        print(f"  {name:<6} {tokens} tokens in {seconds:.1f} s: {tokens / seconds:.1f} tok/s (client CPU {cpu:.2f} s)")
    raw_rate = totals["raw"][0] / totals["raw"][1]
    engine_rate = totals["engine"][0] / totals["engine"][1]
    print(f"raw {raw_rate:.1f} tok/s, engine {engine_rate:.1f} tok/s, ratio {engine_rate / raw_rate:.3f}")


def _real_one(
    which: str,
    url: str,
    key: str | None,
    model: str,
    prompts: list[str],
    concurrency: int,
    max_tokens: int,
    start_at: float,
) -> dict[str, float]:
    func = _raw if which == "raw" else _engine
    time.sleep(max(0.0, start_at - time.time()))
    start, cpu = time.perf_counter(), time.process_time()
    tokens = asyncio.run(func(url, key, model, prompts, concurrency, max_tokens))
    return {"tokens": tokens, "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def paired(url: str, key: str | None, model: str, prompts: int, concurrency: int, max_tokens: int, rounds: int) -> None:
    """Raw and engine at the same time, in two processes, each with its own prompts and the full
    concurrency: on a server others use too, both meet the same load, so the ratio holds still."""
    print(
        f"vLLM {url} model {model}, paired: {prompts} prompts each, {max_tokens} tokens, concurrency {concurrency} each"
    )
    totals = {"raw": [0, 0.0], "engine": [0, 0.0]}
    for round_ in range(rounds):
        start_at = time.time() + 3  # both processes imported and waiting by then
        procs = {}
        for i, which in enumerate(["raw", "engine"]):
            offset = (2 * round_ + (i + round_) % 2) * prompts  # swap prompt sets every round
            cmd = [
                sys.executable,
                __file__,
                "--real-one",
                which,
                "--url",
                url,
                "--model",
                model,
                "--prompts",
                str(prompts),
                "--offset",
                str(offset),
                "--concurrency",
                str(concurrency),
                "--max-tokens",
                str(max_tokens),
                "--start-at",
                str(start_at),
            ]
            if key:
                cmd += ["--key", key]
            procs[which] = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        for which, proc in procs.items():
            out, _ = proc.communicate()
            row = json.loads(out.strip().splitlines()[-1])
            totals[which][0] += row["tokens"]
            totals[which][1] += row["seconds"]
            print(
                f"  round {round_ + 1} {which:<6} {row['tokens']} tokens in {row['seconds']:.1f} s: "
                f"{row['tokens'] / row['seconds']:.1f} tok/s (client CPU {row['cpu']:.2f} s)"
            )
    raw_rate = totals["raw"][0] / totals["raw"][1]
    engine_rate = totals["engine"][0] / totals["engine"][1]
    print(f"raw {raw_rate:.1f} tok/s, engine {engine_rate:.1f} tok/s, ratio {engine_rate / raw_rate:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stub", action="store_true")
    mode.add_argument("--real", nargs="?", const="", metavar="URL")
    mode.add_argument("--stub-one", type=int, help=argparse.SUPPRESS)
    mode.add_argument("--stub-raw", type=int, help=argparse.SUPPRESS)
    mode.add_argument("--real-one", choices=["raw", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--paired", action="store_true", help="--real: run raw and engine at once (steadier on a server others use)"
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000", help="request counts for --stub")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="default: the engine's default for --stub, 64 for --real"
    )
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1, help="--real: repeat raw, engine, engine, raw")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--key", default=None)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    if args.stub_one:
        concurrency = args.concurrency or EngineConfig().concurrency
        print(json.dumps(asyncio.run(_stub_one(args.url, args.stub_one, concurrency, args.run_dir))))
    elif args.real_one:
        row = _real_one(
            args.real_one,
            args.url,
            args.key,
            args.model,
            _prompts(args.offset, args.prompts),
            args.concurrency,
            args.max_tokens,
            args.start_at,
        )
        print(json.dumps(row))
    elif args.stub_raw:
        concurrency = args.concurrency or EngineConfig().concurrency
        print(json.dumps(asyncio.run(_stub_raw(args.url, args.stub_raw, concurrency))))
    elif args.stub:
        stub([int(s) for s in args.sizes.split(",")], args.concurrency or EngineConfig().concurrency)
    else:

        def shared(name: str) -> str | None:
            path = SHARED / name
            return path.read_text().strip() if path.exists() else None

        url = args.real or shared("endpoint")
        if not url:
            sys.exit(f"--real needs a server URL, or {SHARED}/endpoint")
        model = args.model or shared("model")
        if not model:
            sys.exit(f"--real needs --model, or {SHARED}/model")
        bench = paired if args.paired else real
        bench(
            url.rstrip("/"),
            args.key or shared("key"),
            model,
            args.prompts,
            args.concurrency or 64,
            args.max_tokens,
            args.rounds,
        )


if __name__ == "__main__":
    main()
