"""One real vLLM server for every pytest-xdist worker of a test session (tests/conftest.py: `vllm_server`).

The first worker that needs the server starts this script (its own session, so the worker's end does
not stop it) under a lock; every worker reads where it listens from INFO, a JSON file written once:
`{"base_url", "model", "api_key", "log"}` when the server is healthy, or `{"error"}`. The script
holds the managed server (generator.llm.server: it dies with this script) until the pytest process
that started the workers, WATCHED, is gone: the session's end, however it ends.

    python tests/shared_server.py INFO WATCHED LOG_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.config import parse_config  # noqa: E402
from generator.core.errors import InstructforgeError  # noqa: E402
from generator.llm.server import managed_server  # noqa: E402


def _write(path: Path, data: dict[str, str]) -> None:
    """Atomically, readable by this user only (it holds the server's key)."""
    part = path.with_suffix(".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    part.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(info: Path, watched: int, log_dir: Path) -> int:
    try:
        with managed_server(parse_config({"server": {"device": "cpu"}}), log_dir) as server:
            _write(info, {"base_url": server.base_url, "model": server.model, "api_key": server.api_key or ""})
            while _alive(watched) and server.died() is None:
                time.sleep(1)
    except (InstructforgeError, OSError) as e:
        _write(info, {"error": str(e)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
