"""A run with a managed server: the server starts only when a request must be sent, and its death
ends the run within seconds, with its log tail, after which a rerun resumes to the same dataset.

The managed process is the fake OpenAI-compatible server (tests/fake_openai.py) launched through
`managed_server` in place of vLLM; the real server's death is the chaos matrix's
`managed_server_killed` row (tests/test_chaos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI
from fake_run import NO_REPORT

from generator import cli
from generator.config import Config, EngineConfig, SamplingConfig, parse_config
from generator.core.errors import Interrupted, ServerError
from generator.llm import server
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.run.pipeline import WATCH_S, generate
from generator.run.sender import Sender, Served
from generator.run.store import RunStore

pytestmark = pytest.mark.subprocess

FAKE = str(Path(__file__).parent / "fake_openai.py")


@contextlib.contextmanager
def fake_vllm(delay_s: float = 0.1, argv: list[str] | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`managed_server` runs the fake server (or `argv` and the port) instead of vLLM; yields each
    process it starts."""
    started: list[subprocess.Popen[bytes]] = []
    supervised = server.supervised

    def command(config: Config, model_path: str, port: int, api_key: str, gpu: bool) -> list[str]:
        if argv is not None:
            return [*argv, str(port)]
        return [sys.executable, FAKE, "--port", str(port), "--delay", str(delay_s), "--variants"]

    @contextlib.contextmanager
    def recorded(*args: object, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
        with supervised(*args, **kwargs) as proc:  # type: ignore[arg-type]
            started.append(proc)
            yield proc

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(server, "build_command", command)
        mp.setattr(server, "supervised", recorded)
        yield started


def _settings(run_dir: Path) -> dict[str, object]:
    return {
        "run_dir": str(run_dir),
        "model": {"name": "fake", "served_name": "fake-model"},
        "server": {"device": "cpu"},  # managed: no endpoints
        "engine": {"concurrency": 4, "stop_grace_s": 0.5},
        "generation": {"num_instructions": 24, "instances": "response"},
        # The fake server echoes prompts: keep the chains to what such text passes.
        "filters": {"instructions": [{"name": "length"}, {"name": "exact_dedup"}], "records": [{"name": "truncated"}]},
        **NO_REPORT,
    }


def _config(run_dir: Path) -> Config:
    return parse_config(_settings(run_dir))


def _write_config(run_dir: Path) -> Path:
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(json.dumps(_settings(run_dir)))  # JSON is YAML
    return path


def _ids(run_dir: Path) -> list[str]:
    ids: list[str] = []
    for shard in sorted((run_dir / "dataset" / "data").glob("*.parquet")):
        ids += pq.read_table(shard, columns=["id"]).column("id").to_pylist()
    return sorted(ids)


def _ok_stored(run_dir: Path) -> list[str]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.endswith("}")]
    return [r["request_id"] for r in rows if not r.get("error")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    run_dir = tmp_path_factory.mktemp("reference") / "ref"
    with fake_vllm() as started:
        generate(_config(run_dir), progress=False)
    assert len(started) == 1
    ids = _ids(run_dir)
    assert len(ids) == 24
    return run_dir, ids


def test_a_finished_run_starts_no_server(reference: tuple[Path, list[str]]) -> None:
    run_dir, ids = reference
    with fake_vllm() as started:
        result = generate(_config(run_dir), progress=False)
    assert started == []
    assert result.records == 24
    assert _ids(run_dir) == ids
    assert json.loads((run_dir / "engine_stats.json").read_text())["sessions"][-1]["requests"] == 0


def test_a_missing_result_starts_the_server_once(reference: tuple[Path, list[str]], tmp_path: Path) -> None:
    src, ids = reference
    run_dir = tmp_path / "ref"
    subprocess.run(["cp", "-r", str(src), str(run_dir)], check=True)
    results = run_dir / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]))  # the last response is lost
    with fake_vllm() as started:
        generate(_config(run_dir), progress=False)
    assert len(started) == 1
    assert _ids(run_dir) == ids
    assert json.loads((run_dir / "engine_stats.json").read_text())["sessions"][-1]["requests"] == 1


