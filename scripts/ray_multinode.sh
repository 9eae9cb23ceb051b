#!/usr/bin/env bash
#SBATCH --job-name=instructforge-ray
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
#
# A model too large for one node, with vLLM's own multi-node support (Ray): tensor parallel
# inside a node (TP = GPUs per node), pipeline parallel across nodes (PP = nodes). One vLLM
# server spans the allocation; generate and push then run on the head node through
# scripts/run_gpu.sh --endpoint. Needs `pip install ray` next to vLLM on every node, the same
# environment and model cache path on every node, and the nodes able to reach each other.
#
#   mkdir -p logs && sbatch --nodes=2 scripts/ray_multinode.sh configs/gpu-70b-tp8.yaml [--push-repo me/ds]
#
# What it runs, in order (the exact commands: see --dry-run):
#   1. head:    ray start --head --node-ip-address=HEAD_IP --port=6379 --num-gpus=G --block
#   2. workers: ray start --address=HEAD_IP:6379 --num-gpus=G --block          (each other node)
#   3. wait until the Ray cluster reports NODES x G GPUs
#   4. head:    python -m vllm.entrypoints.openai.api_server --model ... \
#                 --tensor-parallel-size G --pipeline-parallel-size NODES \
#                 --distributed-executor-backend ray            (RAY_ADDRESS=HEAD_IP:6379)
#   5. scripts/run_gpu.sh --endpoint http://127.0.0.1:PORT/v1 CONFIG   (generate, push)
#   6. on exit: stop vLLM, `ray stop` on every node (trap)
# Without Slurm, run steps 1 and 2 by hand on each node, then this script on the head node with
# NODES=... RAY_STARTED=1 (it then skips 1-2 and leaves Ray running).
#
# Dry run:  NODES=2 GPUS_PER_NODE=8 HEAD_IP=10.0.0.1 DRY_RUN=1 bash scripts/ray_multinode.sh CONFIG
# Environment: NODES (SLURM_JOB_NUM_NODES), GPUS_PER_NODE (8), HEAD_IP (looked up), RAY_PORT
#   (6379), PORT (8000), PYTHON (python), DRY_RUN, RAY_STARTED. Options after CONFIG go to
#   run_gpu.sh (--push-repo, --private, --run-dir, -- GENERATE_ARGS).
set -euo pipefail

