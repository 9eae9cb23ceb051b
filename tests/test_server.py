from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from generator.config import parse_config
from generator.core.errors import ConfigError, ServerError
from generator.llm.server import (
    LEFTOVER_GRACE_S,
    STOP_GRACE_S,
    ServerInfo,
    build_command,
    build_env,
    free_port,
    group_alive,
    managed_server,
    supervised,
)

pytestmark = pytest.mark.subprocess

CHILD = str(Path(__file__).parent / "child_server.py")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it holds no resources but a table entry.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _supervise(tmp_path: Path, mode: str, deadline_s: float = 10):
    port = free_port()
    cmd = [sys.executable, CHILD, str(port), mode, str(tmp_path / "grandchild.pid")]
    return supervised(cmd, dict(os.environ), tmp_path / "child.log", f"http://127.0.0.1:{port}/health", deadline_s)


def test_whole_group_stops_on_normal_exit(tmp_path: Path) -> None:
    with _supervise(tmp_path, "ok") as proc:
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        assert _alive(grandchild)
        pgid = os.getpgid(proc.pid)
    assert not group_alive(pgid)
    assert _wait_dead(grandchild)


def test_whole_group_stops_on_exception(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), _supervise(tmp_path, "ok") as proc:
        pgid = os.getpgid(proc.pid)
        raise KeyboardInterrupt
    assert not group_alive(pgid)


def test_dead_child_raises_with_log_tail(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"exited with code 3(.|\n)*model weights are missing"):
        with _supervise(tmp_path, "die"):
            pass
    assert _wait_dead(int((tmp_path / "grandchild.pid").read_text()))


def test_never_ready_raises_at_deadline(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"not ready after 2 s(.|\n)*loading weights"):
        with _supervise(tmp_path, "hang", deadline_s=2):
            pass
    assert time.monotonic() - start < 30
    assert _wait_dead(int((tmp_path / "grandchild.pid").read_text()))


def test_a_dead_servers_leftovers_get_a_short_grace(tmp_path: Path) -> None:
    """vLLM killed mid-run leaves its EngineCore behind: it serves no one, so it is not given the
    full grace a live server gets to finish its requests."""
    with _supervise(tmp_path, "stubborn") as proc:
        grandchild = int((tmp_path / "grandchild.pid").read_text())
        time.sleep(0.5)  # the grandchild has set its SIGTERM handler
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        start = time.monotonic()
    assert time.monotonic() - start < LEFTOVER_GRACE_S + 3 < STOP_GRACE_S
    assert _wait_dead(grandchild)


def test_parent_killed_takes_the_server_down(tmp_path: Path) -> None:
    """SIGKILL of instructforge itself (no cleanup code runs) still stops the server."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from generator.llm.server import supervised, free_port
        port = free_port()
        cmd = [sys.executable, {CHILD!r}, str(port), "ok", {str(tmp_path / "gc.pid")!r}]
        with supervised(cmd, dict(os.environ), __import__("pathlib").Path({str(tmp_path / "c.log")!r}),
                        f"http://127.0.0.1:{{port}}/health", 20) as proc:
            print(proc.pid, flush=True)
            time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_dead(child), "the server outlived its killed parent"


def test_port_already_taken_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = parse_config({"server": {"port": port, "device": "cpu"}})
        with pytest.raises(ConfigError, match=rf"server.port {port} is already in use"):
            with managed_server(config, tmp_path):
                pass


def test_missing_model_folder_is_refused_before_starting(tmp_path: Path) -> None:
    config = parse_config({"model": {"name": str(tmp_path / "no-such-model")}, "server": {"device": "cpu"}})
    with pytest.raises(ConfigError, match="no such folder"):
        with managed_server(config, tmp_path):
            pass


def test_cpu_command_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    config = parse_config({"server": {"cpu_threads": "0-1"}})
    cmd = build_command(config, "/m", 8123, "secret", gpu=False)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    assert "--enforce-eager" in cmd
    env = build_env(config, gpu=False)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in build_env(config, gpu=True)
    gpu_cmd = build_command(parse_config({"server": {"tensor_parallel_size": 2}}), "m", 1, "k", gpu=True)
    assert "--enforce-eager" not in gpu_cmd
    assert gpu_cmd[gpu_cmd.index("--tensor-parallel-size") + 1] == "2"


@pytest.mark.vllm
def test_real_server_answers_a_chat_completion(vllm_server: ServerInfo) -> None:
    body = json.dumps(
        {"model": vllm_server.model, "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
    ).encode()
    req = urllib.request.Request(
        f"{vllm_server.base_url}/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {vllm_server.api_key}"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        data = json.loads(resp.read())
    assert data["choices"][0]["message"]["content"].strip()
    assert data["usage"]["completion_tokens"] > 0


@pytest.mark.vllm
def test_real_server_refuses_requests_without_its_key(vllm_server: ServerInfo) -> None:
    req = urllib.request.Request(f"{vllm_server.base_url}/models")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 401


@pytest.mark.vllm
def test_real_server_not_a_model_fails_fast_with_log_tail(tmp_path: Path, vllm_server: ServerInfo) -> None:
    """vLLM itself starts and dies on a folder that holds no model; the log tail names why."""
    empty = tmp_path / "empty-model"
    empty.mkdir()
    config = parse_config({"model": {"name": str(empty)}, "server": {"device": "cpu"}})
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"exited with code \d+(.|\n)*empty-model"):
        with managed_server(config, tmp_path / "logs"):
            pass
    assert time.monotonic() - start < 180
    log = (tmp_path / "logs" / "vllm.log").read_text()
    assert "--api-key ***" in log
