"""What the code_exec sandbox costs an answer, against a bare Python start measured in the same run.

    python scripts/bench_sandbox.py            # 20 answers each
    python scripts/bench_sandbox.py --n 50

Both run the same small solution with its asserts: once as `python -I -S -B -c CODE` (the floor: a
process start), once through `filters.sandbox.run_python` (a temporary folder, the child's network
namespace, limits and audit hook, the folder removed). Prints milliseconds per answer and the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from filters.sandbox import Limits, run_python  # noqa: E402 - after the path is set

SOLUTION = "def add(a, b):\n    return a + b\n\n\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="answers run each way")
    args = parser.parse_args()
    start = time.monotonic()
    for _ in range(args.n):
        subprocess.run([sys.executable, "-I", "-S", "-B", "-c", SOLUTION], check=True)
    bare = (time.monotonic() - start) / args.n
    start = time.monotonic()
    networks = set()
    for _ in range(args.n):
        run = run_python(SOLUTION, Limits(call_tests=True))
        if not run.passed:
            raise SystemExit(f"the sandbox failed the solution: {run}")
        networks.add(run.network)
    boxed = (time.monotonic() - start) / args.n
    print(
        f"bare python start: {bare * 1000:.0f} ms an answer; sandbox: {boxed * 1000:.0f} ms "
        f"(network: {', '.join(sorted(networks))}); ratio {boxed / bare:.2f}"
    )


if __name__ == "__main__":
    main()
