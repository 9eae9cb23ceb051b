"""Private Evolution (generator/evolution/, generator/methods/private_evolution.py): the accountant
against dp-accounting's own composition, the noisy vote's variance, the loop with a stub variation
and a stored vote reused on resume, and the method end to end against the fake server."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import numpy as np
import pytest

from generator.core.errors import ConfigError
from generator.evolution import accountant
from generator.evolution.loop import Evolution, State, Vote, degrees
from generator.evolution.mechanism import draw, kept_weights, nearest_votes, noise_rng, noisy_histogram
from generator.evolution.utility import frechet, precision_recall

# ------------------------------------------------------------------------------------ accountant


@pytest.mark.parametrize(
    ("epsilon", "delta", "iterations", "kind"),
    [
        (1.0, 1e-5, 10, "pld"),
        (4.0, 1e-5, 5, "pld"),
        (0.5, 1e-6, 1, "pld"),
        (8.0, 1e-4, 12, "pld"),
        (2.0, 1e-5, 8, "rdp"),
    ],
)
def test_the_calibrated_sigma_spends_at_most_the_budget_and_within_2_percent_of_it(
    epsilon: float, delta: float, iterations: int, kind: accountant.Accountant
) -> None:
    sigma = accountant.calibrate(epsilon, delta, iterations, kind)
    # dp-accounting's own composition, with a fresh accountant of the library's defaults
    import dp_accounting
    from dp_accounting import pld, rdp

    fresh = pld.PLDAccountant(value_discretization_interval=1e-3) if kind == "pld" else rdp.RdpAccountant()
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(sigma), iterations)
    spent = fresh.compose(event).get_epsilon(delta)
    assert spent <= epsilon
    assert spent >= 0.98 * epsilon
    # more noise than needed spends less; less than calibrated spends more than the budget
    assert accountant.spent_epsilon(sigma * 0.97, iterations, delta, kind) > epsilon


def test_a_sigma_over_the_budget_and_a_budget_no_noise_meets_are_refused_in_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"privacy.sigma: 3.0 over 10 iterations spends epsilon .* use sigma 12.79 or"
    ):
        accountant.guarantee(1.0, 1e-5, 10, "rdp", sigma=3.0)
    with pytest.raises(ConfigError, match="no noise up to 10000 votes") as err:
        accountant.guarantee(1e-4, 1e-12, 50, "rdp")
    assert "\n" not in str(err.value)
    ok = accountant.guarantee(1.0, 1e-5, 10, "rdp", sigma=20.0)
    assert ok.sigma == 20.0 and ok.epsilon < 1.0


# ------------------------------------------------------------------------------------- mechanism


def test_each_private_record_votes_once_for_its_nearest_sample() -> None:
    population = np.eye(3, dtype=np.float32)
    private = np.array([[0.9, 0.1, 0], [0.8, 0, 0.2], [0, 0.1, 0.95], [0.2, 0.1, 0.9], [0, 0, 1]], dtype=np.float32)
    private /= np.linalg.norm(private, axis=1, keepdims=True)
    assert nearest_votes(private, population).tolist() == [2.0, 0.0, 3.0]


def test_the_noisy_histogram_variance_matches_sigma_squared_over_2000_draws(tmp_path: Path) -> None:
    """The loop with a stub variation and a stub embedder: 40 iterations of 50 samples, each draw's
    noise read back as the stored noisy count minus the clean vote recomputed from the stored population."""
    sigma = accountant.calibrate(2.0, 1e-5, 40, "rdp")
    private = _vectors([f"private {i}" for i in range(100)])
    state = State(tmp_path, "k")
    evo = _evolution(private, state, sigma=sigma, threshold=0.0, iterations=40, size=50)
    asyncio.run(evo.run(_initial, _vary))
    noise = []
    for vote in state.votes():
        clean = nearest_votes(private, _vectors(vote.population))
        noise.extend(np.asarray(vote.noisy) - clean)
    assert len(noise) == 2000
    assert np.var(noise) == pytest.approx(sigma**2, rel=0.10)
    assert abs(np.mean(noise)) < 3 * sigma / np.sqrt(2000)


def test_the_same_seed_and_iteration_draw_the_same_noise_and_others_do_not() -> None:
    votes = np.array([5.0, 0.0, 3.0])
    a = noisy_histogram(votes, 2.0, noise_rng(7, 1))
    assert a.tolist() == noisy_histogram(votes, 2.0, noise_rng(7, 1)).tolist()
    assert a.tolist() != noisy_histogram(votes, 2.0, noise_rng(7, 2)).tolist()
    assert a.tolist() != noisy_histogram(votes, 2.0, noise_rng(8, 1)).tolist()


def test_counts_under_the_threshold_weigh_nothing_and_parents_are_drawn_in_proportion() -> None:
    weights = kept_weights(np.array([30.0, 2.9, -4.0, 10.0]), threshold=3.0)
    assert weights.tolist() == [30.0, 0.0, 0.0, 10.0]
    drawn = draw(weights, 40_000, np.random.default_rng(0))
    share = np.bincount(drawn, minlength=4) / 40_000
    assert share[1] == share[2] == 0
    assert share[0] == pytest.approx(0.75, abs=0.01)
    # nothing over the threshold: uniform (the vote told nothing)
    flat = np.bincount(draw(np.zeros(4), 40_000, np.random.default_rng(0)), minlength=4) / 40_000
    assert flat == pytest.approx([0.25] * 4, abs=0.01)


def test_utility_falls_as_a_population_moves_toward_the_private_set() -> None:
    rng = np.random.default_rng(0)
    private = rng.normal(0, 1, (200, 8))
    near, far = rng.normal(0.1, 1, (200, 8)), rng.normal(2.0, 1, (200, 8))
    assert frechet(private, near) < frechet(private, far)
    assert frechet(private, private) == pytest.approx(0, abs=1e-6)
    p_near, r_near = precision_recall(private, near)
    p_far, r_far = precision_recall(private, far)
    assert p_near > p_far and r_near > r_far


# --------------------------------------------------------------------------------------- the loop

DIM = 16


def _vectors(texts: list[str]) -> np.ndarray:
    """A stub embedder: a text's vector from its hash (the same text, the same vector)."""
    rows = [np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:12], 16)).normal(size=DIM) for t in texts]
    out = np.asarray(rows, dtype=np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


async def _initial(size: int) -> list[str]:
    return [f"sample {i}" for i in range(size)]


async def _vary(parents: list[str], degree: float, iteration: int) -> list[str]:
    return [f"{p} v{iteration}.{j}" for j, p in enumerate(parents)]


def _evolution(private: np.ndarray, state: State, **kw: float) -> Evolution:
    settings = {"sigma": 1.0, "threshold": 0.0, "iterations": 3, "size": 8, **kw}
    return Evolution(
        private,
        _vectors,
        state,
        schedule=degrees(0.6, 0.2, int(settings["iterations"])),
        log=lambda _: None,
        **{k: (int(v) if k in ("iterations", "size") else v) for k, v in settings.items()},  # type: ignore[arg-type]
    )


def test_degrees_fall_from_start_to_end() -> None:
    assert degrees(0.6, 0.2, 3) == [0.6, 0.4, 0.2]
    assert degrees(0.6, 0.2, 1) == [0.2]


def test_a_resumed_evolution_reuses_its_stored_votes_and_releases_the_same_parents(tmp_path: Path) -> None:
    private = _vectors([f"p{i}" for i in range(40)])
    whole = State(tmp_path / "whole", "k")
    last = asyncio.run(_evolution(private, whole).run(_initial, _vary))
    assert last is not None and last.iteration == 3

    # The same run killed after the vote of iteration 2, before its variations: the stored seed
    # and votes are there; a new process opens the state and runs again.
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "noise.json").write_text((tmp_path / "whole" / "noise.json").read_text())
    for i in (1, 2):
        (cut / f"vote-00{i}.json").write_bytes((tmp_path / "whole" / f"vote-00{i}.json").read_bytes())
    before = (cut / "vote-002.json").read_bytes()
    resumed_state = State(cut, "k")
    evo = _evolution(private, resumed_state)
    voted: list[int] = []
    original = evo.vote
    evo.vote = lambda t, pop: voted.append(t) or original(t, pop)  # type: ignore[method-assign]
    sent: list[int] = []

    async def vary(parents: list[str], degree: float, iteration: int) -> list[str]:
        sent.append(iteration)
        return await _vary(parents, degree, iteration)

    again = asyncio.run(evo.run(_initial, vary))
    assert voted == [3] and sent == [2]  # iterations 1 and 2 are not voted again
    assert (cut / "vote-002.json").read_bytes() == before
    assert again == last
    assert evo.parents(again, 8) == _evolution(private, whole).parents(last, 8)


