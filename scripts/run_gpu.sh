#!/usr/bin/env bash
# One node, all its GPUs: start vLLM, generate, push, stop.
#
#   scripts/run_gpu.sh [options] CONFIG [-- GENERATE_ARGS...]
#
# Stages, each with its log under RUN_DIR/logs/: serve.log (vLLM), generate.log, push.log.
# A non-zero exit on any failure; the server is stopped on every exit (trap).
#
# GPU sizing: the config's server.tensor_parallel_size is the GPUs one model replica needs
# (1 for a 7B model on an 80 GB GPU, 8 for a 70B model). The node's GPUs are split into
# GPUS / TP data-parallel replicas, so a small model runs one replica per GPU and a 70B model
# one replica over all 8. TP and DP in the environment override both.
#
# Options:
#   --dry-run          print exactly what would run, run nothing (or DRY_RUN=1)
#   --run-dir DIR      run directory (default: the config's run_dir)
#   --push-repo REPO   push the dataset to REPO at the end (default: the config's dataset.push.repo)
#   --private          create the pushed repository private
#   --no-push          no push, even if the config names a repo (shards: the merge pushes)
#   --endpoint URL     use a running server (`http://host:port/v1`) instead of starting one;
#                      its key in $VLLM_API_KEY (scripts/ray_multinode.sh uses this)
# Environment: NUM_GPUS (default: nvidia-smi -L), TP, DP, PORT (8000), PYTHON (python),
#   VLLM_API_KEY (random when unset), HF_TOKEN (for the push and gated models).
set -euo pipefail

PYTHON=${PYTHON:-python}
DRY_RUN=${DRY_RUN:-0}
PORT=${PORT:-8000}
RUN_DIR=""
PUSH_REPO=""
PRIVATE=0
NO_PUSH=0
ENDPOINT=""
CONFIG=""
GENERATE_ARGS=()

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }

die() {
  echo "run_gpu.sh: error: $*" >&2
  exit 2
}

while (($#)); do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --run-dir) RUN_DIR=${2:?--run-dir needs a directory}; shift ;;
    --push-repo) PUSH_REPO=${2:?--push-repo needs user/name}; shift ;;
    --private) PRIVATE=1 ;;
    --no-push) NO_PUSH=1 ;;
    --endpoint) ENDPOINT=${2:?--endpoint needs a URL like http://host:8000/v1}; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; GENERATE_ARGS=("$@"); break ;;
    -*) die "unknown option '$1'; see --help" ;;
    *) [[ -z $CONFIG ]] || die "one CONFIG expected, got '$CONFIG' and '$1'"; CONFIG=$1 ;;
  esac
  shift
done
[[ -n $CONFIG ]] || die "no CONFIG given; usage: scripts/run_gpu.sh [--dry-run] CONFIG [-- GENERATE_ARGS]"