def test_ctrl_c_while_the_server_starts_unwinds_at_once(tmp_path: Path) -> None:
    """The start happens mid-run now (on the first request), yet Ctrl-C during it still unwinds at
    once and stops the server's whole process group."""
    run_dir = tmp_path / "run"
    pid_file = tmp_path / "pid"
    child = [sys.executable, "-c", HANGS, str(pid_file)]
    pressed: list[float] = []
    # Ctrl-C once the server process is up (a fixed delay could land before the run began on a
    # busy machine, where nothing of the run's is there to unwind).
    presser = threading.Thread(target=_ctrl_c_when, args=(pid_file, pressed), daemon=True)
    with fake_vllm(argv=child):
        presser.start()
        with pytest.raises(Interrupted, match="Run the same command again to resume"):
            generate(_config(run_dir), progress=False)
    presser.join()
    assert pressed, "the server never started"
    assert time.monotonic() - pressed[0] < 6
    pid = int(pid_file.read_text())
    assert _gone(pid), "the server was left running"


def _ctrl_c_when(pid_file: Path, pressed: list[float]) -> None:
    """Send this process SIGINT half a second after `pid_file` appears."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pid_file.exists():
        time.sleep(0.02)
    if pid_file.exists():
        time.sleep(0.5)
        pressed.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":  # dead, not yet reaped
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


# A server that never becomes ready: writes its pid, then sleeps.
HANGS = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"


def _kill_after(results: Path, started: list[subprocess.Popen[bytes]], count: int, killed: list[float]) -> None:
    """SIGKILL the managed server once `results` holds `count` lines (what the test would do
    by hand: `kill -9` the vLLM process mid-run)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if started and results.exists() and results.read_text().count("\n") >= count:
            os.kill(started[0].pid, signal.SIGKILL)
            killed.append(time.monotonic())
            return
        time.sleep(0.02)


def test_a_dead_server_ends_the_run_at_once(
    reference: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    cfg = _write_config(run_dir)
    killed: list[float] = []
    with fake_vllm(delay_s=0.3) as started:
        killer = threading.Thread(target=_kill_after, args=(run_dir / "results.jsonl", started, 6, killed))
        killer.start()
        code = cli.main(["generate", "-c", str(cfg)])
        ended = time.monotonic()
        killer.join()
    err = capsys.readouterr().err
    err = err[err.index("instructforge: error:") :]  # after the round log and the bar
    assert killed, "the run finished before the server could be killed"
    assert code == ServerError.exit_code, err
    noticed = ended - killed[0]
    assert noticed < WATCH_S + 2.5, f"the death was noticed after {noticed:.1f} s"
    port = started[0].args[started[0].args.index("--port") + 1]
    assert err.startswith("instructforge: error: the vLLM server (pid ")
    assert "exited mid-run with signal SIGKILL" in err
    assert f"Every finished request is saved in {run_dir}. Run the same command again to resume" in err
    assert f"http://127.0.0.1:{port}/v1" in err  # the log's tail: the fake server's first line
    assert "Traceback" not in err
    assert len(_ok_stored(run_dir)) >= 6

    with fake_vllm() as started:
        assert cli.main(["generate", "-c", str(cfg)]) == 0
    assert len(started) == 1
    assert _ids(run_dir) == reference[1]
    stored = _ok_stored(run_dir)
    assert len(stored) == len(set(stored)), "a request was stored twice"


def test_external_endpoints_are_not_watched() -> None:
    info = server.ServerInfo(base_urls=["http://127.0.0.1:9/v1"], model="m")
    assert info.died() is None


def test_the_judge_opens_the_engine_when_it_must_send(tmp_path: Path) -> None:
    """`Sender.batch_chat` (the filters' judge, called from a worker thread) opens the engine like
    any stage; what is in the run directory is answered without it."""

    async def go(run_dir: Path) -> tuple[list[str | None], int]:
        opened: list[Engine] = []
        async with FakeOpenAI() as fake:

            async def open_engine() -> Engine:
                opened.append(Engine([Endpoint(fake.url)], "fake-model", EngineConfig()))
                return opened[-1]

            with RunStore(run_dir, {"test": 1}) as store:
                sender = Sender(open_engine, store, Served("fake-model", SamplingConfig()))
                chat = sender.batch_chat(asyncio.get_running_loop())
                answers = await asyncio.to_thread(chat, [[{"role": "user", "content": "is it good?"}]], {})
            for engine in opened:
                await engine.aclose()
        return answers, len(opened)

    assert asyncio.run(go(tmp_path / "run")) == (["echo: is it good?"], 1)
    assert asyncio.run(go(tmp_path / "run")) == (["echo: is it good?"], 0)  # resumed: nothing sent
