"""A minimal generation run (Engine + RunStore, no pipeline) for the crash and resume tests.

`python tests/resume_driver.py URL RUN_DIR N` sends N chat requests, skipping those the run
directory already holds, and stores every result. SIGINT/SIGTERM stop it the way the pipeline
does: `Engine.stop()`, then the store is flushed and it exits 130 saying how to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

from generator.config import EngineConfig
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.requests import Request, request_id
from generator.run.store import Flush, RunStore

MODEL = "fake-model"
PARAMS = {"max_tokens": 16, "temperature": 0.0}


def make_requests(n: int) -> Iterator[Request]:
    for i in range(n):
        variables = {"i": i}
        yield Request(
            request_id("task.jinja", variables, MODEL, PARAMS),
            messages=[{"role": "user", "content": f"task number {i}"}],
            params=PARAMS,
            meta={"i": i},
        )


async def run(url: str, run_dir: Path, n: int, concurrency: int, flush_every: int) -> int:
    config = EngineConfig(
        concurrency=concurrency,
        timeout_s=5,
        backoff_base_s=0.01,
        max_retries=20,
        retry_budget=10,
        stop_grace_s=2,
        flush_every=flush_every,
        flush_interval_s=0.2,
    )
    flush = Flush(config.flush_every, config.flush_interval_s)
    store = RunStore(run_dir, {"model": MODEL, "params": PARAMS, "n": n}, flush=flush)
    done = store.done_ids
    print(f"ready: {len(done)} already done", flush=True)
    saved = 0
    try:
        async with Engine([Endpoint(url)], MODEL, config) as engine:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, engine.stop)
            pending = (r for r in make_requests(n) if r.id not in done)
            async with aclosing(engine.run(pending)) as results:
                async for result in results:
                    store.append(result)
                    saved += 1
            store.write_stats(engine.stats.to_dict())
    finally:
        store.close()
    if engine.stopped:
        print(f"interrupted: {saved} results saved in {run_dir}; rerun the same command to resume", flush=True)
        return 130
    print(f"done: {saved} results saved", flush=True)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--flush-every", type=int, default=16)
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.url, args.run_dir, args.n, args.concurrency, args.flush_every)))


if __name__ == "__main__":
    main()
