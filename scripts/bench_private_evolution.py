"""Private Evolution on the bundled model: the same loop without noise, at epsilon 4 and at
epsilon 1, on a private set of made-up support tickets (written by this script: 300 by default).

    flock /tmp/heavy.lock timeout 1500 python scripts/bench_private_evolution.py
    python scripts/bench_private_evolution.py --accountant     # the calibration table alone (seconds)
    python scripts/bench_private_evolution.py --simulate       # the mechanism with a stand-in model (a minute)
    python scripts/bench_private_evolution.py --endpoint http://127.0.0.1:8000/v1 --key-env KEY --records 300

One managed vLLM server (the bundled SmolLM2-135M on CPU) serves the three runs. Prints, per run,
the distance of the population to the private records in MiniLM space at each vote (the first
vote is over the initial population, written from the public description alone) and of the
released rows: Frechet distance (lower is closer), k-NN precision and recall; the spent epsilon
and sigma; and the private sentences found verbatim in the released rows (a stand-in for the
leakage audit: see the note in the README's Private Evolution section). The 135M model writes weak
variations: the figures judge the mechanism, not the model.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

DESCRIPTION = "customer support tickets sent to a software company (billing, logins, bugs, refunds, accounts)"

# Made-up tickets: openings, problems and asks combined, with made-up names, numbers and products.
PROBLEMS = [
    "I was charged twice for my {plan} subscription this month",
    "my invoice for {month} shows ${amount} but my plan costs less",
    "the payment failed even though my card is valid until {year}",
    "I cancelled my {plan} plan in {month} and was still billed",
    "I can't log in since yesterday, the password reset email never arrives",
    "two-factor codes stopped coming to my phone after I changed carrier",
    "my account was locked after I typed the wrong password a few times",
    "the single sign-on with {idp} sends me back to the login page in a loop",
    "the export to {format} button does nothing in {browser}",
    "the app crashes when I open a report with more than {rows} rows",
    "the dashboard shows dates in the wrong time zone since the last update",
    "file uploads over {size} MB fail with an unknown error",
    "search returns nothing for names with accents like {name}",
    "notifications arrive twice on {os}",
    "I was promised a refund on ticket {ticket} and nothing arrived",
    "I want a refund for the unused months of my yearly {plan} plan",
    "my trial turned into a paid plan without any warning",
    "I need to move my account to a new email address, {name} left the company",
    "I want to delete my account and every file in it",
    "I added a teammate but they can't see the shared projects",
]
OPENINGS = ["Hi,", "Hello support,", "Good morning,", "Hey team,", "Dear support,", ""]
ASKS = [
    "Can you fix this today?",
    "Please look into it.",
    "What should I do?",
    "This is urgent for our team.",
    "Can you tell me when it will be solved?",
    "Thanks in advance.",
    "I have tried twice already.",
]
SLOTS = {
    "plan": ["Basic", "Pro", "Team", "Business", "Enterprise"],
    "month": ["January", "March", "May", "July", "September", "November"],
    "amount": ["49", "99", "129", "240", "15"],
    "year": ["2027", "2028", "2029"],
    "idp": ["Okta", "Google", "Azure AD"],
    "format": ["CSV", "PDF", "Excel"],
    "browser": ["Firefox", "Safari", "Chrome", "Edge"],
    "rows": ["500", "2,000", "10,000"],
    "size": ["20", "50", "100"],
    "name": ["José Núñez", "Zoë Müller", "Anaïs Lefèvre", "Ömer Çelik"],
    "os": ["Android", "iOS", "Windows", "macOS"],
    "ticket": ["48213", "55102", "60977", "71346"],
}


def tickets(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out: list[str] = []
    seen = set()
    while len(out) < n:
        problem = rng.choice(PROBLEMS)
        problem = re.sub(r"\{(\w+)\}", lambda m: rng.choice(SLOTS[m.group(1)]), problem)
        text = " ".join(
            p for p in (rng.choice(OPENINGS), problem[0].upper() + problem[1:] + ".", rng.choice(ASKS)) if p
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def sentences(text: str) -> list[str]:
    """The ticket's sentences of 6 words or more that no stock phrase makes (its problem)."""
    out = []
    for sentence in re.split(r"(?<=[.?!])\s+", text):
        for opening in OPENINGS:
            if opening and sentence.startswith(opening + " "):
                sentence = sentence[len(opening) + 1 :]
        if len(sentence.split()) >= 6 and sentence not in ASKS:
            out.append(sentence.strip())
    return out