def test_a_state_made_from_other_records_or_settings_is_emptied_with_a_new_seed(tmp_path: Path) -> None:
    state = State(tmp_path, "a")
    state.save(Vote(1, ["x"], [1.0], 0.0, 1.0))
    assert State(tmp_path, "a").seed == state.seed and len(State(tmp_path, "a").votes()) == 1
    other = State(tmp_path, "b")
    assert other.reset and other.seed != state.seed and other.votes() == []


# ------------------------------------------------------------------- the method, on the fake server

TICKETS = Path(__file__).parent / "data" / "support_tickets.jsonl"
WORDS = ["billing", "login", "refund", "export", "crash", "invoice", "password", "timezone"]


def _reply(body: dict, i: int) -> str:
    """Short ticket-like answers, a new one per request (the prompt and its seed decide it): a
    numbered list for the initial population, one message that keeps its parent's first words for
    a variation."""
    import json

    prompt = body["messages"][-1]["content"]
    key = hashlib.sha256(json.dumps([prompt, body.get("seed"), i]).encode()).digest()
    if "numbered list" in prompt:
        return "\n".join(
            f"{n}. My {WORDS[key[n] % 8]} problem with the {WORDS[key[n + 8] % 8]} page, case {key[n + 16]}"
            for n in range(1, 5)
        )
    if "Message: " not in prompt:  # an answer (the completion stage)
        return f"Thank you for writing. Here is how to solve it, step {key[2]}: open the settings and retry."
    parent = prompt.split("Message: ", 1)[1].split("\n", 1)[0].split()[:6]
    return " ".join(parent) + f" and the {WORDS[key[0] % 8]} {key[1]}"


