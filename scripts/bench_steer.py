"""Diversity steering on against off, at the same target, on a clustered stand-in model.

The stand-in (tests/steer_world.py, served by tests/fake_openai.py) writes half its new tasks on
three dense topics whatever it is shown, and the rest on the topics of the demonstrations it is
shown (fifteen topics in all). Each replicate is a self-instruct run with the default filters
(semantic dedup with MiniLM included) to `--target` instructions, steering off then on, from the
same seed tasks (replicate r picks the seeds' subjects with seed r).

    python scripts/bench_steer.py                     # target 500, 3 replicates
    python scripts/bench_steer.py --target 1000 --reps 5 --set strength=2.0
    python scripts/bench_steer.py --method custom     # topics and personas steered

Prints the mean of each measure over the replicates, off and on: Vendi score (MiniLM, cosine),
distinct-2, the effective number of topics (exp of the entropy of topic shares), the sparse
topics' share, the smallest topic's count, the mean similarity to the nearest seed, acceptance
(accepted / candidate instructions) and requests sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# Higher is better for all but these.
LOWER_BETTER = {"nearest_seed_sim", "requests"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=500, help="instructions per run")
    parser.add_argument("--reps", type=int, default=3, help="replicates (seed sets)")
    parser.add_argument(
        "--method",
        choices=["self_instruct", "custom"],
        default="self_instruct",
        help="custom: the world's fifteen topics, three personas",
    )
    parser.add_argument("--set", nargs="*", default=[], help="generation.steer settings when on, key=value")
    args = parser.parse_args()

    import steer_world as world
    from fake_openai import FakeOpenAI

    generation = {}
    if args.method == "custom":
        personas = ["a student", "a teacher", "a manager"]
        generation = {"method": "custom", "custom": {"topics": list(world.TOPICS), "personas": personas}}
    on_settings = {"enabled": True, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}}
    fake = FakeOpenAI(reply=world.fake_reply)
    url = fake.start_in_thread()
    sums: dict[str, dict[str, float]] = {"off": {}, "on": {}}
    try:
        for rep in range(args.reps):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                seeds = world.write_seeds(work / "seeds.jsonl", seed=rep)
                for name, steer in (("off", {"enabled": False}), ("on", on_settings)):
                    m = world.run_world(work / name, url, seeds, target=args.target, steer=steer, **generation)
                    for k, v in m.items():
                        sums[name][k] = sums[name].get(k, 0.0) + v / args.reps
    finally:
        fake.stop_thread()
    print(
        f"\n{args.method}: steering off vs on ({json.dumps(on_settings)}), "
        f"target {args.target}, mean of {args.reps} replicates"
    )
    print(f"{'measure':<18}{'off':>10}{'on':>10}{'on/off':>9}")
    for k in sums["off"]:
        off, on = sums["off"][k], sums["on"][k]
        better = "" if off == on else ("+" if (on > off) != (k in LOWER_BETTER) else "-")
        print(f"{k:<18}{off:>10.3f}{on:>10.3f}{on / off if off else float('nan'):>8.2f}{better}")


if __name__ == "__main__":
    main()