def run(name: str, work: Path, url: str, key_env: str, private: Path, args: argparse.Namespace, epsilon: Any) -> dict:
    from generator.config import parse_config
    from generator.core.readers import read_records
    from generator.run.pipeline import generate

    data = {
        "run_dir": str(work / name),
        "model": {"name": "bundled"},
        "server": {"endpoints": [url], "api_key_env": key_env},
        "engine": {"concurrency": 64},
        "report": {"enabled": args.report},
        "generation": {
            "method": "private_evolution",
            "num_instructions": args.release,
            "instructions_per_prompt": 4,
            "max_rounds": 2,
            "private_evolution": {
                "private": str(private),
                "description": DESCRIPTION,
                "privacy": {
                    "epsilon": epsilon,
                    "delta": 1e-5,
                    "iterations": args.iterations,
                    "population": args.population,
                },
            },
        },
    }
    started = time.monotonic()
    result = generate(parse_config(data, base_dir=work), progress=False)
    privacy = json.loads((result.run_dir / "privacy.json").read_text())
    rows = read_records([result.dataset_dir])
    released = "\n".join(f"{r.instruction}\n{r.input}\n{r.output}" for r in rows)
    verbatim = [s for t in tickets(args.records) for s in sentences(t) if s in released]
    return {
        "name": name,
        "seconds": time.monotonic() - started,
        "privacy": privacy,
        "rows": len(rows),
        "verbatim": verbatim,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300, help="private tickets")
    parser.add_argument("--population", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--release", type=int, default=20, help="num_instructions of each run")
    parser.add_argument("--endpoint", help="a running server's /v1 URL (default: start the bundled model)")
    parser.add_argument("--key-env", help="with --endpoint: the environment variable holding its key")
    parser.add_argument("--report", action="store_true", help="write each run's HTML report too")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    parser.add_argument("--accountant", action="store_true", help="print the calibration table and stop")
    parser.add_argument("--simulate", action="store_true", help="the loop with a stand-in model (no server)")
    parser.add_argument("--reps", type=int, default=5, help="--simulate: noise draws per setting")
    args = parser.parse_args()
    if args.accountant:
        accountant_table()
        return
    if args.simulate:
        simulate(args)
        return

    import contextlib
    import os

    from generator.config import parse_config
    from generator.llm.server import managed_server

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_pe_"))
    work.mkdir(parents=True, exist_ok=True)
    private = work / "tickets.jsonl"
    private.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in tickets(args.records)))
    with contextlib.ExitStack() as stack:
        if args.endpoint:
            url, key = args.endpoint, os.environ.get(args.key_env, "") if args.key_env else ""
        else:
            info = stack.enter_context(managed_server(parse_config({"server": {"device": "cpu"}}), work / "vllm"))
            url, key = info.base_url, info.api_key or ""
        os.environ["BENCH_PE_KEY"] = key
        results = [
            run(name, work, url, "BENCH_PE_KEY", private, args, eps)
            for name, eps in (("no noise", None), ("epsilon 4", 4.0), ("epsilon 1", 1.0))
        ]
    print(
        f"\n{args.records} private tickets, population {args.population}, {args.iterations} iterations, runs in {work}"
    )
    print(f"{'run':<11}{'sigma':>8}{'eps spent':>10}  {'vote':<8}{'kept':>6}{'Frechet':>9}{'prec':>7}{'recall':>8}")
    for r in results:
        _table(r)


def accountant_table() -> None:
    """Sigma calibrated for a budget, and the epsilon dp-accounting's PLD accountant (its defaults,
    a finer grid than ours) gives that sigma's composition."""
    import dp_accounting
    from dp_accounting import pld

    from generator.evolution.accountant import calibrate

    print("| epsilon | delta | T | sigma | epsilon spent | spent / asked | calibration s |")
    print("|---|---|---|---|---|---|---|")
    for eps, delta, t in [
        (0.5, 1e-6, 1),
        (1.0, 1e-5, 4),
        (1.0, 1e-5, 10),
        (4.0, 1e-5, 4),
        (4.0, 1e-5, 5),
        (8.0, 1e-4, 12),
    ]:
        started = time.perf_counter()
        sigma = calibrate(eps, delta, t)
        took = time.perf_counter() - started
        event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma), t)
        spent = pld.PLDAccountant().compose(event).get_epsilon(delta)
        print(f"| {eps} | {delta:g} | {t} | {sigma:.4f} | {spent:.6f} | {spent / eps:.6f} | {took:.2f} |")