FAKE_OPTIONS = {"reply": _reply, "record_chats": True}
PE = {
    "private": str(TICKETS),
    "description": "customer support tickets sent to a software company",
    "privacy": {"epsilon": 4.0, "delta": 1e-5, "iterations": 3, "population": 8},
}


def _pe_config(tmp_path: Path, url: str, **privacy: object) -> dict:
    from fake_run import ECHO_CHAINS, fake_settings

    generation = {
        "method": "private_evolution",
        "num_instructions": 6,
        "instructions_per_prompt": 4,
        "max_rounds": 2,
        "private_evolution": {**PE, "privacy": {**PE["privacy"], **privacy}},
    }
    return fake_settings(tmp_path / "run", url, generation=generation, filters=ECHO_CHAINS, sampling={"seed": 1})


@pytest.fixture
def hash_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    from pe_driver import HashEmbedder

    import generator.run.context as context

    monkeypatch.setattr(context, "make_embedder", lambda *a, **k: HashEmbedder())


def test_bad_privacy_settings_stop_before_any_server_with_one_line(tmp_path: Path) -> None:
    from generator.config import parse_config
    from generator.run.context import open_run

    url = "http://127.0.0.1:9/v1"  # nothing listens: nothing may be sent
    cases = [
        (
            {"epsilon": 1.0, "sigma": 2.0, "accountant": "rdp"},
            r"^generation.private_evolution.privacy.sigma: 2.0 over 3 iterations spends epsilon .* over the budget",
        ),
        ({"delta": 0.05}, r"privacy.delta: 0.05 is not below 1 / 40 private records"),
        ({"epsilon": 1e-4, "delta": 1e-12}, r"no noise up to 10000 votes keeps 3 iterations within epsilon 0.0001"),
    ]
    for privacy, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            open_run(parse_config(_pe_config(tmp_path, url, **privacy), base_dir=tmp_path))
        assert "\n" not in str(err.value)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "fine"}\n{"instruction": {"note": "my password is hunter2"}}\n')
    data = _pe_config(tmp_path, url)
    data["generation"]["private_evolution"]["private"] = str(bad)
    with pytest.raises(
        ConfigError, match=r"bad.jsonl: line 2: this private record's instruction or input is not text"
    ) as err:
        open_run(parse_config(data, base_dir=tmp_path))
    assert "hunter2" not in str(err.value)
    data = _pe_config(tmp_path, url)
    data["generation"]["private_evolution"]["description"] = " "
    with pytest.raises(ConfigError, match="private_evolution.description: give a short public description"):
        open_run(parse_config(data, base_dir=tmp_path))


