"""Benchmark of the run report at scale: a 50,000-row run made against the fake OpenAI-compatible
server (tests/fake_openai.py: echoed, tagged instructions; the instruction chain drops short ones,
so rejected.jsonl is full too), then `instructforge report RUN_DIR` in a fresh process, then the page
opened in headless Chromium (tests/browser.py).

    python scripts/bench_report.py                       # 50,000 rows
    python scripts/bench_report.py --rows 5000 --keep /tmp/bench_report   # keep the run and a screenshot

Prints the report's build time (wall and CPU seconds, peak RSS of the report process, and the
steps: read, measure, render), its size, and in Chromium its load time, console errors and
network requests. The report samples where its page says so (the embedding measures on
`report.sample` rows, the table on `report.examples` rows); lengths and verbs are on every row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _config(run_dir: Path, url: str, rows: int) -> str:
    rounds = rows // (8 * 64) * 4 + 20
    return (
        f"run_dir: {run_dir}\n"
        "model: {name: fake, served_name: fake-model}\n"
        f"server: {{endpoints: [{url}]}}\n"
        "engine: {concurrency: 64}\n"
        f"generation: {{num_instructions: {rows}, instances: response, max_rounds: {rounds}}}\n"
        # Drops before the target (short instructions), so that `rows` rows are kept and
        # rejected.jsonl is not empty.
        "filters:\n"
        "  instructions: [{name: length, min_words: 10}, {name: exact_dedup}]\n"
        "  records: [{name: truncated}]\n"
        "report: {enabled: false}\n"  # the report is built and timed on its own below
    )


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of a command in a fresh process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000, help="kept rows to generate (default: 50,000)")
    parser.add_argument("--keep", type=Path, help="folder to keep the run, the report and a screenshot in")
    args = parser.parse_args()
    from browser import colour_stats, open_page

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--variants"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        run_dir = work / "run"
        cfg = work / "bench.yaml"
        cfg.write_text(_config(run_dir, url, args.rows))
        gen_wall, _, _, _ = _run([sys.executable, "-m", "generator.cli", "generate", "-c", str(cfg), "--fresh"], env)
    finally:
        server.terminate()
        server.wait()
    funnel = json.loads((run_dir / "funnel.json").read_text())
    report = work / "report.html"
    wall, cpu, rss, out = _run(
        [sys.executable, "-m", "generator.cli", "report", str(run_dir), "--out", str(report)], env
    )
    visit = open_page(report, {"ready": "document.body.dataset.ready"})
    (work / "report.png").write_bytes(visit.screenshot)
    colours, inked = colour_stats(visit.screenshot)
    rejected = run_dir / "rejected.jsonl"
    print(
        json.dumps(
            {
                "rows_kept": funnel["kept"],
                "candidates": funnel["candidates"],
                "rejected_jsonl_mb": round(rejected.stat().st_size / 1e6, 1) if rejected.is_file() else 0,
                "generate_s": round(gen_wall, 1),
                "report_wall_s": round(wall, 1),
                "report_cpu_s": round(cpu, 1),
                "report_peak_rss_mib": round(rss),
                "report_steps": out.strip().splitlines()[-1],
                "report_mb": round(report.stat().st_size / 1e6, 2),
                "chromium_load_s": round(visit.load_s, 2),
                "chromium_errors": len(visit.errors),
                "chromium_error_kinds": sorted(set(visit.errors))[:5],
                "chromium_network": visit.network,
                "page_ready": visit.values.get("ready") == "1",
                "screenshot": {"file": str(work / "report.png"), "colours": colours, "inked": round(inked, 3)},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