# What the config says, read by the package itself in one call (NUL-separated): tensor parallel
# size, startup timeout, run_dir, push repo, private, then the vLLM command that
# generator.llm.server.build_command makes, less the interpreter, the key (it travels in
# VLLM_API_KEY, out of `ps` and the logs) and the parallel sizes (set below).
mapfile -d '' CFG < <("$PYTHON" - "$CONFIG" "$PORT" <<'PY'
import sys
from generator.config import load_config
from generator.core.errors import InstructforgeError
from generator.llm.server import build_command
try:
    c = load_config(sys.argv[1])
except InstructforgeError as err:
    sys.exit(f"run_gpu.sh: error: {err}")
push = c.dataset.push
cmd = build_command(c, c.model.name, int(sys.argv[2]), "-", gpu=True)[1:]
for flag in ("--api-key", "--tensor-parallel-size", "--data-parallel-size"):
    i = cmd.index(flag)
    del cmd[i:i + 2]
fields = [c.server.tensor_parallel_size, int(c.server.startup_timeout_s), c.run_dir,
          push.repo if push else "-", int(bool(push and push.private)), *cmd]
sys.stdout.write("".join(f"{f}\0" for f in fields))
PY
)
((${#CFG[@]} > 5)) || die "could not read config '$CONFIG' (the message above says why)"
CFG_TP=${CFG[0]} CFG_TIMEOUT=${CFG[1]} CFG_RUN_DIR=${CFG[2]} CFG_REPO=${CFG[3]} CFG_PRIVATE=${CFG[4]}
SERVE_ARGS=("${CFG[@]:5}")
RUN_DIR=${RUN_DIR:-$CFG_RUN_DIR}
[[ $CFG_REPO == "-" ]] || PUSH_REPO=${PUSH_REPO:-$CFG_REPO}
((NO_PUSH)) && PUSH_REPO=""
((CFG_PRIVATE)) && PRIVATE=1

if [[ -z $ENDPOINT ]]; then
  if [[ -z ${NUM_GPUS:-} ]]; then
    if command -v nvidia-smi >/dev/null; then
      NUM_GPUS=$(nvidia-smi -L | grep -c '^GPU')
    elif ((DRY_RUN)); then
      NUM_GPUS=1
    else
      die "no nvidia-smi on this node and NUM_GPUS unset; run on a GPU node or set NUM_GPUS"
    fi
  fi
  TP=${TP:-$CFG_TP}
  ((NUM_GPUS >= 1)) || die "NUM_GPUS is $NUM_GPUS; expected 1 or more"
  ((TP <= NUM_GPUS)) || die "the model needs $TP GPUs per replica (tensor_parallel_size) but this node" \
    "has $NUM_GPUS; use a bigger node or scripts/ray_multinode.sh"
  ((NUM_GPUS % TP == 0)) || die "$NUM_GPUS GPUs do not split into replicas of $TP; set TP or NUM_GPUS"
  DP=${DP:-$((NUM_GPUS / TP))}
  ((TP * DP <= NUM_GPUS)) || die "TP=$TP x DP=$DP needs $((TP * DP)) GPUs; this node has $NUM_GPUS"
  ENDPOINT="http://127.0.0.1:$PORT/v1"
  SERVE_CMD=("$PYTHON" "${SERVE_ARGS[@]}" --tensor-parallel-size "$TP" --data-parallel-size "$DP")
fi

GEN_CMD=("$PYTHON" -m generator.cli generate --config "$CONFIG" --run-dir "$RUN_DIR"
  --set "server.endpoints=[$ENDPOINT]" --set server.api_key_env=VLLM_API_KEY)
# Generate never pushes itself: the push stage pushes once at the end (or nothing, with --no-push).
[[ -z $PUSH_REPO && $CFG_REPO == "-" ]] || GEN_CMD+=(--set dataset.push=null)
GEN_CMD+=("${GENERATE_ARGS[@]}")
PUSH_CMD=("$PYTHON" -m generator.cli push "$RUN_DIR" --repo "$PUSH_REPO")
((PRIVATE)) && PUSH_CMD+=(--private)

LOG_DIR=$RUN_DIR/logs
SERVER_PID=""

show() { printf '+'; printf ' %q' "$@"; printf '\n'; }

# stage NAME CMD...: run CMD with its output in LOG_DIR/NAME.log (and on the terminal).
stage() {
  local name=$1; shift
  if ((DRY_RUN)); then
    echo "[$name] log: $LOG_DIR/$name.log"
    show "$@"
    return 0
  fi
  echo "[$name] $(date -u +%FT%TZ) start; log: $LOG_DIR/$name.log" >&2
  if ! "$@" 2>&1 | tee -a "$LOG_DIR/$name.log"; then
    echo "[$name] failed; see $LOG_DIR/$name.log" >&2
    return 1
  fi
  echo "[$name] $(date -u +%FT%TZ) done" >&2
}

stop_server() {
  local code=$?
  if [[ -n $SERVER_PID ]]; then
    echo "[stop] stopping vLLM (process group $SERVER_PID)" >&2
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 -- "-$SERVER_PID" 2>/dev/null || break
      sleep 1
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
  exit "$code"
}

start_server() {
  if ((DRY_RUN)); then
    echo "[serve] log: $LOG_DIR/serve.log (GPUs: $NUM_GPUS, tensor parallel $TP x data parallel $DP)"
    echo "+ export VLLM_API_KEY=<random>"
    show setsid "${SERVE_CMD[@]}"
    echo "[serve] wait for ${ENDPOINT%/v1}/health (up to ${CFG_TIMEOUT}s)"
    return 0
  fi
  echo "[serve] $(date -u +%FT%TZ) GPUs: $NUM_GPUS, tensor parallel $TP x data parallel $DP;" \
    "log: $LOG_DIR/serve.log" >&2
  # setsid: vLLM leaves EngineCore children; the trap stops the whole group.
  setsid "${SERVE_CMD[@]}" >>"$LOG_DIR/serve.log" 2>&1 &
  SERVER_PID=$!
  local waited=0
  until curl -sf -o /dev/null "${ENDPOINT%/v1}/health"; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      SERVER_PID=""
      echo "[serve] vLLM exited before it was ready; end of $LOG_DIR/serve.log:" >&2
      tail -n 30 "$LOG_DIR/serve.log" >&2
      return 1
    fi
    if ((waited >= CFG_TIMEOUT)); then
      echo "[serve] not ready after ${CFG_TIMEOUT}s (server.startup_timeout_s); see $LOG_DIR/serve.log" >&2
      return 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
  echo "[serve] ready at $ENDPOINT after ${waited}s" >&2
}

((DRY_RUN)) || mkdir -p "$LOG_DIR"
trap stop_server EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
if [[ -n ${SERVE_CMD+x} ]]; then
  if [[ -z ${VLLM_API_KEY:-} ]] && ((!DRY_RUN)); then
    VLLM_API_KEY=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
  fi
  export VLLM_API_KEY
  start_server
else
  echo "[serve] using the running server at $ENDPOINT (key in VLLM_API_KEY)"
fi
stage generate "${GEN_CMD[@]}"
if [[ -n $PUSH_REPO ]]; then
  stage push "${PUSH_CMD[@]}"
else
  echo "[push] skipped: --no-push, or no --push-repo and no dataset.push.repo in the config"
fi
if ((DRY_RUN)) && [[ -n ${SERVE_CMD+x} ]]; then
  echo "[stop] on exit: kill -TERM -- -<vLLM process group>, then -KILL after 30s"
fi