REPO=${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$REPO"
[[ -x scripts/run_gpu.sh ]] || {
  echo "ray_multinode.sh: error: no scripts/run_gpu.sh in $REPO; submit from the repository root" >&2
  exit 2
}

PYTHON=${PYTHON:-python}
DRY_RUN=${DRY_RUN:-0}
PORT=${PORT:-8000}
RAY_PORT=${RAY_PORT:-6379}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NODES=${NODES:-${SLURM_JOB_NUM_NODES:-}}
RAY_STARTED=${RAY_STARTED:-0}

die() {
  echo "ray_multinode.sh: error: $*" >&2
  exit 2
}

[[ ${1:-} != "--dry-run" ]] || { DRY_RUN=1; shift; }
CONFIG=${1:?usage: scripts/ray_multinode.sh [--dry-run] CONFIG [run_gpu.sh options]}
shift
[[ -n $NODES ]] || die "NODES unset and not in a Slurm job; set NODES to the number of nodes"
((NODES >= 2)) || die "NODES is $NODES; one node is scripts/run_gpu.sh's job"

if [[ -z ${HEAD_IP:-} ]]; then
  if ((DRY_RUN)); then
    HEAD_IP="<head-ip>"
  else
    HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
    HEAD_IP=$(srun --nodes=1 --ntasks=1 -w "$HEAD_NODE" hostname --ip-address | awk '{print $1}')
  fi
fi
HEAD_NODE=${HEAD_NODE:-$(hostname)}
RAY_ADDRESS="$HEAD_IP:$RAY_PORT"
LOG_DIR=${LOG_DIR:-logs/ray-${SLURM_JOB_ID:-local}}

# The exact vLLM command: the package's own (generator.llm.server.build_command) plus the multi-node flags.
mapfile -d '' SERVE_ARGS < <("$PYTHON" - "$CONFIG" "$GPUS_PER_NODE" "$PORT" <<'PY'
import sys
from generator.config import load_config
from generator.core.errors import InstructforgeError
from generator.llm.server import build_command
try:
    c = load_config(sys.argv[1])
except InstructforgeError as err:
    sys.exit(f"ray_multinode.sh: error: {err}")
c.server.tensor_parallel_size, c.server.data_parallel_size = int(sys.argv[2]), 1
cmd = build_command(c, c.model.name, int(sys.argv[3]), "-", gpu=True)
i = cmd.index("--api-key")
del cmd[i:i + 2]  # the key travels in VLLM_API_KEY
sys.stdout.write("\0".join(cmd[1:]) + "\0")  # after the interpreter: the script runs "$PYTHON"
PY
)
((${#SERVE_ARGS[@]})) || die "could not build the vLLM command for '$CONFIG' (see the message above)"
SERVE_CMD=("$PYTHON" "${SERVE_ARGS[@]}" --pipeline-parallel-size "$NODES" --distributed-executor-backend ray)

HEAD_CMD=(srun --nodes=1 --ntasks=1 -w "$HEAD_NODE" ray start --head --node-ip-address="$HEAD_IP"
  --port="$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --block)
WORKER_CMD=(srun --nodes=$((NODES - 1)) --ntasks=$((NODES - 1)) --exclude="$HEAD_NODE"
  ray start --address="$RAY_ADDRESS" --num-gpus="$GPUS_PER_NODE" --block)
STOP_CMD=(srun --nodes="$NODES" --ntasks="$NODES" ray stop --force)
RUN_CMD=(scripts/run_gpu.sh --endpoint "http://127.0.0.1:$PORT/v1" "$CONFIG" "$@")

show() { printf '+'; printf ' %q' "$@"; printf '\n'; }

if ((DRY_RUN)); then
  echo "[ray] $NODES nodes x $GPUS_PER_NODE GPUs; head $HEAD_IP; logs: $LOG_DIR/"
  if ((!RAY_STARTED)); then
    show "${HEAD_CMD[@]}"
    show "${WORKER_CMD[@]}"
  fi
  echo "[ray] wait until the cluster at $RAY_ADDRESS reports $((NODES * GPUS_PER_NODE)) GPUs"
  echo "[serve] log: $LOG_DIR/serve.log"
  echo "+ export RAY_ADDRESS=$RAY_ADDRESS VLLM_API_KEY=<random>"
  show setsid "${SERVE_CMD[@]}"
  echo "[serve] wait for http://127.0.0.1:$PORT/health"
  show "${RUN_CMD[@]}"
  echo "[stop] on exit: kill -TERM -- -<vLLM process group>"
  ((RAY_STARTED)) || show "${STOP_CMD[@]}"
  exit 0
fi

mkdir -p "$LOG_DIR"
PIDS=()
SERVER_PID=""
cleanup() {
  local code=$?
  if [[ -n $SERVER_PID ]]; then
    echo "[stop] stopping vLLM" >&2
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    sleep 10
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  if ((!RAY_STARTED)); then
    echo "[stop] stopping Ray on $NODES nodes" >&2
    "${STOP_CMD[@]}" >>"$LOG_DIR/ray.log" 2>&1 || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

if ((!RAY_STARTED)); then
  echo "[ray] starting the head on $HEAD_NODE ($HEAD_IP) and $((NODES - 1)) workers; log: $LOG_DIR/ray.log" >&2
  "${HEAD_CMD[@]}" >>"$LOG_DIR/ray.log" 2>&1 &
  PIDS+=($!)
  sleep 10
  "${WORKER_CMD[@]}" >>"$LOG_DIR/ray.log" 2>&1 &
  PIDS+=($!)
fi
want=$((NODES * GPUS_PER_NODE))
for ((waited = 0; ; waited += 5)); do
  have=$("$PYTHON" -c 'import ray, sys; ray.init(address=sys.argv[1], logging_level="ERROR")
print(int(ray.cluster_resources().get("GPU", 0)))' "$RAY_ADDRESS" 2>/dev/null || echo 0)
  ((have >= want)) && break
  ((waited < 600)) || die "the Ray cluster has $have of $want GPUs after 600s; see $LOG_DIR/ray.log"
  sleep 5
done
echo "[ray] cluster ready: $have GPUs" >&2

export RAY_ADDRESS
if [[ -z ${VLLM_API_KEY:-} ]]; then
  VLLM_API_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
fi
export VLLM_API_KEY
echo "[serve] starting vLLM (TP $GPUS_PER_NODE x PP $NODES); log: $LOG_DIR/serve.log" >&2
setsid "${SERVE_CMD[@]}" >>"$LOG_DIR/serve.log" 2>&1 &
SERVER_PID=$!
for ((waited = 0; ; waited += 5)); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    SERVER_PID=""
    tail -n 30 "$LOG_DIR/serve.log" >&2
    die "vLLM exited before it was ready; see $LOG_DIR/serve.log"
  fi
  ((waited < 3600)) || die "vLLM not ready after 3600s; see $LOG_DIR/serve.log"
  sleep 5
done
echo "[serve] ready after ${waited}s" >&2
"${RUN_CMD[@]}"