def test_a_private_evolution_run_spends_its_budget_once_and_never_shows_a_private_record(
    tmp_path: Path, fake: object, hash_embedder: None
) -> None:
    import json

    from generator.config import parse_config
    from generator.core.readers import read_records
    from generator.run.pipeline import generate

    data = _pe_config(tmp_path, fake.url)  # type: ignore[attr-defined]
    result = generate(parse_config(data, base_dir=tmp_path), progress=False)
    rows = read_records([result.dataset_dir])
    assert rows and all(r.meta["evolution"] == {"iterations": 3, "degree": 0.2} for r in rows)
    privacy = json.loads((result.run_dir / "privacy.json").read_text())
    g = privacy["guarantee"]
    assert privacy["private"] and privacy["voted"] == 3 and 3.92 <= g["epsilon"] <= 4.0
    assert g["sigma"] == pytest.approx(accountant.calibrate(4.0, 1e-5, 3), rel=1e-6)
    assert [u["iteration"] for u in privacy["utility"]] == [1, 2, 3] and privacy["release"]["rows"] == len(rows)
    card = (result.dataset_dir / "README.md").read_text()
    assert f"| differential privacy | ({round(g['epsilon'], 3)}, 1e-05)-DP for the private records" in card
    assert "| seed tasks | none (Private Evolution: a public description" in card
    # No private record in any prompt, the dataset, the card or the log of what was sent.
    private = [json.loads(line)["instruction"] for line in TICKETS.read_text().splitlines()]
    prompts = json.dumps(fake.chats)  # type: ignore[attr-defined]
    published = card + json.dumps([[r.instruction, r.input, r.output, r.meta] for r in rows], default=str)
    assert fake.chats and not [p for p in private if p in prompts or p in published]  # type: ignore[attr-defined]

    # sources.json: privacy.json again, for the report's Privacy section and the card
    assert json.loads((result.run_dir / "sources.json").read_text()) == {"privacy": privacy}

    votes = sorted((result.run_dir / "state" / "private_evolution").glob("vote-*.json"))
    stored = [v.read_bytes() for v in votes]
    served = sum(fake.served.values())  # type: ignore[attr-defined]
    again = generate(parse_config(data, base_dir=tmp_path), progress=False)  # resume: nothing sent, nothing voted
    assert sum(fake.served.values()) == served  # type: ignore[attr-defined]
    assert [v.read_bytes() for v in votes] == stored
    assert [r.id for r in read_records([again.dataset_dir])] == [r.id for r in rows]


@pytest.mark.subprocess
def test_kill_9_between_a_vote_and_its_variations_resumes_to_the_same_release(
    tmp_path: Path, hash_embedder: None
) -> None:
    """A run killed right after its second vote is stored; resumed, it votes no iteration again and
    releases what an uninterrupted run with the same noise seed releases."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml
    from fake_run import fake_in_thread

    from generator.config import parse_config
    from generator.core.readers import read_records
    from generator.run.pipeline import generate

    # In this process: the run killed is the driver's, and the fake's replies are a function.
    with fake_in_thread(reply=_reply, delay_s=0.05) as fake:
        url = fake.url
        whole = _pe_config(tmp_path / "whole", url)
        reference = generate(parse_config(whole, base_dir=tmp_path), progress=False)
        state = Path(whole["run_dir"]) / "state" / "private_evolution"

        cut = _pe_config(tmp_path / "cut", url)
        cut_state = Path(cut["run_dir"]) / "state" / "private_evolution"
        cut_state.mkdir(parents=True)
        (cut_state / "noise.json").write_bytes((state / "noise.json").read_bytes())  # the same noise seed
        config = tmp_path / "cut.yaml"
        config.write_text(yaml.safe_dump(cut))
        driver = Path(__file__).parent / "pe_driver.py"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
        proc = subprocess.Popen([sys.executable, str(driver), str(config)], env=env, stderr=subprocess.PIPE)
        second = cut_state / "vote-002.json"
        deadline = time.monotonic() + 60
        while not second.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert second.exists() and not (cut_state / "vote-003.json").exists(), "killed at the wrong moment"
        assert not (Path(cut["run_dir"]) / "dataset").exists()
        before = {p.name: p.read_bytes() for p in cut_state.glob("vote-*.json")}

        resumed = generate(parse_config(cut, base_dir=tmp_path), progress=False)
    assert {p.name: p.read_bytes() for p in cut_state.glob("vote-*.json") if p.name in before} == before
    assert [p.read_bytes() for p in sorted(cut_state.glob("vote-*.json"))] == [
        p.read_bytes() for p in sorted(state.glob("vote-*.json"))
    ]
    assert json.loads((resumed.run_dir / "privacy.json").read_text())["voted"] == 3
    assert [r.id for r in read_records([resumed.dataset_dir])] == [r.id for r in read_records([reference.dataset_dir])]