class StandIn:
    """The model's stand-in: the random API draws from a public pool of texts, and a variation takes
    one of the parent's k nearest pool texts (MiniLM cosine), k = 20 x the degree."""

    def __init__(self, pool: list[str], vectors: Any, seed: int) -> None:
        import numpy as np

        self.pool, self.rng = pool, np.random.default_rng(seed)
        self.index = {t: i for i, t in enumerate(pool)}
        self.order = np.argsort(-(vectors @ vectors.T), axis=1)

    async def initial(self, size: int) -> list[str]:
        return [self.pool[i] for i in self.rng.choice(len(self.pool), size, replace=False)]

    async def vary(self, parents: list[str], degree: float, iteration: int) -> list[str]:
        k = max(1, round(degree * 20))
        return [self.pool[self.order[self.index[p], self.rng.integers(0, k)]] for p in parents]


def simulate(args: argparse.Namespace) -> None:
    """The loop with MiniLM and `StandIn` for the model, whose pool is the bundled seed tasks (off
    the domain) and tickets drawn with another seed. Mean over `--reps` noise draws of the Frechet
    distance at each vote and of the release (the last vote's parents varied once more)."""
    import asyncio

    import numpy as np

    from filters.embed import make_embedder
    from generator.evolution.accountant import calibrate
    from generator.evolution.loop import Evolution, State, degrees
    from generator.evolution.utility import utility
    from generator.prompting.seeds import load_seeds

    pool = [s.instruction for s in load_seeds("builtin")] + tickets(args.records, seed=1)
    encoder = make_embedder("minilm")
    pool_vectors, private = encoder.encode(pool), encoder.encode(tickets(args.records))
    by_text = dict(zip(pool, pool_vectors))

    def embed(texts: list[str]) -> np.ndarray:
        return np.stack([by_text[t] for t in texts])

    t = args.iterations
    print(
        f"\n{args.records} private tickets; a pool of {len(pool)} public texts; population {args.population}, {t} "
        f"iterations; mean of {args.reps} noise draws. Frechet distance per vote, then the release's"
    )
    print(
        f"{'run':<11}{'sigma':>8}" + "".join(f"{'vote ' + str(i + 1):>9}" for i in range(t)) + f"{'release':>9}"
        f"{'prec':>7}{'recall':>8}"
    )
    for name, eps in (("no noise", None), ("epsilon 4", 4.0), ("epsilon 1", 1.0)):
        sigma = calibrate(eps, 1e-5, t) if eps is not None else 0.0
        figures = []
        for rep in range(args.reps):
            model = StandIn(pool, pool_vectors, rep)
            with tempfile.TemporaryDirectory() as tmp:
                schedule = degrees(0.6, 0.2, t)
                evo = Evolution(
                    private,
                    embed,
                    State(Path(tmp), name),
                    sigma,
                    sigma,
                    t,
                    args.population,
                    schedule,
                    log=lambda _: None,
                )
                last = asyncio.run(evo.run(model.initial, model.vary))
                assert last is not None
                release = asyncio.run(model.vary(evo.parents(last, args.population), schedule[-1], t))
                votes = [v.utility["frechet"] for v in evo.state.votes()]
                figures.append([*votes, *utility(private, embed(release)).values()])
        mean = np.mean(figures, axis=0)
        print(
            f"{name:<11}{sigma:>8.3f}" + "".join(f"{x:>9.4f}" for x in mean[:-2]) + f"{mean[-2]:>7.3f}{mean[-1]:>8.3f}"
        )


def _table(r: dict) -> None:
    p = r["privacy"]
    g = p["guarantee"] or {"sigma": 0.0, "epsilon": float("inf")}
    release = {**p.get("release", {}), "iteration": "release", "kept": r["rows"]}
    for i, u in enumerate([*p["utility"], release]):
        head = f"{r['name']:<11}{g['sigma']:>8.3f}{g['epsilon']:>10.3f}" if i == 0 else " " * 29
        if "frechet" in u:
            figures = f"{u['frechet']:>9.4f}{u['precision']:>7.3f}{u['recall']:>8.3f}"
            print(f"{head}  {u['iteration']!s:<8}{u['kept']:>6}{figures}")
    print(f"{'':<29}  {r['seconds']:.0f} s; {r['rows']} rows; private sentences verbatim in them: {len(r['verbatim'])}")


if __name__ == "__main__":
    main()
