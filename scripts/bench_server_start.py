"""Benchmark of the managed CPU vLLM server's start-up and speed under the settings that change them.

For each variant, a fresh server of the bundled model (generator.llm.server's own command and
environment, then the variant's changes): seconds until /health answers, then output tokens/s for
1, 4 and 64 concurrent chat requests of 64 tokens each (`ignore_eos`, so every request writes them
all). Variants, one at a time, in the order given:

    base      the environment instructforge sets (VLLM_ENABLE_V1_MULTIPROCESSING=0: no worker process)
    workers   VLLM_ENABLE_V1_MULTIPROCESSING=1: vLLM's default, the model in a worker process of its own
    passive   OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep while they wait (what the test suite sets)

--busy keeps one core busy with a spinning process for the whole measure: a machine where the
server shares its cores, as under the test suite or beside the run's own encoders. Compare
variants of one invocation only (the machine's load drifts between runs).

    python scripts/bench_server_start.py                      # base workers passive, quiet
    python scripts/bench_server_start.py --busy base passive  # one core taken by another process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.config import parse_config  # noqa: E402
from generator.llm.model import resolve_model  # noqa: E402
from generator.llm.server import build_command, build_env, served_name  # noqa: E402

VARIANTS = {
    "base": {},
    "workers": {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
KEY = "bench"
TOKENS = 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(url: str, model: str, proc: subprocess.Popen[bytes], started: float) -> dict[str, float]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=900)) as session:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode} before it was up")
            try:
                async with session.get(url + "/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        result = {"startup_s": round(time.monotonic() - started, 1)}

        async def one(i: int) -> int:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": f"Tell a long story about the number {i}."}],
                "max_tokens": TOKENS,
                "ignore_eos": True,
            }
            headers = {"Authorization": f"Bearer {KEY}"}
            async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                return int((await r.json())["usage"]["completion_tokens"])

        for n in (1, 4, 64):
            t = time.monotonic()
            tokens = sum(await asyncio.gather(*(one(i) for i in range(n))))
            result[f"tok_s_{n}"] = round(tokens / (time.monotonic() - t), 1)
        return result


def run_variant(name: str, log_dir: Path) -> dict[str, float]:
    config = parse_config({"server": {"device": "cpu"}})
    port = _free_port()
    env = build_env(config, gpu=False) | VARIANTS[name]
    cmd = build_command(config, resolve_model(config.model.name), port, KEY, gpu=False)
    with (log_dir / f"{name}.log").open("wb") as log:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return asyncio.run(_measure(f"http://127.0.0.1:{port}", served_name(config), proc, started))
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(60)


def _spin() -> None:
    while True:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", help=f"of {', '.join(VARIANTS)}; all when none is named")
    parser.add_argument("--busy", action="store_true", help="keep one core busy while measuring")
    args = parser.parse_args()
    if unknown := [v for v in args.variants if v not in VARIANTS]:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    spinner = multiprocessing.Process(target=_spin, daemon=True) if args.busy else None
    if spinner:
        spinner.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.variants or list(VARIANTS):
                row = {"variant": name, "busy": args.busy} | run_variant(name, Path(tmp))
                print(json.dumps(row), flush=True)
    finally:
        if spinner:
            spinner.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
